"""Sweeps (``python run.py -m ...``): the summary of a sweep's jobs, and what happens when one fails.

Per-job bookkeeping (status files, config hashes, folder names, skipping finished jobs) is in
:mod:`idsim.jobs`; the figures are in :mod:`idsim.plots`.

* **Failures.** Hydra 1.3 runs every job of a batch, then re-raises the first failed job's
  exception in the launching process and skips ``on_multirun_end``. :func:`finish_failed_sweep`
  (called by :func:`idsim.app.launch`) still writes the summary of the jobs that succeeded and
  names every failed job with its status file and log; the command exits with status 1.
* **Summary.** :class:`SweepCallback` (``hydra.callbacks`` in ``conf/config.yaml``) writes
  ``<sweep dir>/summary/`` after a sweep: every job's scores and identifiability in one tidy CSV
  each (one column per swept override), a table of job states, and figures of the
  identifiability index by the swept variables; it is logged to W&B as its own run
  (``job_type=sweep-summary``) in the sweep's group. When the sweep's config names an
  ``analysis`` (the papers' experiments, ``conf/experiment/``), its figures and tables are drawn
  too (:mod:`experiments`). Rebuild it by hand with ``python -m idsim.sweep summarize <sweep dir>``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import IdsimError, cli
from .jobs import LAUNCH_ENV, STATUS_FILE, read_status, reconcile, sweep_group
from .outputs import PREVIOUS_DIR, write_table

log = logging.getLogger("idsim")

SUMMARY_DIR = "summary"
STATES = ("running", "done", "failed")


# --------------------------------------------------------------------------- collecting a sweep


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Every job folder (one with a ``status.json``) under the sweep folder."""
    sweep_dir = Path(sweep_dir)
    found = []
    for p in sorted(sweep_dir.rglob(STATUS_FILE)):
        rel = p.parent.relative_to(sweep_dir).parts
        if rel and (rel[0] in (SUMMARY_DIR, ".submitit") or "wandb" in rel or PREVIOUS_DIR in rel):
            continue
        found.append(p.parent)
    return found


def _parse_value(text: str) -> Any:
    """Numbers become numbers (so they sort and plot as such); anything else stays the text typed."""
    import yaml

    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else text


def _override_pairs(overrides: Sequence[str]) -> dict[str, Any]:
    pairs = {}
    for o in overrides:
        key, sep, value = str(o).partition("=")
        key = key.lstrip("+~")
        pairs[key] = _parse_value(value) if sep else None
    return pairs


def swept_keys(overrides: Sequence[Mapping[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (all keys when none differ), in command-line order."""
    keys: list[str] = []
    for o in overrides:
        keys += [k for k in o if k not in keys]
    varying = [k for k in keys if len({repr(o.get(k)) for o in overrides}) > 1]
    return varying or keys


@dataclass
class SweepSummary:
    sweep_dir: Path
    out_dir: Path
    jobs: pd.DataFrame
    scores: pd.DataFrame
    identifiability: pd.DataFrame
    swept: list[str]
    figures: dict[str, Path]
    analysis_error: str | None = None
    seeds: pd.DataFrame | None = None   # aggregation over a `seed` sweep (idsim.stats.over_seeds)
    bootstrap: pd.DataFrame | None = None   # the jobs' bootstrap.csv (stats.bootstrap), for CIs over stimuli

    @property
    def failed(self) -> pd.DataFrame:
        return self.jobs[self.jobs["state"] != "done"]


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError):
        return None


def _with_overrides(df: pd.DataFrame, values: Mapping[str, Any], job: str) -> pd.DataFrame:
    """Prepend the job and its swept override values (a key that already is a column keeps the table's own)."""
    df = df.copy()
    front = {"job": job, **{k: v for k, v in values.items() if k not in df.columns}}
    for i, (k, v) in enumerate(front.items()):
        df.insert(i, k, [v] * len(df))
    return df


def collect(sweep_dir: Path) -> SweepSummary:
    """Read every job of a sweep folder into tidy tables (no files written)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise IdsimError(f"no sweep folder {str(sweep_dir)!r}: give the folder of a multirun (hydra.sweep.dir, e.g."
                         f" outputs/multirun/<date>/<time>)")
    dirs = find_jobs(sweep_dir)
    if not dirs:
        raise IdsimError(f"{str(sweep_dir)!r} holds no sweep jobs (no {STATUS_FILE} in its sub-folders); give the folder"
                         f" of a multirun (hydra.sweep.dir)")
    statuses = [reconcile(d, read_status(d)) or {} for d in dirs]  # a "running" job whose process is gone: failed
    pairs = [_override_pairs(st.get("overrides") or []) for st in statuses]
    swept = swept_keys(pairs)
    rows, scores, idents, boots = [], [], [], []
    for d, st, ov in zip(dirs, statuses, pairs):
        job = str(d.relative_to(sweep_dir))
        values = {k: ov.get(k) for k in swept}
        result = st.get("result") or {}
        rows.append({"job": job, **values, "state": st.get("state", "unknown"),
                     "mean_identifiability_index": result.get("mean_identifiability_index"),
                     "n_correct": result.get("n_correct"), "n_target_layers": result.get("n_target_layers"),
                     "started": st.get("started"), "ended": st.get("ended"), "seconds": st.get("seconds"),
                     "host": st.get("host"), "slurm_job_id": st.get("slurm_array") or st.get("slurm_job_id"),
                     "reason": st.get("reason"), "error": st.get("error"), "status_file": str(d / STATUS_FILE), "log": st.get("log"),
                     "submitit_log": st.get("submitit_log"), "launch_id": st.get("launch_id")})
        if st.get("state") != "done":
            continue
        for name, bucket in (("scores.csv", scores), ("identifiability.csv", idents), ("bootstrap.csv", boots)):
            df = _read_csv(d / name)
            if df is not None:
                bucket.append(_with_overrides(df, values, job))
    jobs = pd.DataFrame(rows).astype({"n_correct": "Int64", "n_target_layers": "Int64"})
    return SweepSummary(sweep_dir=sweep_dir, out_dir=sweep_dir / SUMMARY_DIR, jobs=jobs,
                        scores=pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(),
                        identifiability=pd.concat(idents, ignore_index=True) if idents else pd.DataFrame(),
                        swept=swept, figures={}, bootstrap=pd.concat(boots, ignore_index=True) if boots else None)


def summarize(sweep_dir: Path | str, logger: Mapping[str, Any] | None = None, plots: bool = True,
              analysis: str | None = None) -> SweepSummary:
    """Write ``<sweep dir>/summary/``: scores.csv, identifiability.csv, jobs.csv and figures; log them to W&B.

    ``analysis``: the dotted path of a function ``(summary, out_dir) -> {name: path}`` that draws the
    sweep's analysis (the papers' figures) into ``<sweep dir>/analysis/``.
    """
    s = collect(Path(sweep_dir))
    s.out_dir.mkdir(parents=True, exist_ok=True)
    write_table(s.out_dir / "jobs.csv", s.jobs)
    write_table(s.out_dir / "scores.csv", s.scores)
    write_table(s.out_dir / "identifiability.csv", s.identifiability)
    from .stats import over_seeds

    s.seeds = over_seeds(s.identifiability, s.swept)
    if s.seeds is not None:
        write_table(s.out_dir / "seeds.csv", s.seeds)
    if plots:
        from .plots import plot_index_by_layer, plot_mean_index

        s.figures["identifiability_mean"] = plot_mean_index(s.jobs, s.identifiability, s.swept,
                                                            s.out_dir / "identifiability_mean.png")
        if not s.identifiability.empty:
            s.figures["identifiability_by_layer"] = plot_index_by_layer(s.identifiability, s.swept,
                                                                        s.out_dir / "identifiability_by_layer.png")
    if analysis:
        try:
            s.figures.update(draw_analysis(analysis, s))
        except Exception as e:  # the summary above stays; the analysis can be redrawn with `summarize`
            s.analysis_error = " ".join(f"{type(e).__name__}: {e}".split())
            log.error("the analysis %s of %s failed: %s (redraw: python -m idsim.sweep summarize %s)", analysis,
                      s.sweep_dir, s.analysis_error, s.sweep_dir)
    _log_summary(s, logger)
    n_done = int((s.jobs["state"] == "done").sum())
    log.info("sweep summary: %d of %d jobs done; %s", n_done, len(s.jobs), s.out_dir)
    return s


def draw_analysis(analysis: str, s: SweepSummary) -> dict[str, Path]:
    """Run a sweep's analysis over its summary; its files go to ``<sweep dir>/analysis/``."""
    from hydra.utils import get_method

    from .config import CONF_DIR

    if str(CONF_DIR.parent) not in sys.path:  # the analyses live in the repository's experiments/
        sys.path.append(str(CONF_DIR.parent))
    try:
        draw = get_method(analysis)
    except Exception as e:
        cause = e.__cause__ or e
        raise IdsimError(f"analysis={analysis!r}: cannot import it ({type(cause).__name__}: {cause}); give the dotted"
                         f" path of a function, e.g. experiments.sysid.fig3") from None
    files = draw(s, s.sweep_dir / "analysis") or {}
    for name, path in files.items():
        log.info("analysis %s: %s", name, path)
    return {k: Path(v) for k, v in files.items() if str(v).endswith(".png")}


def _log_summary(s: SweepSummary, logger: Mapping[str, Any] | None) -> None:
    from .tracking import make_tracker

    w = dict(logger or {"kind": "none"})
    w["group"] = w.get("group") or sweep_group(s.sweep_dir)
    config = {"sweep_dir": str(s.sweep_dir.resolve()), "swept": s.swept, "n_jobs": len(s.jobs)}
    tracker = make_tracker(w, s.out_dir, config, name="summary", job_type="sweep-summary", in_job=False)
    failed = True
    try:
        tracker.log_table("jobs", s.jobs)
        if not s.identifiability.empty:
            tracker.log_table("identifiability", s.identifiability)
        tracker.log_images(s.figures)
        mean = pd.to_numeric(s.jobs["mean_identifiability_index"], errors="coerce")
        tracker.summary({"n_jobs": len(s.jobs), "n_done": int((s.jobs["state"] == "done").sum()),
                         "n_failed": int((s.jobs["state"] != "done").sum()),
                         "mean_identifiability_index": float(mean.mean()) if mean.notna().any() else None})
        failed = False
    finally:
        tracker.finish(failed=failed)


# --------------------------------------------------------------------------- the launching process


_active: dict[str, Any] = {}


class SweepCallback(Callback):
    """Hydra callback: marks the jobs of this launch, and writes the sweep summary at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launch_id = uuid.uuid4().hex[:12]
        os.environ[LAUNCH_ENV] = launch_id  # inherited by local, submitit and SLURM jobs
        logger = config.get("logger")
        _active.update(sweep_dir=Path(str(config.hydra.sweep.dir)), launch_id=launch_id,
                       logger=OmegaConf.to_container(logger, resolve=True) if isinstance(logger, DictConfig) else None,
                       analysis=config.get("analysis"))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _active:
            return
        _summarize_active()
        _active.clear()


def _summarize_active() -> SweepSummary | None:
    try:
        return summarize(_active["sweep_dir"], _active["logger"], analysis=_active.get("analysis"))
    except Exception as e:  # a broken summary never hides the jobs' own outcome
        log.error("could not write the sweep summary of %s: %s", _active.get("sweep_dir"), e)
        return None


def active_sweep() -> Path | None:
    """The sweep folder of the multirun this process launched (None outside one)."""
    return _active.get("sweep_dir")


def finish_failed_sweep() -> str:
    """After Hydra stopped a multirun on a failed job: write the summary, return the message naming the failures."""
    sweep_dir = _active["sweep_dir"]
    launch_id = _active.get("launch_id")
    s = _summarize_active()
    _active.clear()
    if s is None:
        return f"the sweep in {sweep_dir} failed; see the jobs' {STATUS_FILE} files"
    jobs = s.jobs
    ours = jobs[jobs["launch_id"] == launch_id] if launch_id and "launch_id" in jobs else jobs
    bad = ours[ours["state"] != "done"]
    lines = [f"{len(bad)} of {len(ours)} jobs failed; summary of the others in {s.out_dir}"]
    for _, r in bad.iterrows():
        what = r["error"] if r["state"] == "failed" else f"did not finish (state {r['state']}: still running elsewhere?)"
        logs = ", ".join(str(x) for x in (r["log"], r["submitit_log"]) if isinstance(x, str) and x)
        lines.append(f"  {r['job']}: {what} (status {r['status_file']}" + (f"; log {logs})" if logs else ")"))
    if bad.empty:
        lines.append("  no job recorded a failure: the launcher itself failed (see the messages above)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


@cli
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m idsim.sweep summarize <sweep dir>``: (re)build a sweep's summary by hand."""
    parser = argparse.ArgumentParser(prog="python -m idsim.sweep", description="Sweep summaries.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summarize", help="(re)build <sweep dir>/summary/ from the jobs' folders")
    p.add_argument("sweep_dir", type=Path, help="the multirun folder (hydra.sweep.dir)")
    p.add_argument("--logger", choices=("wandb", "none"), default=None,
                   help="log the summary to W&B or not (default: the sweep's own logger setting)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    args = parser.parse_args(argv)
    logger, analysis = _sweep_settings(args.sweep_dir)
    if args.logger is not None:
        logger = {**logger, "kind": args.logger} if args.logger == "wandb" else {"kind": "none"}
    s = summarize(args.sweep_dir, logger, plots=not args.no_plots, analysis=None if args.no_plots else analysis)
    n_done = int((s.jobs["state"] == "done").sum())
    print(f"{n_done} of {len(s.jobs)} jobs done; summary in {s.out_dir}")
    for _, r in s.failed.iterrows():
        print(f"  {r['state']}: {r['job']}: {r['error'] or ''} ({r['status_file']})")
    if s.seeds is not None:
        keys = [c for c in s.seeds.columns if c not in ("target_layer_index", "target_layer") and not c.startswith(
            ("n_", "mean_", "sd_", "fraction_"))]
        print(f"over seeds ({s.out_dir / 'seeds.csv'}):")
        for values, g in s.seeds.groupby(keys, sort=False, dropna=False):
            values = values if isinstance(values, tuple) else (values,)
            label = ", ".join(f"{k}={v}" for k, v in zip(keys, values))
            print(f"  {label}: index {g['mean_index'].mean():+.3f} +- {g['sd_index'].mean():.3f} (mean SD across seeds),"
                  f" identified in {g['fraction_identified'].mean():.0%} of seeds x layers ({int(g['n_seeds'].max())} seeds)")
    if s.analysis_error:
        raise IdsimError(f"the analysis {analysis} failed: {s.analysis_error}")
    return 0


def _sweep_settings(sweep_dir: Path) -> tuple[dict, str | None]:
    """The logger config and the analysis the sweep was launched with (its ``multirun.yaml``)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return {"kind": "none"}, None
    cfg = OmegaConf.load(path)
    logger = cfg.get("logger")
    return (OmegaConf.to_container(logger) if isinstance(logger, DictConfig) else {"kind": "none"}), cfg.get("analysis")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
