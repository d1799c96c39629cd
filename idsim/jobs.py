"""Job bookkeeping of ``python run.py`` runs and sweep jobs: folders, status files, config hashes.

* **Status files.** Every job writes ``status.json`` in its output folder: ``running`` when it
  starts, then ``done`` (with its result) or ``failed`` (with the error and its traceback, which
  also goes to the job's log). A job that raised can still read "completed successfully" in a
  submitit log; the status file cannot lie that way.
* **Skipping finished jobs.** A job whose folder already holds ``status: done`` for the same
  resolved config (SHA-256 of it) returns the stored result instead of recomputing, so
  re-launching an interrupted or partly failed sweep into the same ``hydra.sweep.dir`` only runs
  what is missing. Job folders are named by the job's overrides (:func:`job_dir_name`), so they
  stay the same across re-launches, even when values are added to the sweep.
"""
from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("idsim")

STATUS_FILE = "status.json"
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
    """Keys swept: given several values (``a=1,2``, ``range(...)``...) on the command line or in ``hydra.sweeper.params``."""
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _sweeps_cache:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            record = OmegaConf.load(path).hydra
            task = [str(o) for o in record.overrides.task]
            params = OmegaConf.select(record, "sweeper.params") or {}
            task += [f"{k}={v}" for k, v in params.items()]
            parsed = OverridesParser.create().parse_overrides(task)
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

    def failure(self) -> "JobFailed":
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


def sweep_group(sweep_dir: Path | str) -> str:
    """The W&B group of a sweep: its folder name (``<date>_<time>`` for Hydra's default dated folders)."""
    p = Path(str(sweep_dir))
    if re.fullmatch(r"\d\d-\d\d-\d\d", p.name) and p.parent.name:
        return f"{p.parent.name}_{p.name}"
    return p.name
