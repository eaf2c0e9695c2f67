# cython: language_level=3, boundscheck=False, wraparound=False
"""The boundary between Python and the C kernels (src/include/fastrnn.h,
fastrnn_reg.h, fastrnn_ctc.h, fastrnn_q.h, fastrnn_optim.h, fastrnn_pool.h,
fastrnn_cell.h, fastrnn_attend.h),
one extension module for the whole library, so that the C state (the
registered BLAS and its thread pin, the step team, the fast path's switch
and vector width) exists once.

It checks what the kernels assume (dtypes, C-contiguity, shapes), allocates
outputs, caches and scratch, releases the GIL once around a whole call and maps
status codes to exceptions. Users never call it: fastrnn's layers and losses
validate their input first and give the user-facing messages; the checks here
guard the C code against any caller.

Parts (included .pxi files of this folder):
  _arrays.pxi   array checks, allocation, pointer tables, status codes
  _runtime.pxi  BLAS registration and thread pin, threads, the step team,
                the fast path's switches
  _rnn.pxi      recurrent layers: Plan, forward, backward, Stepper; gemm
  _quant.pxi    reduced-precision inference: QPlan, qforward (int8, bf16)
  _reg.pxi      regularized cells (zoneout, recurrent dropout, LayerNormLSTM):
                reg_forward, reg_backward, REG_CELLS, reg_num_params,
                reg_param_shapes
  _ctc.pxi      the CTC loss: ctc
  _optim.pxi    the fused Adam / AdamW step: adam_step
  _pool.pxi     attention pooling after its product: attention_pool
  _cell.pxi     one step of a cell's gate math after its products: cell_step,
                cell_step_backward
  _attend.pxi   one decoder step of Luong attention: attend, attend_backward
"""
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport malloc, free
cimport numpy as cnp
import numpy as np
from scipy.linalg.cython_blas cimport sgemm, dgemm

cnp.import_array()

include "_arrays.pxi"
include "_runtime.pxi"
include "_rnn.pxi"
include "_quant.pxi"
include "_reg.pxi"
include "_ctc.pxi"
include "_optim.pxi"
include "_pool.pxi"
include "_cell.pxi"
include "_attend.pxi"
