"""The CPU backend: the C kernels of src/ behind one extension module, _ext."""
