"""A layer for test_dask.py: the identity, except that the first call inside a
Dask worker kills that worker's process (os._exit), once per marker file."""
import os

import fastrnn as fr


class KillOnce(fr.Layer):
    def __init__(self, marker, dtype="float32"):
        super().__init__(dtype)
        self.marker = marker

    def forward(self, x, training):
        try:
            from distributed import get_worker
            get_worker()
        except (ImportError, ValueError):
            return x  # not in a worker: the reference run
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return x
        os.close(fd)
        os._exit(17)

    def backward(self, dy):
        return dy
