"""Time the same training step in cydnn and PyTorch at the same thread count.

    python benchmarks/compare.py                  # every workload, 1 and 2 threads
    python benchmarks/compare.py -k lstm -t 2     # workloads whose name contains 'lstm', 2 threads

For each workload and thread count both steps are built, warmed up, then run interleaved
(cydnn, torch, cydnn, torch, ...) so that a noisy machine slows both alike; the table shows
the median step time of each and the ratio cydnn/torch (below 1 means cydnn is faster).

OpenBLAS reads OPENBLAS_CORETYPE when it loads: where it is set (this project's machines set
Haswell), cydnn's GEMMs run that core's kernels. `env -u OPENBLAS_CORETYPE python
benchmarks/compare.py` measures the kernels OpenBLAS picks by itself, as a user's install does.
"""
import argparse
import importlib
import os
import pkgutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def load_workloads(pattern):
    import workloads

    found = []
    for mod in sorted(m.name for m in pkgutil.iter_modules(workloads.__path__)):
        for w in importlib.import_module(f"workloads.{mod}").WORKLOADS:
            if pattern is None or pattern.lower() in w.name.lower():
                found.append(w)
    return found


def time_interleaved(steps, repeats, warmup):
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", dest="pattern", help="only workloads whose name contains this")
    ap.add_argument("-t", "--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("-n", "--repeats", type=int, default=50)
    ap.add_argument("-w", "--warmup", type=int, default=10)
    args = ap.parse_args(argv)

    import cydnn
    _print_blas()
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: timing cydnn only (pip install torch==2.13.0 to compare).")

    rows = []
    for w in load_workloads(args.pattern):
        for n in args.threads:
            cydnn.set_num_threads(n)
            steps = [w.make_cydnn()]
            if torch is not None and w.make_torch is not None:
                torch.set_num_threads(n)
                steps.append(w.make_torch())
            med = time_interleaved(steps, args.repeats, args.warmup)
            ratio = med[0] / med[1] if len(med) > 1 else None
            rows.append((w, n, med, ratio))
            _print_row(w, n, med, ratio)
    return rows


def _print_blas():
    """Which BLAS kernels cydnn's GEMMs run on: OPENBLAS_CORETYPE, when set, forces them (this
    project's machines set Haswell, i.e. AVX2, on AVX-512 CPUs; PyTorch ignores the variable)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's OpenBLAS)
    from threadpoolctl import threadpool_info
    for lib in threadpool_info():
        if lib["user_api"] == "blas" and "scipy" in os.path.basename(os.path.dirname(lib["filepath"])):
            forced = os.environ.get("OPENBLAS_CORETYPE")
            how = f"forced by OPENBLAS_CORETYPE={forced}" if forced else "chosen by OpenBLAS"
            print(f"cydnn BLAS: {lib['internal_api']} {lib.get('version')}, {lib.get('architecture')} kernels ({how})")


def _print_row(w, n, med, ratio):
    torch_ms = f"{med[1] * 1e3:9.3f}" if len(med) > 1 else "        -"
    r = f"{ratio:6.2f}" if ratio is not None else "     -"
    target = f"<= {w.target:.2f}" if w.target else ""
    ok = "" if (ratio is None or not w.target) else ("  ok" if ratio <= w.target else "  MISS")
    gflops = f"{w.flops / med[0] / 1e9:7.1f}" if w.flops else "      -"
    print(f"{w.name:<44} {n:>2} thr  cydnn {med[0] * 1e3:9.3f} ms  torch {torch_ms} ms  "
          f"ratio {r} {target}{ok}  GFLOP/s {gflops}", flush=True)


if __name__ == "__main__":
    main()
