"""Seconds a job spends in each reduction: a run of ``run.py`` with idsim's reducers timed.

Runs the job exactly as ``python run.py ARGS...`` would (same process, same overrides), with a timer
around the three reductions extraction does beside the forward passes, and prints their totals
over every model of the job when it ends:

- ``gram``: ``idsim.features.pattern_gram``, the Gram matrices (exact or of projections);
- ``store``: ``idsim.reduce.UnitStore.update``, copying exact values into their store (RAM or spilled);
- ``project``: ``idsim.reduce.SparseProjection.update``, the sparse random projections of wide layers.

The job's own ``timings.json`` gives each model's extraction; this splits the part that is not the
forward passes. The timers add two ``perf_counter`` calls per call (one call per batch and layer: milliseconds in all).

    python benchmarks/reduction_times.py target=resnet18 metric=cka dataset=natural dataset.n_images=150
"""
from __future__ import annotations

import atexit
import collections
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(owner, name: str, key: str, totals: collections.Counter) -> None:
    """Replace ``owner.name`` by the same function with its seconds added to ``totals[key]``."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> None:
    import idsim.features as features
    import idsim.reduce as reduce

    totals: collections.Counter = collections.Counter()
    timed(features, "pattern_gram", "gram", totals)  # extraction calls it through idsim.features
    timed(reduce.UnitStore, "update", "store", totals)
    timed(reduce.SparseProjection, "update", "project", totals)
    t0 = time.perf_counter()

    def report() -> None:
        print(f"reduction_times: gram {totals['gram']:.2f} s, store {totals['store']:.2f} s, project"
              f" {totals['project']:.2f} s, of the job's {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    atexit.register(report)  # run.py ends with SystemExit
    sys.argv = [str(ROOT / "run.py"), *argv]
    runpy.run_path(str(ROOT / "run.py"), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
