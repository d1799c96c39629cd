"""Spilled exact values: a new scratch file per layer (the previous code) against the run's one scratch
file, reused by each model in turn (``features.Arena.spill``), each way in a fresh process.

Two "models" in a row, each storing ``--layers`` layers of 150 images x ``--units`` float32 values
past the RAM budget, in batches of 32 (as the forward hooks do), then forming each layer's Gram
matrix (which reads the values back), with ``--pause`` seconds between the models (the forward
passes of the models in between, during which freed memory may go back to the hypervisor).

    python benchmarks/spill_bench.py [--layers 4] [--units 1000000] [--pause 5]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(way: str, layers: int, units: int, pause: float) -> None:
    import tempfile

    import numpy as np
    import torch

    from idsim.features import Arena
    from idsim.gram import pattern_gram
    from idsim.procs import tune_memory
    from idsim.reduce import UnitStore

    tune_memory()
    n = 150
    batch = torch.rand(32, units)
    folder = Path(tempfile.mkdtemp(prefix="idsim-spill-bench-"))
    arena = Arena()
    out = []
    for model in range(2):
        arena.offset = arena.spill_offset = 0  # a new extraction (as Arena.of)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        stores = []
        for layer in range(layers):
            if way == "file per layer":
                st = UnitStore(n, np.arange(units), scratch=folder, ram_budget=0, name=f"m{model}l{layer}")
            else:
                st = UnitStore(n, np.arange(units), ram_budget=0, spill_at=arena.spill(n * units * 4, folder))
            stores.append(st)
        for start in range(0, n, 32):
            rows = slice(start, min(n, start + 32))
            for st in stores:
                st.update(batch[:rows.stop - rows.start], rows)
        t1 = time.perf_counter()
        for st in stores:
            pattern_gram(st.data, "column", mean=st.mean())
            st.close()
        r1, t2 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        out.append({"store_s": t1 - t0, "gram_s": t2 - t1, "sys_s": r1.ru_stime - r0.ru_stime,
                    "faults": r1.ru_minflt - r0.ru_minflt})
        time.sleep(pause)
    print(json.dumps(out))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--units", type=int, default=1_000_000)
    p.add_argument("--pause", type=float, default=5.0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.layers, a.units, a.pause)
        return 0
    gb = a.layers * 150 * a.units * 4 / 1e9
    print(f"# spilled values: 2 models x {a.layers} layers x 150 images x {a.units:,} units ({gb:.1f} GB per model),"
          f" {a.pause:g} s between them")
    print("| way | model | stores (s) | Grams (s) | system time (s) | page faults |\n|---|---|---:|---:|---:|---:|")
    res = {}
    for way in ("file per layer", "one reused file"):
        got = subprocess.run([sys.executable, __file__, "--child", way, "--layers", str(a.layers), "--units",
                              str(a.units), "--pause", str(a.pause)], capture_output=True, text=True, check=True)
        res[way] = json.loads(got.stdout.strip().splitlines()[-1])
        for i, r in enumerate(res[way]):
            print(f"| {way} | {'first' if i == 0 else 'second'} | {r['store_s']:.2f} | {r['gram_s']:.2f} |"
                  f" {r['sys_s']:.2f} | {r['faults']:,} |")
    old, new = (res[w][1]["store_s"] + res[w][1]["gram_s"] for w in ("file per layer", "one reused file"))
    print(f"second model, stores + Grams: {old:.2f} s -> {new:.2f} s ({old / new:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
