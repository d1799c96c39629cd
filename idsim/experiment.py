"""One system-identification experiment: a target, a set of sources, a probe set, a metric.

:func:`run_experiment` validates the whole configuration before any forward pass (model
names, weights, layer names, ratios, metric options), extracts the target once, then each
source in turn — scored against the target as soon as it is extracted and freed after — and
writes the tidy results, figures and W&B logs into the run's output folder. ``scores.csv`` is
rewritten after every source, so a failure late in a run keeps what was already computed.
"""
from __future__ import annotations

import gc
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from .datasets import load_probe_set
from .errors import IdsimError
from .features import FeatureSet, extract, resolve_device
from .metrics.identifiability import best_per_source, identifiability, verdict
from .models import LIBRARIES, _construct, build_model, resolve_library
from .scoring import Metric, score_layers
from .tracking import LOGGERS, make_tracker

log = logging.getLogger("idsim")


@dataclass
class ModelSpec:
    label: str                 # how the model is named in outputs (its key under `sources`)
    name: str                  # torchvision / timm model name
    library: str
    weights: str
    seed: int | None
    layers: list[str] | None

    @property
    def architecture(self) -> tuple[str, str]:
        return (self.library, self.name)

    def describe(self) -> str:
        w = self.weights if self.weights != "random" else f"random(seed={self.seed})"
        return f"{self.label} [{self.library}, {w}]"


@dataclass
class ExperimentResult:
    scores: pd.DataFrame
    identifiability: pd.DataFrame
    best: pd.DataFrame
    units: pd.DataFrame
    verdict: str
    out_dir: Path


def _int(value, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        lim = f" >= {minimum}" if minimum is not None else ""
        raise IdsimError(f"{key} must be an integer{lim}, got {value!r}")
    return value


def _weights(value, key: str) -> str:
    w = str(value)
    if w in ("random", "imagenet"):
        return w
    p = Path(w).expanduser()
    if not p.is_file():
        raise IdsimError(f"{key}={w!r}: not random, imagenet or an existing checkpoint file")
    return str(p.resolve())


def _model_spec(label: str, node: Mapping[str, Any], key: str, default_seed: int) -> ModelSpec:
    if not isinstance(node, Mapping) or "name" not in node:
        raise IdsimError(f"{key} must be a model config with a name (e.g. {key.split('.')[0]}=resnet18), got {node!r}")
    known = {"name", "library", "weights", "seed", "layers"}
    unknown = sorted(set(node) - known)
    if unknown:
        raise IdsimError(f"{key}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    library = str(node.get("library") or "auto")
    if library not in ("auto", *LIBRARIES):
        raise IdsimError(f"{key}.library={library!r}; valid: auto, torchvision, timm")
    name = str(node["name"])
    library = resolve_library(name, library)
    weights = _weights(node.get("weights", "random"), f"{key}.weights")
    seed = node.get("seed")
    seed = default_seed if seed is None else _int(seed, f"{key}.seed", 0)
    layers = node.get("layers")
    if layers is not None:
        layers = [str(x) for x in (layers if isinstance(layers, (list, tuple)) else [layers])]
    return ModelSpec(label=label, name=name, library=library, weights=weights, seed=seed, layers=layers)


def _check_layers(spec: ModelSpec) -> None:
    """Check user-given layer names on a weightless (meta-device) copy, before any real work."""
    if spec.layers is None:
        return
    try:
        with torch.device("meta"):
            module = _construct(spec.name, spec.library, pretrained=False)
    except Exception:  # some constructors do real computation at init: checked when built instead
        return
    known = set(n for n, _ in module.named_modules() if n)
    bad = [lay for lay in spec.layers if lay not in known]
    if bad:
        import difflib

        close = difflib.get_close_matches(bad[0], sorted(known), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise IdsimError(f"{spec.name} has no layer {bad[0]!r}{hint} (list them: python -m idsim.models layers {spec.name})")
    if not spec.layers:
        raise IdsimError(f"{spec.label}: empty layer list; give module paths or leave layers unset for the default set")


@dataclass
class ExperimentSpec:
    target: ModelSpec
    sources: list[ModelSpec]
    metric: Metric
    unit_ratio: float
    seed: int
    batch_size: int
    device: torch.device
    exact_budget: int | None = None
    gram_dim: int | str = "auto"
    cache_dir: Path | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping) -> "ExperimentSpec":
        c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        seed = _int(c.get("seed", 0), "seed", 0)
        ratio = c.get("unit_ratio", 1.0)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0 < ratio <= 1) or math.isnan(ratio):
            raise IdsimError(f"unit_ratio must be a number in (0, 1] (the fraction of target units kept), got {ratio!r}")
        batch = _int(c.get("batch_size", 32), "batch_size", 1)
        logger = c.get("logger", "wandb")
        if logger not in LOGGERS:
            raise IdsimError(f"logger={logger!r}; valid: {', '.join(LOGGERS)}")
        target = _model_spec(str((c.get("target") or {}).get("name", "target")), c.get("target"), "target", seed)
        sources_cfg = c.get("sources")
        if not isinstance(sources_cfg, Mapping) or not sources_cfg:
            raise IdsimError("no source models: choose at least one, e.g. sources=[alexnet,resnet18]")
        sources = [_model_spec(str(k), v, f"sources.{k}", seed + 1) for k, v in sources_cfg.items()]
        if c.get("identical_weights", False):
            for s in sources:
                if s.architecture == target.architecture:
                    s.seed, s.weights = target.seed, target.weights
        for spec in (target, *sources):
            _check_layers(spec)
        metric = Metric.from_config(c.get("metric") or "cka")
        exact_mb = c.get("exact_max_mb", 1024)
        if exact_mb is not None and (isinstance(exact_mb, bool) or not isinstance(exact_mb, (int, float)) or exact_mb <= 0):
            raise IdsimError(f"exact_max_mb={exact_mb!r}; valid: a positive number of MB (exact values kept per layer"
                             f" before its Gram comes from a projection) or null (always exact)")
        gram_dim = c.get("gram_dim", "auto")
        if not (gram_dim == "auto" or (isinstance(gram_dim, int) and not isinstance(gram_dim, bool) and gram_dim > 0)):
            raise IdsimError(f"gram_dim={gram_dim!r}; valid: auto (Johnson-Lindenstrauss bound) or a positive integer")
        cache = c.get("cache") or {}
        enabled = cache.get("enabled", True)
        if not isinstance(enabled, bool):
            raise IdsimError(f"cache.enabled={enabled!r}; valid: true or false")
        cache_dir = Path(str(cache["dir"])).expanduser() if enabled and cache.get("dir") else None
        return cls(target=target, sources=sources, metric=metric, unit_ratio=float(ratio), seed=seed, batch_size=batch,
                   device=resolve_device(c.get("device", "auto")),
                   exact_budget=None if exact_mb is None else int(exact_mb * 2**20), gram_dim=gram_dim, cache_dir=cache_dir)


def hydra_output_dir() -> Path | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:
        return None


def _build(spec: ModelSpec):
    return build_model(spec.name, weights=spec.weights, seed=spec.seed, library=spec.library)


def run_experiment(cfg: DictConfig | Mapping, out_dir: Path | str | None = None) -> ExperimentResult:
    """Run the experiment a composed config describes; results go to ``out_dir`` (default: Hydra's run dir)."""
    t0 = time.perf_counter()
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    spec = ExperimentSpec.from_config(cfg)
    probe = load_probe_set(OmegaConf.to_container(cfg.dataset, resolve=True))
    out = Path(out_dir) if out_dir is not None else (hydra_output_dir() or Path("outputs") / "runs" / time.strftime("%Y-%m-%d/%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    same = [s.label for s in spec.sources if s.architecture == spec.target.architecture]
    log.info("target %s; sources %s; %d %s images; metric %s; unit_ratio %g; device %s", spec.target.describe(),
             ", ".join(s.describe() for s in spec.sources), len(probe), probe.name, spec.metric.name, spec.unit_ratio,
             spec.device)
    if not same:
        log.warning("no source has the target's architecture (%s): identifiability index is undefined", spec.target.name)
    for s in spec.sources:
        if s.architecture == spec.target.architecture and s.weights == spec.target.weights and s.seed == spec.target.seed:
            log.info("source %s has the target's exact weights", s.label)

    config = OmegaConf.to_container(cfg, resolve=True)
    tracker = make_tracker(cfg.get("logger", "wandb"), out, config, cfg.get("wandb"),
                           name=f"{spec.target.name}-{spec.metric.name}")
    common = dict(batch_size=spec.batch_size, device=spec.device, progress=bool(cfg.get("progress", True)),
                  scratch=cfg.get("scratch_dir"), ram_budget=int(cfg.get("ram_budget_mb", 1024)) * 2**20,
                  num_workers=int(cfg.get("num_workers", 0)), exact_budget=spec.exact_budget, gram_dim=spec.gram_dim)
    failed = True
    try:
        target = _features(spec.target, probe, spec.metric.plan("target", spec.unit_ratio, spec.seed), spec, common)
        units = _units_table(target, spec)
        units.to_csv(out / "target_units.csv", index=False)
        dropped = int(units["n_constant"].sum())
        log.info("target %s: %d layers, kept %d of %d units (unit_ratio %g; %d zero-variance units dropped)",
                 spec.target.name, len(units), int(units["n_kept"].sum()), int(units["n_units"].sum()), spec.unit_ratio,
                 dropped)
        parts = []
        for s in spec.sources:
            feats = _features(s, probe, spec.metric.plan("source", seed=spec.seed), spec, common)
            parts.append(_tidy(score_layers(feats, target, spec.metric, seed=spec.seed, device=spec.device), s, spec, probe.name, len(probe)))
            del feats
            gc.collect()
            pd.concat(parts, ignore_index=True).to_csv(out / "scores.csv", index=False)
            log.info("scored %s: best %.4f", s.label, parts[-1]["score"].max())
        scores = pd.concat(parts, ignore_index=True)
        ident = identifiability(scores)
        best = best_per_source(scores)
        ident.to_csv(out / "identifiability.csv", index=False)
        best.to_csv(out / "best_scores.csv", index=False)
        line = verdict(ident, spec.target.name)
        figures = _figures(scores, best, ident, out) if cfg.get("plots", True) else {}
        from .report import print_summary

        print_summary(ident, line, out)
        tracker.log_table("scores", scores)
        tracker.log_table("identifiability", ident)
        tracker.log_table("best_scores", best)
        tracker.log_table("target_units", units)
        tracker.log_images(figures)
        tracker.summary({"verdict": line, "n_correct": int(ident["correct"].sum()), "n_target_layers": len(ident),
                         "mean_identifiability_index": float(ident["identifiability_index"].mean()),
                         "seconds": time.perf_counter() - t0})
        failed = False
        log.info("%s", line)
        log.info("results in %s (%.1f s)", out, time.perf_counter() - t0)
        return ExperimentResult(scores=scores, identifiability=ident, best=best, units=units, verdict=line, out_dir=out)
    finally:
        tracker.finish(failed=failed)


def _features(ms: ModelSpec, probe, plan, spec: ExperimentSpec, common: dict) -> FeatureSet:
    """A model's features on the probe set: from the feature cache, or extracted (and then cached)."""
    def compute() -> FeatureSet:
        model = _build(ms)
        try:
            return extract(model, probe, plan, ms.layers, **common)
        finally:
            del model

    if spec.cache_dir is None:
        return compute()
    from .cache import FeatureCache, make_key, model_identity

    settings = {"exact_budget": spec.exact_budget, "gram_dim": spec.gram_dim, "device": spec.device.type}
    key, desc = make_key(model_identity(ms.name, ms.library, ms.weights, ms.seed, ms.layers),
                         {"name": probe.name, "n_images": len(probe), **probe.identity()}, plan, settings)
    feats, hit = FeatureCache(spec.cache_dir).get_or_compute(key, desc, compute)
    if hit:
        log.info("%s: features from the cache (%s)", ms.label, key[:12])
    return feats


def _units_table(target: FeatureSet, spec: ExperimentSpec) -> pd.DataFrame:
    rows = []
    for i, (name, d) in enumerate(target.layers.items()):
        rows.append({"target_layer": name, "target_layer_index": i, "n_units": d.n_units, "n_sampled": d.n_sampled,
                     "approximate": d.approximate,
                     "n_constant": d.n_constant, "n_kept": d.n_kept,
                     "n_scored": d.units.shape[1] if d.units is not None else d.n_kept, "unit_ratio": spec.unit_ratio})
    return pd.DataFrame(rows)


def _tidy(df: pd.DataFrame, s: ModelSpec, spec: ExperimentSpec, dataset: str, n_images: int) -> pd.DataFrame:
    df.insert(0, "source", s.label)
    df.insert(2, "target", spec.target.name)
    df.insert(5, "metric", spec.metric.name)
    df["same_architecture"] = s.architecture == spec.target.architecture
    df["source_weights"] = s.weights
    df["source_seed"] = s.seed
    df["dataset"] = dataset
    df["n_images"] = n_images
    df["unit_ratio"] = spec.unit_ratio
    cols = ["source", "source_layer", "target", "target_layer", "metric", "score", "source_layer_index",
            "target_layer_index"]
    return df[cols + [c for c in df.columns if c not in cols]]


def _figures(scores: pd.DataFrame, best: pd.DataFrame, ident: pd.DataFrame, out: Path) -> dict[str, Path]:
    from . import plots

    figs = {}
    for p in plots.plot_layer_heatmaps(scores, out / "figures"):
        figs[p.stem] = p
    figs["best_scores"] = plots.plot_best_scores(best, out / "figures" / "best_scores.png")
    figs["identifiability"] = plots.plot_identifiability(ident, out / "figures" / "identifiability.png")
    return figs
