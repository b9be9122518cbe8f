"""Compiled kernels (Cython + OpenMP), one module per op family; built from csrc/."""
