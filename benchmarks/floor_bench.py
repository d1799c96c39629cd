"""The floor benchmark: a whole idsim job against the forward passes it cannot avoid.

In one invocation, on the same images:

0. a warm-up, not timed: what an installation pays on its first job only (numba compiling idsim's
   kernels, the models' layer layouts remembered); ``--fresh-install`` skips it, so that the first
   job pays them as on a fresh machine;
1. the pure forward passes of every model of the job: idsim's own ``build_model`` and transform,
   the same batch size and device, image decoding included (a DataLoader), inference mode, no
   hooks; each model in a fresh process (its own peak RSS); the goals' ratios divide by their sum;
1b. the same forward passes as one plain script would run them: one process, timed whole (start-up,
   imports, building the models, decoding, forward passes): what a job without any of idsim's work
   would take, beside which the job's own overhead reads directly;
2. the full job through the public entry point (``python run.py ...``, a fresh process, cold
   feature cache), once per metric, then once more warm (everything cached).

Between the two, on CPU, the Gram floor: the float64 products that CKA's and RSA's exact Grams cannot do
without (each layer's columns, as extraction keeps them, times n(n+1)/2 multiply-adds), at the best rate
this host's BLAS reaches on that shape; with the forward passes (and the models' builds) it is the ratio
below which no job that keeps today's exact scores can go, unless Grams run in the cores' idle share.

It prints, per model and in total: seconds, the ratio to the forward passes, and peak RSS. Per
model, idsim's time is its extraction plus its scoring (``timings.json`` of the run); the job's
total is the process wall time, start-up, figures and W&B included.

    python benchmarks/floor_bench.py                       # embedded 224 px photographs (natural), 150 images
    python benchmarks/floor_bench.py --images /data/photos --n 150
    python benchmarks/floor_bench.py --metrics cka rsa --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ["resnet18", "alexnet", "vgg11", "resnet18", "vit_base_patch32_224", "mixer_b16_224"]  # target + 5
METRICS = ("cka", "rsa", "regression", "regression_loo")


def _child(dataset: list[str], device: str):
    """A forward child's start: run.py's malloc settings, then (device, probe set)."""
    from idsim.procs import tune_memory

    tune_memory()
    from idsim import load_probe_set
    from idsim.config import compose
    from idsim.features import resolve_device

    return resolve_device(device), load_probe_set(compose(dataset).dataset)


def forward_only(name: str, dataset: list[str], batch: int, device: str, workers: int, seed: int) -> None:
    """Child process: time the pure forward passes of one model; print JSON."""
    dev, probe = _child(dataset, device)
    import torch

    from idsim import build_model
    from idsim.models import meta_module
    from idsim.model_names import resolve_library

    meta_module(name, resolve_library(name))  # the libraries' lazy imports, which a job pays before its builds too
    t0 = time.perf_counter()
    model = build_model(name, weights="random", seed=seed)
    build_s = time.perf_counter() - t0
    forward_s = forward_passes(model, probe, batch, dev, workers)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    widths = {}  # after the timing: each default layer's units, from one image (for the Gram floor)
    net = model.module
    modules = dict(net.named_modules())

    def hook_for(lay: str):
        def hook(_module, _inputs, out) -> None:  # returns None: the output stays as it is
            widths[lay] = _units(out)
        return hook

    hooks = [modules[lay].register_forward_hook(hook_for(lay)) for lay in model.default_layers]
    with torch.inference_mode():
        net(model.transform(probe.image(0))[None].to(dev))
    for h in hooks:
        h.remove()
    print(json.dumps({"model": name, "forward_s": forward_s, "build_s": build_s, "rss_mb": rss_mb, "widths": widths}))


def forward_passes(model, probe, batch: int, dev, workers: int) -> float:
    """Seconds of ``model``'s forward passes over ``probe``: its transform in a DataLoader (decoding included),
    inference mode, no hooks."""
    import torch
    from torch.utils.data import DataLoader

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(probe)

        def __getitem__(self, i):
            return model.transform(probe.image(i))

    net = model.module.to(dev)
    loader = DataLoader(Images(), batch_size=batch, num_workers=workers, pin_memory=dev.type == "cuda")
    t0 = time.perf_counter()
    with torch.inference_mode():
        for x in loader:
            net(x.to(dev, non_blocking=True))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def forward_script(models: list[tuple[str, int]], dataset: list[str], batch: int, device: str, workers: int) -> None:
    """Child process: what a plain script doing only the job's forward passes runs, in one process: start-up, the
    imports, the probe set, and for each model its build and forward passes (the parent times the process)."""
    dev, probe = _child(dataset, device)
    from idsim import build_model

    for name, seed in models:
        forward_passes(build_model(name, weights="random", seed=seed), probe, batch, dev, workers)


def _units(out) -> int:
    """Units of one image in a layer's output (its first tensor, as extraction takes it)."""
    from idsim.features import _first_tensor

    return int(_first_tensor(out)[0].numel())


def dgemm_rate(n: int, reps: int = 5) -> float:
    """This host's best float64 matrix-product rate (FLOP/s) on the Gram's shape: (n x K) times its transpose,
    in torch (the BLAS the Grams use), every thread; the best of several widths and repeats."""
    import torch

    best = 0.0
    for k in (4096, 8192, 16384):
        X = torch.rand(n, k, dtype=torch.float64)
        torch.mm(X, X.T)
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(X, X.T)
            best = max(best, 2.0 * n * n * k / (time.perf_counter() - t0))
    return best


def gram_floor_columns(widths: dict[str, int], n: int, unit_ratio: float, exact_budget: int | None,
                       gram_dim) -> int:
    """Columns of all a model's Grams (CKA and RSA form one per layer): each layer's sampled units where they are
    kept exact, its projection's dimensions where not (:func:`idsim.features.gram_columns`, the extraction's rule)."""
    from idsim.features import gram_columns
    from idsim.reduce import n_sampled

    return sum(gram_columns(n, n_sampled(p, unit_ratio), exact_budget, gram_dim)[0] for p in widths.values())


def timed(cmd: list[str], env: dict) -> tuple[float, float, str, str, int]:
    """Run ``cmd`` under /usr/bin/time -v when present: (wall s, peak RSS MB, stdout, stderr, returncode)."""
    gnu_time = Path("/usr/bin/time")
    full = [str(gnu_time), "-v", *cmd] if gnu_time.exists() else cmd
    t0 = time.perf_counter()
    res = subprocess.run(full, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = float("nan")
    for line in res.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[1]) / 1024
    return wall, rss, res.stdout, res.stderr, res.returncode


def warm_up_child(models: list[str]) -> None:
    """Child process: compile idsim's kernels through the code paths a job takes, and remember the models' layouts."""
    import numpy as np
    import torch

    from idsim.layouts import layout
    from idsim.metrics._ridge import bootstrap_r, nanmedian_rows
    from idsim.model_names import resolve_library
    from idsim.reduce import SparseProjection

    SparseProjection(8, 5000, 64, seed=0, layer="warm-up").update(torch.rand(8, 5000), slice(0, 8))
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, 30, 30), minlength=30) for _ in range(4)])
    bootstrap_r(rng.standard_normal((30, 3)), rng.standard_normal((30, 3)), np.arange(30) % 3, counts)
    nanmedian_rows(rng.standard_normal((2, 4, 6))[0, :, 1:4])  # a target layer's columns of a layer's resamples
    for name in models:
        layout(name, resolve_library(name))


def warm_up(a, env) -> None:
    """Pay, before any timing, what an installation pays on its first job only: numba compiling idsim's kernels
    (cached beside ``idsim/kernels.py``) and remembering the models' layer layouts (``idsim.layouts``)."""
    models = list(dict.fromkeys([a.target, *a.sources]))
    wall, _, _, err, rc = timed([sys.executable, __file__, "--warm-up-child", *models], env)
    if rc:
        print(err[-3000:], file=sys.stderr)
        raise SystemExit("floor_bench: the warm-up failed (above)")
    print(f"warm-up (idsim's compiled kernels and the models' layouts, once per installation; not counted below,"
          f" --fresh-install counts them in the first job): {wall:.1f} s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, help="a folder of images (dataset=folder); default: embedded photographs")
    p.add_argument("--n", type=int, default=150, help="number of images (default 150)")
    p.add_argument("--metrics", nargs="+", default=list(METRICS), choices=METRICS)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="extraction.num_workers of the job and the forward loop")
    p.add_argument("--target", default="resnet18")
    p.add_argument("--sources", nargs="+", default=DEFAULT_MODELS[1:])
    p.add_argument("--extra", nargs="*", default=[], help="more overrides for the idsim job")
    p.add_argument("--no-warm", action="store_true", help="skip the warm (cached) job")
    p.add_argument("--alpha-grid", action="store_true", help="metric=regression with its default alpha grid (default:"
                   " metric.alphas=[1.0], the setting the speed goal was measured with)")
    p.add_argument("--fresh-install", action="store_true", help="skip the warm-up: the first job then also pays"
                   " what an installation pays once (compiling idsim's kernels, remembering the models' layer layouts)")
    p.add_argument("--warm-up-child", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--forward-child", nargs=2, metavar=("MODEL", "SEED"), help=argparse.SUPPRESS)
    p.add_argument("--script-child", nargs="+", metavar="MODEL:SEED", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    dataset = (["dataset=folder", f"dataset.root={a.images}", f"dataset.n_images={a.n}"] if a.images else
               ["dataset=natural", "dataset.size=224", f"dataset.n_images={a.n}"])
    if a.warm_up_child:
        warm_up_child(a.warm_up_child)
        return 0
    if a.forward_child:
        forward_only(a.forward_child[0], dataset, a.batch_size, a.device, a.workers, int(a.forward_child[1]))
        return 0
    if a.script_child:
        forward_script([(m.rsplit(":", 1)[0], int(m.rsplit(":", 1)[1])) for m in a.script_child], dataset,
                       a.batch_size, a.device, a.workers)
        return 0

    from idsim.config import compose
    from idsim.errors import IdsimError

    sources = "[" + ",".join(a.sources) + "]"
    try:  # the job's settings and models, checked before any timing (one line, not a failed child minutes later)
        job = compose([*dataset, f"target={a.target}", f"sources={sources}", *a.extra])
    except IdsimError as e:
        print(f"floor_bench: error: {e}", file=sys.stderr)
        return 2
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"), "WANDB_SILENT": "true"}
    models = [(a.target, 0, "target")] + [(s, 1, s) for s in a.sources]
    print(f"# floor benchmark: {a.n} images ({'folder ' + str(a.images) if a.images else 'embedded natural, 224 px'}),"
          f" batch {a.batch_size}, device {a.device}, workers {a.workers}; {os.cpu_count()} CPUs;"
          f" load {os.getloadavg()[0]:.1f}")
    if not a.fresh_install:
        warm_up(a, env)
    child = [sys.executable, __file__, *(["--images", str(a.images)] if a.images else []), "--n", str(a.n),
             "--batch-size", str(a.batch_size), "--device", a.device, "--workers", str(a.workers)]
    forward = {}
    for name, seed, label in models:
        wall, rss, out, err, rc = timed([*child, "--forward-child", name, str(seed)], env)
        if rc:
            print(err[-3000:], file=sys.stderr)
            return 1
        forward[label] = {**json.loads(out.strip().splitlines()[-1]), "rss_mb": rss}
    total_forward = sum(v["forward_s"] for v in forward.values())
    script_wall, _, _, err, rc = timed([*child, "--script-child", *(f"{name}:{seed}" for name, seed, _ in models)], env)
    if rc:
        print(err[-3000:], file=sys.stderr)
        return 1

    print(f"\n## pure forward passes (decoding included): {total_forward:.1f} s")
    print("| model | forward (s) | build (s) | peak RSS (MB) |\n|---|---|---|---|")
    for label, v in forward.items():
        print(f"| {label} | {v['forward_s']:.2f} | {v['build_s']:.2f} | {v['rss_mb']:.0f} |")
    print(f"forward script: a plain script doing only these forward passes, as one process (start-up, imports, building"
          f" the models, decoding, forward passes): {script_wall:.1f} s = {script_wall / total_forward:.2f}x the"
          f" forward passes")

    ext = job.extraction
    budget = None if ext.exact_max_mb is None else int(ext.exact_max_mb * 2**20)
    columns = sum(gram_floor_columns(v["widths"], a.n, job.unit_ratio if label == "target" else 1.0, budget,
                                     ext.gram_dim) for label, v in forward.items())
    builds = sum(v["build_s"] for v in forward.values())
    if a.device == "cpu":  # the Grams' floor on a GPU would need the GPU's rate
        rate = dgemm_rate(a.n)
        gram_floor = a.n * (a.n + 1) * columns / rate  # the symmetric half: n(n+1)/2 multiply-adds per column
        print(f"\nGram floor (cka, rsa): the exact float64 Grams of every layer ({columns:,} columns over {a.n} images),"
              f" their symmetric half only, at this host's best float64 product rate ({rate / 1e9:.0f} GFLOP/s):"
              f" {gram_floor:.1f} s. Unless Grams could run in what the forward passes leave idle of the cores, a job"
              f" that keeps today's exact scores takes at least the forward passes + this"
              f" = {(total_forward + gram_floor) / total_forward:.2f}x,"
              f" or {(total_forward + gram_floor + builds) / total_forward:.2f}x with building the models.")

    for metric in a.metrics:
        rows = []
        extra = ["metric.alphas=[1.0]"] if metric == "regression" and not a.alpha_grid else []  # as the issue measured
        for phase in ("cold",) + (() if a.no_warm else ("warm",)):
            if phase == "cold":  # the warm job reuses the cold job's cache
                cache = Path(tempfile.mkdtemp(prefix="idsim-floor-"))
            run_dir = Path(tempfile.mkdtemp(prefix="idsim-floor-run-"))
            cmd = [sys.executable, "run.py", f"target={a.target}", f"sources={sources}", f"metric={metric}", *dataset,
                   f"extraction.batch_size={a.batch_size}", f"extraction.device={a.device}",
                   f"extraction.num_workers={a.workers}", "extraction.progress=false", f"cache.dir={cache}",
                   f"hydra.run.dir={run_dir}", *extra, *a.extra]
            wall, rss, out, err, rc = timed(cmd, env)
            if rc:
                print(err[-3000:], file=sys.stderr)
                return 1
            timings = json.loads((run_dir / "timings.json").read_text())
            rows.append((phase, wall, rss, timings))
        cold_wall, cold_rss, timings = rows[0][1], rows[0][2], rows[0][3]
        print(f"\n## metric={metric}: cold job {cold_wall:.1f} s = {cold_wall / total_forward:.2f}x the forward passes"
              f" (peak RSS {cold_rss:.0f} MB)")
        print("| model | forward (s) | idsim: extract + score (s) | ratio |\n|---|---|---|---|")
        for label, v in forward.items():
            ids = timings.get(f"extract:{label}", 0.0) + timings.get(f"score:{label}", 0.0)
            print(f"| {label} | {v['forward_s']:.2f} | {ids:.2f} | {ids / v['forward_s']:.2f} |")
        rest = {k: v for k, v in timings.items() if not k.startswith(("extract:", "score:"))}
        accounted = sum(timings.values())
        print(f"| other phases | | {', '.join(f'{k} {v:.2f}' for k, v in rest.items())};"
              f" start-up and exit {cold_wall - accounted:.2f} | |")
        print(f"| **total** | {total_forward:.2f} | {cold_wall:.2f} (process wall) | **{cold_wall / total_forward:.2f}** |")
        print(f"the forward passes and building the models: {total_forward + builds:.1f} s; the cold job is"
              f" {cold_wall / (total_forward + builds):.2f}x that, and {cold_wall / script_wall:.2f}x the forward"
              f" script's {script_wall:.1f} s")
        if len(rows) > 1:
            warm_wall = rows[1][1]
            print(f"warm job (everything cached): {warm_wall:.1f} s = {warm_wall / cold_wall:.3f}x the cold job"
                  f" (peak RSS {rows[1][2]:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
