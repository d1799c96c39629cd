"""Peak memory and wall time of feature extraction against the number of images.

    python benchmarks/scale_bench.py                            # VGG11, 100/300/1000/3000 images
    python benchmarks/scale_bench.py --n 100,300 --model alexnet
    python benchmarks/scale_bench.py --quick                    # AlexNet, 20 and 40 images (a check)

Every measurement runs in a fresh process (peak RSS is the process's own ``ru_maxrss``):

- ``forward``: the model's forward passes over the images and nothing else (the floor);
- ``streaming``: idsim's extraction of every default layer for CKA (per-layer centred Gram;
  exact values up to ``exact_max_mb`` per layer, a sparse random projection beyond), feature
  cache off;
- ``keep-all``: the keep-everything baseline (what Brain-Score does): hooks store every layer's
  full float32 activations for every image in RAM, then each layer's Gram is formed; skipped when
  its activations alone would exceed ``--ram-limit-gb``;
- ``cold`` / ``warm``: idsim's extraction through the feature cache, first with an empty cache,
  then again in a new process.

Images are the embedded ``shapes`` set at 256 px (every model resizes/crops to 224).
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

MODES = ("forward", "streaming", "keep-all", "cold", "warm")


def child(mode: str, model_name: str, n: int, batch: int, cache_dir: str, exact_mb: float) -> dict:
    import torch

    from idsim import build_model, load_probe_set
    from idsim.features import Plan, extract, iter_batches

    torch.set_grad_enabled(False)
    probe = load_probe_set({"name": "shapes", "n_images": n, "seed": 0})
    model = build_model(model_name, seed=0)
    layers = model.resolve_layers(None)
    budget = int(exact_mb * 2**20)
    t0 = time.perf_counter()
    if mode == "forward":
        net = model.module.eval()
        with torch.inference_mode():
            for _, x in iter_batches(model, probe, batch, torch.device("cpu")):
                net(x)
    elif mode == "streaming":
        extract(model, probe, Plan(), batch_size=batch, progress=False, exact_budget=budget)
    elif mode == "keep-all":
        import numpy as np

        from idsim.gram import centred_gram

        store = {name: [] for name in layers}
        modules = dict(model.module.named_modules())
        hooks = [modules[name].register_forward_hook(
            lambda m, i, o, name=name: store[name].append(o.detach().reshape(o.shape[0], -1).float().clone().numpy()))
            for name in layers]
        with torch.inference_mode():
            for _, x in iter_batches(model, probe, batch, torch.device("cpu")):
                model.module(x)
        for h in hooks:
            h.remove()
        for name in layers:
            acts = np.concatenate(store.pop(name))
            centred_gram(acts)
            del acts
    else:
        from idsim.cache import FeatureCache, make_key

        plan = Plan()
        ident = {"name": model_name, "library": model.library, "weights": "random", "seed": 0, "layers": layers}
        key, desc = make_key(ident, {"name": probe.name, "n_images": n, **probe.identity()}, plan,
                             {"exact_max_mb": exact_mb, "gram_dim": "auto", "device": "cpu", "batch_size": batch})
        _, hit = FeatureCache(cache_dir).get_or_compute(
            key, desc, lambda: extract(model, probe, plan, batch_size=batch, progress=False, exact_budget=budget))
        assert hit == (mode == "warm"), f"{mode} run: cache hit={hit}"
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"mode": mode, "n": n, "wall_s": wall, "peak_rss_gib": rss}


def layer_units(model_name: str) -> int:
    import torch

    from idsim import build_model

    model = build_model(model_name, seed=0)
    layers = model.resolve_layers(None)
    modules = dict(model.module.named_modules())
    sizes = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, o[0].numel())) for n in layers]
    with torch.inference_mode():
        model.module(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    return sum(sizes.values())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vgg11")
    ap.add_argument("--n", default="100,300,1000,3000", help="image counts")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--exact-max-mb", type=float, default=1024)
    ap.add_argument("--ram-limit-gb", type=float, default=16.0, help="skip keep-all beyond this much activation data")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.model, args.n = "alexnet", "20,40"
    if args.child:
        print(json.dumps(child(args.child[0], args.model, int(args.child[1]), args.batch_size, args.cache_dir,
                               args.exact_max_mb)))
        return

    units = layer_units(args.model)
    print(f"# {args.model}: default layers hold {units:,} units per image; exact_max_mb={args.exact_max_mb:g};"
          f" batch {args.batch_size}; {os.cpu_count()} CPUs", flush=True)
    modes = args.modes.split(",")
    rows = []
    for n in (int(x) for x in args.n.split(",")):
        with tempfile.TemporaryDirectory(prefix="idsim-bench-cache-") as cache_dir:
            for mode in modes:
                need_gb = n * units * 4 / 2**30
                if mode == "keep-all" and need_gb > args.ram_limit_gb:
                    rows.append({"mode": mode, "n": n, "skipped": f"needs {need_gb:.0f} GiB of activations"})
                    print(f"  n={n} {mode}: skipped ({rows[-1]['skipped']})", flush=True)
                    continue
                cmd = [sys.executable, __file__, "--child", mode, str(n), "--model", args.model, "--batch-size",
                       str(args.batch_size), "--exact-max-mb", str(args.exact_max_mb), "--cache-dir", cache_dir]
                t0 = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    rows.append({"mode": mode, "n": n, "skipped": f"failed: {out.stderr.strip().splitlines()[-1:]}"})
                else:
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    rows[-1]["process_s"] = time.perf_counter() - t0
                print(f"  n={n} {mode}: {rows[-1]}", flush=True)
    print()
    print("| images | mode | wall (s) | vs forward | peak RSS (GiB) | process wall (s) |")
    print("|---:|---|---:|---:|---:|---:|")
    fwd = {r["n"]: r["wall_s"] for r in rows if r["mode"] == "forward" and "wall_s" in r}
    cold = {r["n"]: r["wall_s"] for r in rows if r["mode"] == "cold" and "wall_s" in r}
    for r in rows:
        if "skipped" in r:
            print(f"| {r['n']} | {r['mode']} | – | – | – | {r['skipped']} |")
            continue
        ratio = f"{r['wall_s'] / fwd[r['n']]:.2f}x" if r["n"] in fwd else "–"
        extra = f" (cold/warm {cold[r['n']] / r['wall_s']:.0f}x)" if r["mode"] == "warm" and r["n"] in cold else ""
        print(f"| {r['n']} | {r['mode']} | {r['wall_s']:.1f}{extra} | {ratio} | {r['peak_rss_gib']:.2f} | {r['process_s']:.1f} |")


if __name__ == "__main__":
    main()
