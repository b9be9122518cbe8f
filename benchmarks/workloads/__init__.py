"""Benchmark workloads for compare.py: one module per family (mlp, conv, recurrent, ...).

Each module defines ``WORKLOADS``, a list of ``Workload``. A workload builds, for a given thread
count, one zero-argument callable per framework that runs a single training (or inference)
step on fixed data; compare.py times them interleaved and reports medians and the ratio.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass
class Workload:
    name: str                                     # e.g. "mlp 784-512-512-10 b128"
    make_cydnn: Callable[[], Callable[[], None]]  # called after cydnn.set_num_threads(n)
    make_torch: Optional[Callable[[], Callable[[], None]]] = None  # after torch.set_num_threads(n)
    target: Optional[float] = None                # the ratio cydnn/torch the issue asks for
    flops: Optional[float] = None                 # per step, to report GFLOP/s
    notes: str = field(default="")
