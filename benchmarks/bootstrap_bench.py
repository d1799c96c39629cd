"""What the significance bootstrap costs on the default job.

For each metric: the default job (``python run.py``, its probe set, target and sources) runs once
to fill a fresh feature cache, then twice more warm, with ``stats.bootstrap=0`` (the reference:
no resampling) and with the metric's default number of resamples (``stats.bootstrap`` unset). The
extraction is read from the cache in both, so the difference is the bootstrap: its scoring, the
intervals and p-values, and ``bootstrap.csv``. It prints seconds of scoring (``score:*`` of
``timings.json``), of identification and writing, and the whole process, with the ratios to the
reference and to the cold job.

    python benchmarks/bootstrap_bench.py                       # cka, rsa, regression_loo
    python benchmarks/bootstrap_bench.py --metrics cka --extra dataset.n_images=20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def job(overrides: list[str], cache: Path) -> tuple[float, dict]:
    run_dir = Path(tempfile.mkdtemp(prefix="idsim-boot-run-"))
    cmd = [sys.executable, "run.py", *overrides, "extraction.progress=false", f"cache.dir={cache}",
           f"hydra.run.dir={run_dir}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")})
    wall = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    timings = json.loads((run_dir / "timings.json").read_text())
    boot = run_dir / "bootstrap.csv"
    timings["bootstrap_csv_mb"] = boot.stat().st_size / 2**20 if boot.exists() else 0.0
    return wall, timings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics", nargs="+", default=["cka", "rsa", "regression_loo"])
    p.add_argument("--extra", nargs="*", default=[], help="more overrides for every job")
    a = p.parse_args(argv)
    print(f"# bootstrap cost on the default job ({' '.join(a.extra) or 'no overrides'}); {os.cpu_count()} CPUs;"
          f" load {os.getloadavg()[0]:.1f}")
    print("| metric | job | resamples | scoring (s) | identify + write (s) | process wall (s) | bootstrap.csv (MB) |"
          " wall / no bootstrap | wall / cold |\n|---|---|---|---|---|---|---|---|---|")
    for metric in a.metrics:
        cache = Path(tempfile.mkdtemp(prefix="idsim-boot-cache-"))
        base = [f"metric={metric}", *a.extra]
        rows = [("cold (default resamples)", "default", *job(base, cache)),
                ("warm", "0", *job([*base, "stats.bootstrap=0"], cache)),
                ("warm", "default", *job(base, cache))]
        cold, ref = rows[0][2], rows[1][2]
        for label, n, wall, t in rows:
            scoring = sum(v for k, v in t.items() if k.startswith("score:"))
            rest = t.get("identify", 0.0) + t.get("write", 0.0)
            print(f"| {metric} | {label} | {n} | {scoring:.2f} | {rest:.2f} | {wall:.1f} | {t['bootstrap_csv_mb']:.1f} |"
                  f" {wall / ref:.2f} | {wall / cold:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
