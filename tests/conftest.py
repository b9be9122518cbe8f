"""Test isolation: every test starts with cydnn's default float type and thread count, and leaves
them as it found them (tests switch to float64 for gradient checks, or to 1 thread)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # `from helpers import ...` from any rootdir

# OpenMP threads that wait sleep instead of spinning, in this process and in the example scripts
# the tests start (they inherit the environment). libgomp spins by default; on a machine whose
# cores are busy with other work, the spinning thread takes the core from the thread it waits
# for, and tests with many small parallel loops ran 20-60x slower (the batch-norm gradient check:
# 0.3 s quiet, 17-66 s beside other processes, under 2 s with this). Results do not change: the
# wait policy decides only how an idle thread waits. Read once, when libgomp loads, so it is
# set before cydnn is imported; a value already in the environment is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import cydnn  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_cydnn_globals():
    floatx, n_threads = cydnn.floatx(), cydnn.get_num_threads()
    yield
    cydnn.set_floatx(floatx)
    cydnn.set_num_threads(n_threads)
