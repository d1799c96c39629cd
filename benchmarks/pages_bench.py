"""First writes to fresh memory: NumPy's huge-page advice on and off, and anonymous mappings, each in a fresh process.

A 1 GiB buffer (as idsim's per-run RAM arena) filled with 150 rows of 1,000,000 float32 values in
batches of 32 (as a layer's exact values are stored), best of the rounds per way.

    python benchmarks/pages_bench.py [--rounds 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

WAYS = {"numpy, huge-page advice on (NumPy's default)": "np", "numpy, advice off (idsim's runs)": "np_nohuge",
        "anonymous mmap": "mmap", "anonymous mmap + MADV_HUGEPAGE": "mmap_huge"}


def child(way: str) -> None:
    import mmap

    import numpy as np
    import torch

    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        from numpy.core.multiarray import _set_madvise_hugepage
    _set_madvise_hugepage(way != "np_nohuge")
    size = 1 << 30
    if way.startswith("np"):
        buf = np.empty(size, np.uint8)
    else:
        m = mmap.mmap(-1, size)
        if way == "mmap_huge":
            m.madvise(mmap.MADV_HUGEPAGE)
        buf = np.frombuffer(m, np.uint8)
    rows = buf.view(np.float32)[:150 * 1_000_000].reshape(150, -1)
    h = torch.from_numpy(rows)
    batch = torch.randn(32, h.shape[1])
    t0 = time.perf_counter()
    for s in range(0, 150, 32):
        h[s:s + 32] = batch[:min(32, 150 - s)]
    print(time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child)
        return 0
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip() if sys.platform == "linux" else "?"
    defrag = open("/sys/kernel/mm/transparent_hugepage/defrag").read().strip() if sys.platform == "linux" else "?"
    best = {k: float("inf") for k in WAYS}
    for _ in range(a.rounds):
        for label, way in WAYS.items():
            out = subprocess.run([sys.executable, __file__, "--child", way], capture_output=True, text=True, check=True)
            best[label] = min(best[label], float(out.stdout.strip().splitlines()[-1]))
    ref = best["numpy, huge-page advice on (NumPy's default)"]
    print(f"# 0.6 GB written into a fresh 1 GiB buffer; THP enabled: {thp}; defrag: {defrag}")
    print("| way | seconds | vs NumPy's default |\n|---|---:|---:|")
    for label, s in best.items():
        print(f"| {label} | {s:.2f} | {ref / s:.1f}x faster |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
