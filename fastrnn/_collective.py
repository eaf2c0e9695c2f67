"""The collectives of data-parallel training (``Sequential.fit(comm=...)``).

One object, `Collective`, wraps an mpi4py intracommunicator. fit() needs one
operation: `exchange`, every rank's equal-sized byte buffer gathered to every
rank (MPI_Iallgather on NumPy buffers), waited for with a timeout. A rank that
waits longer than the timeout writes why to stderr and aborts the job
(MPI_Abort): a dead or stuck rank must not leave the others hanging forever.

Each buffer starts with a fixed header, so a rank that failed still takes part
in the exchange and tells the others why:

    bytes [0, 8)     status: 0 ok, 1 failed
    bytes [8, 256)   the failure's message (UTF-8, NUL-padded)
    bytes [256, ...) the payload (shard gradients and statistics)

mpi4py is imported by whoever built the communicator, never here: importing
fastrnn imports no MPI.
"""
import sys
import time

import numpy as np

HEADER = 256
DEFAULT_TIMEOUT = 300.0


class RankFailed(RuntimeError):
    """Another rank failed; every rank raises this (the failed one its own error)."""


class Collective:
    """An mpi4py intracommunicator as fit() uses it (``fr.distributed.MPIComm``).

    Parameters
    ----------
    comm : mpi4py.MPI.Intracomm
        The ranks that train together (``MPI.COMM_WORLD``).
    timeout : float, default 300
        Seconds a rank waits for the others at one exchange before it aborts
        the job (MPI_Abort) with a message naming the epoch and batch.
    """

    def __init__(self, comm, timeout=DEFAULT_TIMEOUT):
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                not timeout > 0:
            raise ValueError(f"timeout: expected a number of seconds > 0, got {timeout!r}")
        check_comm(comm)
        self.comm = comm
        self.timeout = float(timeout)
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())

    def exchange(self, payload, where, error=None):
        """Gather every rank's payload to every rank (MPI_Iallgather, with the timeout).

        Parameters
        ----------
        payload : numpy.ndarray
            uint8 bytes, the same size on every rank.
        where : str
            Where fit is ("at epoch 1, batch 3"), for the messages.
        error : str, optional
            This rank failed with that message: it still exchanges, then
            every rank raises.

        Returns
        -------
        numpy.ndarray
            (size, len(payload)) uint8, row r from rank r.

        Raises
        ------
        RankFailed
            A rank reported a failure.
        """
        payload = np.ascontiguousarray(payload, np.uint8).reshape(-1)
        send = np.zeros(HEADER + payload.size, np.uint8)
        if error is not None:
            send[0] = 1
            msg = error.encode("utf-8", "replace")[:HEADER - 8]
            send[8:8 + len(msg)] = np.frombuffer(msg, np.uint8)
        else:
            send[HEADER:] = payload
        recv = np.empty((self.size, send.size), np.uint8)
        req = self.comm.Iallgather(send, recv)
        self._wait(req, where)
        failed = [r for r in range(self.size) if recv[r, 0]]
        if failed:
            r = failed[0]
            msg = bytes(recv[r, 8:HEADER]).rstrip(b"\0").decode("utf-8", "replace")
            raise RankFailed(f"fit: rank {r} of {self.size} failed {where}: {msg}; "
                             "every rank stopped")
        return recv[:, HEADER:]

    def _wait(self, req, where):
        t0 = time.monotonic()
        pause = 1e-5
        while not req.Test():
            if time.monotonic() - t0 > self.timeout:
                sys.stderr.write(
                    f"fastrnn fit: rank {self.rank} of {self.size} waited more than "
                    f"{self.timeout:g} s for the other ranks {where} (a rank died or is "
                    "stuck); aborting every rank (MPI_Abort). Raise the limit with "
                    "fr.distributed.MPIComm(comm, timeout=seconds).\n")
                sys.stderr.flush()
                self.comm.Abort(3)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)


def check_comm(comm):
    """TypeError unless `comm` is an mpi4py intracommunicator."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None or not isinstance(comm, mpi.Comm):
        raise TypeError(f"comm: expected an mpi4py communicator (mpi4py.MPI.COMM_WORLD "
                        f"or fr.distributed.MPIComm), got {type(comm).__name__}")
    if not isinstance(comm, mpi.Intracomm) or comm == mpi.COMM_NULL:
        raise TypeError(f"comm: expected an intracommunicator (MPI.COMM_WORLD or one "
                        f"split from it), got {type(comm).__name__}")


def wrap(comm):
    """`comm` as a Collective (one is kept as it is)."""
    if isinstance(comm, Collective):
        return comm
    return Collective(comm)
