"""Sweeps (``python run.py -m ...``): job status files, skipping finished jobs, and a sweep summary.

* **Status files.** Every job writes ``status.json`` in its output folder: ``running`` when it
  starts, then ``done`` (with its result) or ``failed`` (with the error and its traceback, which
  also goes to the job's log). A job that raised can still read "completed successfully" in a
  submitit log; the status file cannot lie that way.
* **Skipping finished jobs.** A job whose folder already holds ``status: done`` for the same
  resolved config (SHA-256 of it) returns the stored result instead of recomputing, so
  re-launching an interrupted or partly failed sweep into the same ``hydra.sweep.dir`` only runs
  what is missing. Job folders are named by the job's overrides (:func:`job_dir_name`), so they
  stay the same across re-launches, even when values are added to the sweep.
* **Failures.** Hydra 1.3 runs every job of a batch, then re-raises the first failed job's
  exception in the launching process and skips ``on_multirun_end``. :func:`finish_failed_sweep`
  (called by :func:`idsim.app.launch`) still writes the summary of the jobs that succeeded and
  names every failed job with its status file and log; the command exits with status 1.
* **Summary.** :class:`SweepCallback` (``hydra.callbacks`` in ``conf/config.yaml``) writes
  ``<sweep dir>/summary/`` after a sweep: every job's scores and identifiability in one tidy CSV
  each (one column per swept override), a table of job states, and figures of the
  identifiability index by the swept variables; it is logged to W&B as its own run
  (``job_type=sweep-summary``) in the sweep's group. Rebuild it by hand with
  ``python -m idsim.sweep summarize <sweep dir>``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import socket
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import IdsimError

log = logging.getLogger("idsim")

STATUS_FILE = "status.json"
SUMMARY_DIR = "summary"
STATES = ("running", "done", "failed")
LAUNCH_ENV = "IDSIM_LAUNCH_ID"   # marks the jobs of one launch (set by the launching process, inherited by jobs)
MAX_DIR_NAME = 120


# --------------------------------------------------------------------------- job folders


def job_dir_name(overrides: Sequence[str], sweep_dir: str | None = None) -> str:
    """A job's folder name from its overrides: ``metric=cka,target=vgg11``, stable across re-launches.

    Only the keys swept on the command line (read from the sweep's ``multirun.yaml``) name the
    folder, sorted like Hydra's ``override_dirname``; without that file, every override does.
    Characters awkward in paths (``/``, spaces, quotes...) become ``_``; names longer than 120
    characters are cut and end in a hash of the full name, so they stay unique; no overrides give
    ``defaults``.
    """
    swept = _command_line_sweeps(str(sweep_dir)) if sweep_dir else None
    items = sorted((str(o) for o in overrides), key=lambda o: o.partition("=")[0])
    if swept:
        items = [o for o in items if o.partition("=")[0].lstrip("+~") in swept]
    name = re.sub(r"[^A-Za-z0-9._,=+\-\[\]@%]", "_", ",".join(items)).strip(".")
    if not name:
        return "defaults"
    if len(name) > MAX_DIR_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_DIR_NAME - 11]}-{digest}"
    return name


_sweeps_cache: dict[tuple[str, float], frozenset[str]] = {}


def _command_line_sweeps(sweep_dir: str) -> frozenset[str] | None:
    """Keys given several values (``a=1,2``, ``range(...)``...) on the sweep's command line."""
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _sweeps_cache:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            task = OmegaConf.load(path).hydra.overrides.task
            parsed = OverridesParser.create().parse_overrides([str(o) for o in task])
        except Exception:  # an unreadable record: name folders by all overrides
            return None
        _sweeps_cache[key] = frozenset(o.key_or_group for o in parsed if o.is_sweep_override())
    return _sweeps_cache[key]


if not OmegaConf.has_resolver("idsim.job_dir"):
    OmegaConf.register_new_resolver("idsim.job_dir", job_dir_name)


def config_hash(cfg: DictConfig | Mapping) -> str:
    """SHA-256 of the resolved job config (without ``hydra``): equal hashes, equal experiments."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    c.pop("hydra", None)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_status(job_dir: Path) -> dict | None:
    """The job's ``status.json`` (None when absent or unreadable)."""
    try:
        return json.loads((Path(job_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_status(job_dir: Path, status: Mapping[str, Any]) -> Path:
    """Write ``status.json`` atomically (a reader never sees half a file)."""
    path = Path(job_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(status), indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- one job


class JobFailed(CompactHydraException):
    """A sweep job failed; one line naming it (Hydra prints it without a traceback)."""


def _slurm_ids() -> dict[str, str]:
    env = os.environ
    ids = {"slurm_job_id": env.get("SLURM_JOB_ID")}
    if env.get("SLURM_ARRAY_JOB_ID"):
        ids["slurm_array"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return {k: v for k, v in ids.items() if v}


def _submitit_log() -> str | None:
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # not a submitit job
        return None


@dataclass
class Job:
    """One Hydra job: where it writes, what it was given, and its ``status.json``."""

    out_dir: Path | None          # None outside Hydra: nothing is recorded
    overrides: list[str]
    multirun: bool
    config_hash: str
    log_file: Path | None = None
    num: int | None = None
    status: dict = field(default_factory=dict)

    @classmethod
    def current(cls, cfg: DictConfig) -> "Job":
        """The job Hydra is running now (outside Hydra: a single run in the working directory)."""
        try:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            hc = HydraConfig.get()
            out = Path(hc.runtime.output_dir)
            multirun = hc.mode == RunMode.MULTIRUN
            overrides = [str(o) for o in hc.overrides.task]
            log_file = out / f"{hc.job.name}.log"
            num = hc.job.get("num") if multirun else None
        except ValueError:  # HydraConfig not set: called from Python, no job folder to record in
            out, multirun, overrides, log_file, num = None, False, [], None, None
        return cls(out_dir=out, overrides=overrides, multirun=multirun, config_hash=config_hash(cfg), log_file=log_file,
                   num=num)

    @property
    def label(self) -> str:
        return " ".join(self.overrides) or "(no overrides)"

    def stored_result(self) -> float | None:
        """The result of an earlier run of exactly this job in this folder, or None."""
        st = read_status(self.out_dir) if self.out_dir is not None else None
        if not st or st.get("state") != "done" or st.get("config_hash") != self.config_hash:
            return None
        if not (self.out_dir / "identifiability.csv").is_file():
            return None
        st["last_skipped"] = _now()
        st["launch_id"] = os.environ.get(LAUNCH_ENV, st.get("launch_id"))  # part of this launch, as done
        write_status(self.out_dir, st)
        value = (st.get("result") or {}).get("mean_identifiability_index")
        return float("nan") if value is None else float(value)

    def start(self) -> None:
        self.status = {
            "state": "running", "overrides": self.overrides, "job_dir": str(self.out_dir), "job_num": self.num,
            "config_hash": self.config_hash, "started": _now(), "ended": None, "seconds": None,
            "host": socket.gethostname(), "pid": os.getpid(), "python": sys.executable, **_slurm_ids(),
            "launch_id": os.environ.get(LAUNCH_ENV), "log": str(self.log_file) if self.log_file else None,
            "submitit_log": _submitit_log(), "error": None,
        }
        self._t0 = time.time()
        if self.out_dir is not None:
            write_status(self.out_dir, self.status)

    def _end(self, state: str, **fields) -> None:
        self.status.update(state=state, ended=_now(), seconds=round(time.time() - getattr(self, "_t0", time.time()), 3),
                           **fields)
        if self.out_dir is not None:
            write_status(self.out_dir, self.status)

    def done(self, result: Mapping[str, Any]) -> None:
        self._end("done", result=dict(result))

    def failed(self, error: BaseException) -> None:
        """Record the failure in ``status.json`` and the job's log (with the traceback)."""
        message = " ".join(f"{type(error).__name__}: {error}".split())
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        log.error("job failed (%s): %s\n%s", self.label, message, tb.rstrip())
        self._end("failed", error=message, traceback=tb)

    def failure(self) -> JobFailed:
        """The one-line exception a failed sweep job re-raises."""
        where = f"status {self.out_dir / STATUS_FILE if self.out_dir else 'not recorded'}" + (
            f", log {self.log_file}" if self.log_file else "")
        return JobFailed(f"idsim: job {self.label} failed: {self.status.get('error')} ({where})")


def result_fields(result) -> dict[str, Any]:
    """What a finished job stores in ``status.json``: a few numbers, the verdict line."""
    ident = result.identifiability
    mean = float(ident["identifiability_index"].mean()) if len(ident) else float("nan")
    return {"mean_identifiability_index": None if math.isnan(mean) else mean,
            "n_correct": int(ident["correct"].sum()) if "correct" in ident else None,
            "n_target_layers": int(len(ident)), "verdict": getattr(result, "verdict", None)}


# --------------------------------------------------------------------------- collecting a sweep


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Every job folder (one with a ``status.json``) under the sweep folder."""
    sweep_dir = Path(sweep_dir)
    found = []
    for p in sorted(sweep_dir.rglob(STATUS_FILE)):
        rel = p.parent.relative_to(sweep_dir).parts
        if rel and (rel[0] in (SUMMARY_DIR, ".submitit") or "wandb" in rel):
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
    statuses = [read_status(d) or {} for d in dirs]
    pairs = [_override_pairs(st.get("overrides") or []) for st in statuses]
    swept = swept_keys(pairs)
    rows, scores, idents = [], [], []
    for d, st, ov in zip(dirs, statuses, pairs):
        job = str(d.relative_to(sweep_dir))
        values = {k: ov.get(k) for k in swept}
        result = st.get("result") or {}
        rows.append({"job": job, **values, "state": st.get("state", "unknown"),
                     "mean_identifiability_index": result.get("mean_identifiability_index"),
                     "n_correct": result.get("n_correct"), "n_target_layers": result.get("n_target_layers"),
                     "started": st.get("started"), "ended": st.get("ended"), "seconds": st.get("seconds"),
                     "host": st.get("host"), "slurm_job_id": st.get("slurm_array") or st.get("slurm_job_id"),
                     "error": st.get("error"), "status_file": str(d / STATUS_FILE), "log": st.get("log"),
                     "submitit_log": st.get("submitit_log"), "launch_id": st.get("launch_id")})
        if st.get("state") != "done":
            continue
        for name, bucket in (("scores.csv", scores), ("identifiability.csv", idents)):
            df = _read_csv(d / name)
            if df is not None:
                bucket.append(_with_overrides(df, values, job))
    jobs = pd.DataFrame(rows).astype({"n_correct": "Int64", "n_target_layers": "Int64"})
    return SweepSummary(sweep_dir=sweep_dir, out_dir=sweep_dir / SUMMARY_DIR, jobs=jobs,
                        scores=pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(),
                        identifiability=pd.concat(idents, ignore_index=True) if idents else pd.DataFrame(),
                        swept=swept, figures={})


def summarize(sweep_dir: Path | str, logger: str = "none", wandb_cfg: Mapping[str, Any] | None = None,
              plots: bool = True) -> SweepSummary:
    """Write ``<sweep dir>/summary/``: scores.csv, identifiability.csv, jobs.csv and figures; log them to W&B."""
    s = collect(Path(sweep_dir))
    s.out_dir.mkdir(parents=True, exist_ok=True)
    s.jobs.to_csv(s.out_dir / "jobs.csv", index=False)
    s.scores.to_csv(s.out_dir / "scores.csv", index=False)
    s.identifiability.to_csv(s.out_dir / "identifiability.csv", index=False)
    if plots:
        s.figures["identifiability_mean"] = plot_mean_index(s.jobs, s.identifiability, s.swept,
                                                            s.out_dir / "identifiability_mean.png")
        if not s.identifiability.empty:
            s.figures["identifiability_by_layer"] = plot_index_by_layer(s.identifiability, s.swept,
                                                                        s.out_dir / "identifiability_by_layer.png")
    _log_summary(s, logger, wandb_cfg)
    n_done = int((s.jobs["state"] == "done").sum())
    log.info("sweep summary: %d of %d jobs done; %s", n_done, len(s.jobs), s.out_dir)
    return s


def _log_summary(s: SweepSummary, logger: str, wandb_cfg: Mapping[str, Any] | None) -> None:
    from .tracking import make_tracker

    w = dict(wandb_cfg or {})
    w.setdefault("group", None)
    w["group"] = w["group"] or sweep_group(s.sweep_dir)
    config = {"sweep_dir": str(s.sweep_dir.resolve()), "swept": s.swept, "n_jobs": len(s.jobs)}
    tracker = make_tracker(logger, s.out_dir, config, w, name="summary", job_type="sweep-summary", in_job=False)
    failed = True
    try:
        tracker.log_table("jobs", s.jobs.astype(object).where(s.jobs.notna(), None))
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


def sweep_group(sweep_dir: Path | str) -> str:
    """The W&B group of a sweep: its folder name (``<date>_<time>`` for Hydra's default dated folders)."""
    p = Path(str(sweep_dir))
    if re.fullmatch(r"\d\d-\d\d-\d\d", p.name) and p.parent.name:
        return f"{p.parent.name}_{p.name}"
    return p.name


# --------------------------------------------------------------------------- figures

_DPI = 130


def _save_figure(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", facecolor="white")
    return path


def _levels(values: pd.Series) -> list:
    """Distinct values in a readable order: numbers ascending, text in order of appearance."""
    uniq = list(dict.fromkeys(values.tolist()))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in uniq):
        return sorted(uniq)
    return uniq


def _job_means(jobs: pd.DataFrame, ident: pd.DataFrame) -> pd.DataFrame:
    """One row per job: its swept values, state and mean identifiability index over target layers."""
    df = jobs.copy()
    if not ident.empty:
        means = ident.groupby("job")["identifiability_index"].mean()
        df["mean_index"] = df["job"].map(means)
    else:
        df["mean_index"] = float("nan")
    return df


def _cell_text(state: str, value: float) -> tuple[str, str]:
    if state != "done":
        return ("failed" if state == "failed" else state), "#b2182b"
    if value is None or not math.isfinite(value):
        return "n/a", "#777777"
    return f"{value:+.3f}", "black"


def plot_mean_index(jobs: pd.DataFrame, ident: pd.DataFrame, swept: Sequence[str], path: Path) -> Path:
    """Mean identifiability index over target layers for every job, laid out by the swept variables.

    One swept variable: bars. Two or more: a heatmap, columns the variable with the fewest values,
    rows every combination of the others; failed jobs are marked "failed", undefined indices "n/a".
    """
    from matplotlib.figure import Figure

    df = _job_means(jobs, ident)
    swept = [k for k in swept if k in df.columns]
    fig = Figure()
    if len(swept) <= 1:
        key = swept[0] if swept else "job"
        order = _levels(df[key])
        labels = [str(v) for v in order]
        vals = [df.loc[df[key] == v, "mean_index"].mean() for v in order]
        states = [df.loc[df[key] == v, "state"].iloc[0] for v in order]
        fig.set_size_inches(max(4.0, 0.8 * len(order) + 2.0), 3.8)
        ax = fig.add_subplot()
        heights = [v if math.isfinite(v) else 0.0 for v in vals]
        ax.bar(range(len(order)), heights, color=["#2166ac" if h >= 0 else "#b2182b" for h in heights])
        for xi, (h, v, st) in enumerate(zip(heights, vals, states)):
            text, color = _cell_text(st, v)
            ax.text(xi, h, text, ha="center", va="bottom" if h >= 0 else "top", fontsize=8, color=color)
        ax.axhline(0.0, color="black", linewidth=0.8)
        long = max(map(len, labels), default=0) > 8
        ax.set_xticks(range(len(order)), labels, rotation=30 if long else 0, ha="right" if long else "center")
        ax.set_xlabel(key)
        ax.set_ylabel("mean identifiability index")
    else:
        col = min(reversed(swept), key=lambda k: len(_levels(df[k])))
        rows = [k for k in swept if k != col]
        col_levels = _levels(df[col])
        row_keys = list(dict.fromkeys(tuple(r) for r in df[rows].itertuples(index=False, name=None)))
        import numpy as np

        grid = np.full((len(row_keys), len(col_levels)), np.nan)
        texts = [[("", "black")] * len(col_levels) for _ in row_keys]
        for _, r in df.iterrows():
            i = row_keys.index(tuple(r[k] for k in rows))
            j = col_levels.index(r[col])
            v = r["mean_index"]
            grid[i, j] = v if r["state"] == "done" else np.nan
            texts[i][j] = _cell_text(r["state"], v)
        finite = grid[np.isfinite(grid)]
        lim = max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-6)
        row_labels = [", ".join(f"{k}={v}" for k, v in zip(rows, key)) for key in row_keys]
        fig.set_size_inches(max(4.5, 1.3 * len(col_levels) + 0.09 * max(map(len, row_labels)) + 1.5),
                            max(2.5, 0.45 * len(row_keys) + 1.5))
        ax = fig.add_subplot()
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i, row in enumerate(texts):
            for j, (text, color) in enumerate(row):
                ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
        ax.set_xticks(range(len(col_levels)), [str(v) for v in col_levels])
        ax.set_yticks(range(len(row_keys)), row_labels)
        ax.set_xlabel(col)
        fig.colorbar(im, ax=ax, label="mean identifiability index")
    n_done = int((df["state"] == "done").sum())
    ax.set_title(f"Identifiability index, mean over target layers ({n_done} of {len(df)} jobs done)", fontsize=10)
    return _save_figure(fig, path)


def plot_index_by_layer(ident: pd.DataFrame, swept: Sequence[str], path: Path) -> Path:
    """Identifiability index per target layer: one panel per target model, one line per job."""
    from matplotlib.figure import Figure

    targets = list(dict.fromkeys(ident["target"].astype(str))) if "target" in ident else [""]
    others = [k for k in swept if k != "target" and k in ident.columns]
    fig = Figure(figsize=(6.5, 3.2 * len(targets)))
    for n, target in enumerate(targets):
        ax = fig.add_subplot(len(targets), 1, n + 1)
        part = ident[ident["target"].astype(str) == target] if target else ident
        layers = part.drop_duplicates("target_layer_index").sort_values("target_layer_index")
        for job, g in part.groupby("job", sort=False):
            g = g.sort_values("target_layer_index")
            label = ", ".join(f"{k}={g[k].iloc[0]}" for k in others) or str(job)
            ax.plot(g["target_layer_index"], g["identifiability_index"], marker="o", markersize=3, label=label)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(layers["target_layer_index"], layers["target_layer"].astype(str), rotation=45, ha="right",
                      fontsize=7)
        ax.set_ylabel("identifiability index")
        ax.set_xlabel("target layer")
        ax.set_title(f"target {target}" if target else "identifiability index by target layer", fontsize=10)
        ax.legend(fontsize=7, frameon=False, loc="best")
    return _save_figure(fig, path)


# --------------------------------------------------------------------------- the launching process


_active: dict[str, Any] = {}


class SweepCallback(Callback):
    """Hydra callback: marks the jobs of this launch, and writes the sweep summary at the end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launch_id = uuid.uuid4().hex[:12]
        os.environ[LAUNCH_ENV] = launch_id  # inherited by local, submitit and SLURM jobs
        _active.update(sweep_dir=Path(str(config.hydra.sweep.dir)), launch_id=launch_id,
                       logger=config.get("logger", "none"),
                       wandb=OmegaConf.to_container(config.wandb, resolve=True) if "wandb" in config else None)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _active:
            return
        _summarize_active()
        _active.clear()


def _summarize_active() -> SweepSummary | None:
    try:
        return summarize(_active["sweep_dir"], _active["logger"], _active["wandb"])
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
        what = r["error"] if r["state"] == "failed" else f"did not finish (state {r['state']}: killed or still running?)"
        logs = ", ".join(str(x) for x in (r["log"], r["submitit_log"]) if isinstance(x, str) and x)
        lines.append(f"  {r['job']}: {what} (status {r['status_file']}" + (f"; log {logs})" if logs else ")"))
    if bad.empty:
        lines.append("  no job recorded a failure: the launcher itself failed (see the messages above)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


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
    try:
        logger, wandb_cfg = _sweep_logging(args.sweep_dir)
        s = summarize(args.sweep_dir, args.logger or logger, wandb_cfg, plots=not args.no_plots)
    except IdsimError as e:
        print(f"idsim: error: {e}", file=sys.stderr)
        return 2
    n_done = int((s.jobs["state"] == "done").sum())
    print(f"{n_done} of {len(s.jobs)} jobs done; summary in {s.out_dir}")
    for _, r in s.failed.iterrows():
        print(f"  {r['state']}: {r['job']}: {r['error'] or ''} ({r['status_file']})")
    return 0


def _sweep_logging(sweep_dir: Path) -> tuple[str, dict | None]:
    """The logger and W&B settings the sweep was launched with (its ``multirun.yaml``)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return "none", None
    cfg = OmegaConf.load(path)
    wandb_cfg = cfg.get("wandb")
    return str(cfg.get("logger", "none")), OmegaConf.to_container(wandb_cfg) if wandb_cfg is not None else None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
