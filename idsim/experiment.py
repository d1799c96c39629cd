"""One system-identification experiment: a target, a set of sources, a probe set, a metric.

:func:`run_experiment` reads like the recipe it runs: validate the config, build the target and
the sources and check everything that needs no forward pass, extract the target (and its noise
ceilings, when it is a recording), then extract and score each source in turn (freed after),
identify, write.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from . import metrics, schema, stats, systems
from .cache import cached_features, cached_scores
from .devices import device_type, resolve_device
from .identifiability import best_per_source, identifiability, verdict
from .outputs import RunWriter, units_table
from .scoring import check_pair, layer_table, scores_table

log = logging.getLogger("idsim")


@dataclass
class ExperimentResult:
    scores: pd.DataFrame
    identifiability: pd.DataFrame
    best: pd.DataFrame
    units: pd.DataFrame
    verdict: str
    out_dir: Path


class Clock(dict):
    """Seconds per phase of a run (``timings.json``): prepare, extract:target, extract:<source>, score:<source>,
    identify, write."""

    @contextlib.contextmanager
    def __call__(self, key: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self[key] = self.get(key, 0.0) + time.perf_counter() - t


def run_experiment(cfg: DictConfig | Mapping[str, Any], out_dir: Path | str | None = None) -> ExperimentResult:
    """Run the experiment a composed config describes; results go to ``out_dir`` (default: Hydra's run dir)."""
    t0 = time.perf_counter()
    clock = Clock()
    with clock("prepare"):
        run, metric, target, sources, probe, device = _prepare(cfg)  # device: its type ("cpu", "cuda")
    n_boot = metric.bootstrap_default if run.stats.bootstrap is None else run.stats.bootstrap
    resamples = stats.resamples(len(probe), n_boot, run.seed)
    cache = run.cache.dir if run.cache.enabled else None
    _log_plan(run, target, sources, probe, metric)

    out = _output_dir(out_dir)
    with RunWriter(out, _container(cfg), run.logger, name=f"{target.name}-{metric.name}", plots=run.plots) as writer:
        writer.config(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg)))
        t_plan = metric.plan(systems.TARGET, run.unit_ratio, run.seed)
        with clock("extract:target"):
            t_feats, t_key = cached_features(target, probe, t_plan, run.extraction, cache)
            ceilings = target.ceilings(metric, t_plan, t_feats, probe, run.extraction)  # None for a network
        units = units_table(t_feats, run.unit_ratio, len(getattr(probe, "unreadable", ())))
        writer.target_units(units)
        writer.ceilings(ceilings)
        log.info("target %s: %d layers, kept %d of %d units (unit_ratio %g; %d zero-variance units dropped)",
                 target.name, len(units), int(units["n_kept"].sum()), int(units["n_units"].sum()), run.unit_ratio,
                 int(units["n_constant"].sum()))
        boots = {}
        for source in sources:
            with clock(f"extract:{source.label}"):
                s_feats, s_key = cached_features(source, probe, metric.plan(systems.SOURCE, seed=run.seed),
                                                 run.extraction, cache)
            with clock(f"score:{source.label}"):
                check_pair(s_feats, t_feats)
                res = cached_scores(metric, s_key, t_key, run.seed, resamples, device, cache,
                                    functools.partial(_score, metric, s_feats, t_feats, run, resamples),
                                    label=source.label)
                part = scores_table(layer_table(res, s_feats, t_feats), source, target, metric, probe, run.unit_ratio,
                                    ceilings)
                writer.add_scores(part)
                boots[source.label] = res.boot
                if res.boot is not None:  # each source's best score per target layer and resample (bootstrap.csv)
                    writer.add_bootstrap(stats.best_per_resample(res.boot, t_feats.layer_names).assign(
                        metric=metric.name, source=source.label, target=target.name, **source.columns()))
                del s_feats, res  # freed here (reference counting): the next source has the memory
            log.info("scored %s: best %.4f", source.label, part["score"].max())
        with clock("identify"):
            scores = writer.scores
            ident, best = identifiability(scores), best_per_source(scores)
            if resamples is not None:
                ident, best = stats.add_intervals(ident, best, boots, {s.label: s.architecture == target.architecture
                                                                        for s in sources}, t_feats.layer_names,
                                                  run.stats.ci)
            line = verdict(ident, target.name)
        with clock("write"):
            writer.finish(ident, best, line)
        writer.timings(clock)
    log.info("%s", line)
    log.info("results in %s (%.1f s)", out, time.perf_counter() - t0)
    return ExperimentResult(scores=scores, identifiability=ident, best=best, units=units, verdict=line, out_dir=out)


def _prepare(cfg):
    """Every check that needs no forward pass: the config, the metric, the systems (meta device), the probe set."""
    run = schema.load(cfg)
    device = device_type(run.extraction.device)  # checked now; torch is imported only if something is computed
    metric = metrics.build(run.metric)
    target, sources = systems.build_all(run)
    for system in (target, *sources):
        system.prepare()
    probe = systems.probe_set(target, run)  # a recording's own stimuli, else the dataset
    metric.check(len(probe))
    return run, metric, target, sources, probe, device


def _score(metric, source, target, run, resamples):
    """The metric's scores of a source against the target (the torch device is resolved only now: a job whose
    scores are all cached never imports torch)."""
    return metric.score(source, target, seed=run.seed, device=resolve_device(run.extraction.device),
                        resamples=resamples)


def _log_plan(run, target, sources, probe, metric) -> None:
    log.info("target %s; sources %s; %d %s images; metric %s; unit_ratio %g; device %s", target.describe(),
             ", ".join(s.describe() for s in sources), len(probe), probe.name, metric.name, run.unit_ratio,
             run.extraction.device)
    if not any(s.architecture == target.architecture for s in sources):
        log.warning("no source has the target's architecture (%s): identifiability index is undefined", target.name)


def _container(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def hydra_output_dir() -> Path | None:
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:
        return None


def _output_dir(out_dir: Path | str | None) -> Path:
    if out_dir is not None:
        return Path(out_dir)
    return hydra_output_dir() or Path("outputs") / "runs" / time.strftime("%Y-%m-%d/%H-%M-%S")
