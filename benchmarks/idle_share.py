"""How much of the cores the forward passes leave to other work: Gram products in an idle-priority thread.

The Gram floor (``floor_bench.py``) holds unless Gram work can run in what the forward passes leave
idle of the cores. Thread scaling says how much that is in principle (a forward pass on 2 threads
is 1.78-1.91x faster than on one). This measures what other work can actually get of it: while
the main thread runs a model's forward passes (32-image batches, inference mode, every thread),
a second thread with Linux's ``SCHED_IDLE`` policy (it runs only when a core would otherwise be
idle) computes float64 products of the Gram's shape (150 x 4,096 by its transpose) in torch, as
``idsim.gram`` does (its OpenMP team inherits the policy). It prints, per model: the forward passes
alone and beside that thread, the float64 work the thread did, and that work in seconds of the whole
machine (at the rate the same products reach with nothing else running, measured first): the share
of the cores that Gram work could take from the forward passes without slowing them. With
``--normal`` the thread runs at normal priority instead (what a plain background thread costs).

    python benchmarks/idle_share.py                       # resnet18, vgg11, mixer_b16_224; 6 batches each
    python benchmarks/idle_share.py --models vgg11 --batches 10 --normal
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time


N, K = 150, 4096  # the Gram's shape: images x a chunk of units


def product_rate(seconds: float = 2.0) -> float:
    """GFLOP/s of the background thread's products with nothing else running (every thread)."""
    import torch

    a = torch.rand(N, K, dtype=torch.float64)
    torch.mm(a, a.T)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, a.T)
        count += 1
    return count * 2.0 * N * N * K / 1e9 / (time.perf_counter() - t0)


def run(name: str, batches: int, background: str | None) -> tuple[float, float]:
    """(forward s, the background thread's GFLOP) for ``batches`` forward passes of ``name``."""
    import torch

    from idsim.models import build_model

    net = build_model(name, seed=1).module
    x = torch.randn(32, 3, 224, 224)
    with torch.inference_mode():
        net(x)  # one-off costs (allocator, kernels' first calls) before the timing
    stop, done = threading.Event(), {"products": 0}

    def worker() -> None:
        if background == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only (Linux)
        a = torch.rand(N, K, dtype=torch.float64)
        while not stop.is_set():
            torch.mm(a, a.T)
            done["products"] += 1

    thread = threading.Thread(target=worker, daemon=True) if background else None
    if thread:
        thread.start()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(batches):
            net(x)
    wall = time.perf_counter() - t0
    stop.set()
    if thread:
        thread.join()
    return wall, done["products"] * 2.0 * N * N * K / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet18", "vgg11", "mixer_b16_224"])
    p.add_argument("--batches", type=int, default=6, help="32-image batches per model (default 6)")
    p.add_argument("--normal", action="store_true", help="the background thread at normal priority")
    a = p.parse_args(argv)
    if a.batches < 1:
        print("idle_share: error: --batches must be a positive integer", file=sys.stderr)
        return 2
    if not hasattr(os, "SCHED_IDLE"):
        print("idle_share: error: needs Linux's SCHED_IDLE scheduling policy (os.SCHED_IDLE)", file=sys.stderr)
        return 2
    from idsim.errors import IdsimError
    from idsim.model_names import resolve_library

    try:  # before any timing: an unknown name is one line, not a traceback after the first models
        for name in a.models:
            resolve_library(name)
    except IdsimError as e:
        print(f"idle_share: error: {e}", file=sys.stderr)
        return 2
    background = "normal" if a.normal else "idle"
    print(f"# idle share: {a.batches} batches of 32 per model; background thread {background} priority;"
          f" {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}")
    rate = product_rate()
    print(f"the products alone: {rate:.0f} GFLOP/s")
    print("| model | forward alone (s) | beside the thread (s) | slow-down | thread's work (GFLOP) |"
          " = machine time (s) | share of the machine |\n|---|---:|---:|---:|---:|---:|---:|")
    for name in a.models:
        alone, _ = run(name, a.batches, None)
        beside, gflop = run(name, a.batches, background)
        print(f"| {name} | {alone:.2f} | {beside:.2f} | {beside / alone:.2f}x | {gflop:.0f} | {gflop / rate:.2f} |"
              f" {gflop / rate / beside:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
