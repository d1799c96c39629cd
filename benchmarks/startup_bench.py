"""Start-up: how long the command line takes to answer when no model runs.

Times, as whole processes (median of ``--repeat`` runs), ``python run.py --cfg job``, ``--help``,
and three one-line errors (an unknown model, a bad value, an unknown key), against two
references measured in the same run: the bare interpreter (``python -c pass``) and a process
that only imports torch, torchvision and timm (what the command line cost before it checked
names without them). Goal: every command within 2 s on 2 cores.

    python benchmarks/startup_bench.py --repeat 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass (reference)": [sys.executable, "-c", "pass"],
    "import torch, torchvision, timm (reference)": [sys.executable, "-c", "import torch, torchvision, timm"],
    "run.py --cfg job": [sys.executable, "run.py", "--cfg", "job"],
    "run.py --help": [sys.executable, "run.py", "--help"],
    "run.py target=vgg111 (unknown model)": [sys.executable, "run.py", "target=vgg111"],
    "run.py unit_ratio=2 (bad value)": [sys.executable, "run.py", "unit_ratio=2"],
    "run.py batch_size=8 (moved key)": [sys.executable, "run.py", "batch_size=8"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    env = {**os.environ, "WANDB_MODE": "disabled"}
    print(f"# start-up, median of {a.repeat} runs; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    print("| command | wall (s) | CPU (s) | / 2 s goal | / torch imports |\n|---|---|---|---|---|")
    results = {}
    for name, cmd in COMMANDS.items():
        walls, cpus = [], []
        for _ in range(a.repeat):
            before = os.times()
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True)
            walls.append(time.perf_counter() - t0)
            after = os.times()
            cpus.append(after.children_user + after.children_system - before.children_user - before.children_system)
        results[name] = (statistics.median(walls), statistics.median(cpus))
    torch_wall = results["import torch, torchvision, timm (reference)"][0]
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / 2.0:.2f} | {wall / torch_wall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
