"""Test isolation: every test starts with cydnn's default float type and thread count, and leaves
them as it found them (tests switch to float64 for gradient checks, or to 1 thread)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `from helpers import ...` from any rootdir

import cydnn  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_cydnn_globals():
    floatx, n_threads = cydnn.floatx(), cydnn.get_num_threads()
    yield
    cydnn.set_floatx(floatx)
    cydnn.set_num_threads(n_threads)
