"""Job bookkeeping of ``python run.py`` runs and sweep jobs: folders, status files, locks, what to skip.

* **Status files.** Every job writes ``status.json`` in its output folder: ``running`` when it
  starts (with host, PID and its start time, SLURM job id), then ``done`` (with its result) or
  ``failed`` (with the error, a ``reason`` — ``error``, ``killed`` or ``timeout`` — and the
  traceback, which also goes to the job's log). A job that raised can still read "completed
  successfully" in a submitit log; the status file cannot lie that way.
* **Killed jobs.** SIGTERM and SIGINT (and the pre-timeout signal SLURM sends through submitit)
  stop a job with :class:`Killed`: it is recorded as ``failed`` (reason ``killed`` or
  ``timeout``), its scratch files are removed and its partial results kept (a result table being
  written when the signal comes is finished first: :func:`uninterrupted`). A job killed with
  SIGKILL cannot record anything: :func:`reconcile` finds a ``running`` job whose process is gone
  (same host) or whose SLURM job has ended, and records it as ``failed`` (reason ``killed``, or
  SLURM's own ``timeout``...). ``summarize`` does that for every job.
* **One job per folder.** A job holds a lock on ``<job dir>/.idsim.lock`` while it runs
  (:class:`FolderLock`, ``flock``: released by the kernel whatever kills the process), so a
  second launcher finds it held and skips the job as "running elsewhere".
* **Skipping finished jobs.** A job whose folder already holds ``status: done`` for the same
  inputs returns the stored result instead of recomputing, so re-launching an interrupted or
  partly failed sweep into the same ``hydra.sweep.dir`` only runs what is missing. The inputs
  (:func:`run_inputs`) are the resolved config (SHA-256), the probe set's identity (its
  generator parameters, or the names, sizes and modification times of its files, as the feature
  cache keys them), the contents of every checkpoint file, and idsim's version; when one of them
  changed the job runs again and its log says which. Job folders are named by the job's
  overrides (:func:`job_dir_name`), so they stay the same across re-launches, even when values
  are added to the sweep.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("idsim")

STATUS_FILE = "status.json"
LOCK_FILE = ".idsim.lock"
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


#: keys that change where or how a job runs, not its results (a re-launch with another cache folder or
#: progress bars still skips it); the device and batch size stay: they change the last bits
NOT_RESULTS = ("hydra", "cache", "logger", "plots", "analysis")
NOT_RESULTS_EXTRACTION = ("progress", "num_workers", "scratch_dir", "ram_budget_mb")


def config_hash(cfg: DictConfig | Mapping) -> str:
    """SHA-256 of the resolved job config without what does not change results: equal hashes, equal experiments."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for key in NOT_RESULTS:
        c.pop(key, None)
    if isinstance(c.get("extraction"), dict):
        c["extraction"] = {k: v for k, v in c["extraction"].items() if k not in NOT_RESULTS_EXTRACTION}
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


# --------------------------------------------------------------------------- what a job's result depends on


def _weights_files(run) -> list[str]:
    """Every checkpoint file the run's config names (run-level ``weights`` and each system's)."""
    systems = [run.target, *run.sources.values()]
    found = [getattr(x, "weights", None) for x in systems] + [run.weights]
    return sorted({str(Path(w).expanduser().resolve()) for w in found
                   if isinstance(w, str) and w not in ("random", "imagenet") and Path(w).expanduser().is_file()})


def run_inputs(cfg: DictConfig | Mapping) -> dict | None:
    """What besides the config decides a job's result: the probe set's identity, checkpoint contents, idsim's version.

    None when the config cannot be read or its probe set not opened (the run itself then says why).
    """
    from . import __version__, schema, systems
    from .cache import file_digest
    from .errors import IdsimError

    try:
        run = schema.load(cfg)
        target = systems.build(run.target, run.target.name, systems.TARGET, run)
        probe = systems.probe_set(target, run)  # a recording's stimuli, else the dataset
        own = target.identity() if getattr(run.target, "kind", "network") != "network" else {}  # a recording's files
        ident = json.dumps({"n_images": len(probe), **probe.identity(), "target": own}, sort_keys=True, default=str)
        return {"idsim": __version__, "probe_set": hashlib.sha256(ident.encode()).hexdigest(),
                "checkpoints": {w: file_digest(w) for w in _weights_files(run)}}
    except (IdsimError, OSError, ValueError) as e:
        log.debug("the inputs of this job cannot be read (%s): it runs", e)
        return None


def input_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """What changed between the inputs an earlier run recorded and this run's, in words."""
    if new is None:
        return ["its inputs cannot be read now"]
    if not old:
        return ["the earlier run did not record its inputs"]
    out = []
    if old.get("idsim") != new.get("idsim"):
        out.append(f"idsim's version changed ({old.get('idsim')} -> {new.get('idsim')})")
    if old.get("probe_set") != new.get("probe_set"):
        out.append("the probe set changed (images added, removed or modified)")
    a, b = old.get("checkpoints") or {}, new.get("checkpoints") or {}
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            out.append(f"checkpoint {path} " + ("changed" if path in a and path in b else "is new" if path in b
                                                 else "is no longer used"))
    return out


# --------------------------------------------------------------------------- one job per folder: a lock


class FolderLock:
    """An exclusive ``flock`` on ``<folder>/.idsim.lock``, held while a job runs in the folder.

    The kernel releases it when the process ends, however it ends (SIGKILL, out of memory), so a
    lock that cannot be taken means a live job. The file holds who took it (host, PID), for messages.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False if another process holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            log.warning("cannot lock %s (%s): a second launcher could run this job at the same time", self.path, e)
            return True
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": _now(),
                                 **_slurm_ids()}).encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """Who holds the lock, as recorded in the file (``host pid N``)."""
        try:
            h = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "another process"
        slurm = f", SLURM job {h['slurm_job_id']}" if h.get("slurm_job_id") else ""
        return f"host {h.get('host')}, pid {h.get('pid')}{slurm}, since {h.get('since')}"

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


# --------------------------------------------------------------------------- killed jobs


class Killed(BaseException):
    """A job stopped by a signal (a BaseException, as KeyboardInterrupt: nothing on the way may swallow it)."""

    def __init__(self, signum: int, reason: str):
        self.signum, self.reason = int(signum), reason
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}" + (" (the SLURM time limit is near)" if reason == "timeout" else ""))


def _timeout_signal() -> int | None:
    """The signal submitit's SLURM jobs get before their time limit (``--signal=USR2@...``), inside such a job."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper(), None)


@contextlib.contextmanager
def stop_on_signals():
    """While the block runs, SIGTERM and SIGINT (and SLURM's pre-timeout signal) raise :class:`Killed`.

    Only the first signal raises: the job's cleanup (status file, scratch files) is not interrupted
    by a second one. Outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reasons = {signal.SIGTERM: "killed", signal.SIGINT: "killed"}
    usr = _timeout_signal()
    if usr is not None:
        reasons[usr] = "timeout"
    fired: list[int] = []
    _HELD.update(depth=0, pending=None)

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        if _HELD["depth"]:  # a result file is being written: :func:`uninterrupted` raises once it is complete
            _HELD["pending"] = Killed(signum, reasons[signum])
            return
        raise Killed(signum, reasons[signum])

    previous = {s: signal.signal(s, handler) for s in reasons}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _HELD.update(depth=0, pending=None)


_HELD: dict[str, Any] = {"depth": 0, "pending": None}  # main thread only: where signal handlers run


@contextlib.contextmanager
def uninterrupted():
    """A block that a stopping signal does not cut short: under :func:`stop_on_signals`, a SIGTERM, SIGINT or
    SLURM's pre-timeout signal that arrives inside it raises :class:`Killed` only once the block is done (a
    result file is never left half written). Elsewhere, and outside the main thread, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _HELD["depth"] += 1
    try:
        yield
    finally:
        _HELD["depth"] -= 1
        if not _HELD["depth"] and _HELD["pending"] is not None:
            stop, _HELD["pending"] = _HELD["pending"], None
            raise stop


def liveness(status: Mapping[str, Any]) -> tuple[bool | None, str, str | None]:
    """(alive, why, SLURM state) of the process a ``running`` status names; alive is None when it cannot be told."""
    from . import procs

    host, pid = status.get("host"), status.get("pid")
    alive = procs.process_alive(host, pid, status.get("pid_start"))
    if alive is not None:
        return alive, f"process {pid} on {host} {'runs' if alive else 'is gone'}", None
    job_id = status.get("slurm_job_id")
    state = procs.slurm_state(job_id)
    if state is not None:
        return state in procs.SLURM_ACTIVE, f"SLURM job {job_id} is {state.lower()}", state
    return None, f"process {pid} runs on {host}, not here", None


_SLURM_REASONS = {"TIMEOUT": "timeout", "DEADLINE": "timeout", "OUT_OF_MEMORY": "out_of_memory",
                  "NODE_FAIL": "node_fail", "PREEMPTED": "preempted"}


def reconcile(job_dir: Path, status: dict | None = None) -> dict | None:
    """The job's status, with a ``running`` job whose process is gone recorded as ``failed`` (reason ``killed``...)."""
    status = read_status(job_dir) if status is None else status
    if not status or status.get("state") != "running":
        return status
    alive, why, slurm = liveness(status)
    if alive is not False:
        return status
    status = {**status, "state": "failed", "reason": _SLURM_REASONS.get(slurm or "", "killed"),
              "error": f"killed while running: {why} (SIGKILL, out of memory or a lost node); noticed {_now()}"}
    write_status(job_dir, status)
    return status


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


def log_to_files(message: str, level: int = logging.ERROR) -> bool:
    """Write ``message`` to the log files only (the job's ``run.log``), not the console; False if there are none."""
    handlers = []
    for lg in (log, logging.getLogger()):
        handlers += [h for h in lg.handlers if isinstance(h, logging.FileHandler) and h not in handlers]
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    for h in handlers:
        if record.levelno >= h.level:
            h.handle(record)
    return bool(handlers)


def log_to_console(message: str, level: int = logging.ERROR) -> None:
    """Write ``message`` to the console log handlers only."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), None)
    for lg in (log, logging.getLogger()):
        for h in lg.handlers:
            if not isinstance(h, logging.FileHandler) and record.levelno >= h.level:
                h.handle(record)


@dataclass
class Job:
    """One Hydra job: where it writes, what it was given, its ``status.json`` and its folder lock."""

    out_dir: Path | None          # None outside Hydra: nothing is recorded
    overrides: list[str]
    multirun: bool
    config_hash: str
    log_file: Path | None = None
    num: int | None = None
    status: dict = field(default_factory=dict)
    inputs: dict | None = None
    holder: str | None = None     # who holds the folder's lock, when this job could not take it

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

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock for the block; yields False (and holds nothing) if a live job holds it."""
        if self.out_dir is None:
            yield True
            return
        lock = FolderLock(self.out_dir)
        if not lock.acquire():
            self.holder = lock.holder()
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def stored_result(self, inputs: dict | None = None) -> tuple[float | None, str | None]:
        """(the result of an earlier run of exactly this job in this folder, or None; why it cannot be reused).

        The reason is None when there was no finished run to reuse; otherwise it names what
        changed: the config, the probe set, a checkpoint, idsim's version, or missing results.
        """
        st = read_status(self.out_dir) if self.out_dir is not None else None
        if not st or st.get("state") != "done":
            return None, None
        changes = [] if st.get("config_hash") == self.config_hash else ["the config changed"]
        changes += input_changes(st.get("inputs"), inputs)
        if not (self.out_dir / "identifiability.csv").is_file():
            changes.append("its results are missing")
        if changes:
            return None, "; ".join(changes)
        st["last_skipped"] = _now()
        st["launch_id"] = os.environ.get(LAUNCH_ENV, st.get("launch_id"))  # part of this launch, as done
        write_status(self.out_dir, st)
        value = (st.get("result") or {}).get("mean_identifiability_index")
        return (float("nan") if value is None else float(value)), None

    def start(self, inputs: dict | None = None) -> None:
        """Record ``running``; an earlier run's results in the folder move to ``previous/<time>/`` first."""
        from . import procs
        from .outputs import archive_previous

        self.inputs = inputs
        if self.out_dir is not None:
            earlier = reconcile(self.out_dir)
            if earlier and earlier.get("state") == "running":  # we hold the lock: its owner is gone
                earlier = {**earlier, "state": "failed", "reason": "killed",
                           "error": "killed while running (its folder lock was free when the next run started)"}
            moved = archive_previous(self.out_dir, earlier)
            if moved is not None:
                log.info("the results of an earlier run in this folder were moved to %s", moved)
        self.status = {
            "state": "running", "overrides": self.overrides, "job_dir": str(self.out_dir), "job_num": self.num,
            "config_hash": self.config_hash, "inputs": inputs, "started": _now(), "ended": None, "seconds": None,
            "host": socket.gethostname(), "pid": os.getpid(), "pid_start": procs.process_start(os.getpid()),
            "python": sys.executable, **_slurm_ids(), "launch_id": os.environ.get(LAUNCH_ENV),
            "log": str(self.log_file) if self.log_file else None, "submitit_log": _submitit_log(), "error": None,
            "reason": None,
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
        """Record the failure in ``status.json`` (reason ``error``, ``killed`` or ``timeout``) and the traceback in the log.

        The traceback goes to the job's log file only; the console gets one line (from the caller).
        """
        message = " ".join(f"{type(error).__name__}: {error}".split())
        reason = error.reason if isinstance(error, Killed) else "killed" if isinstance(error, KeyboardInterrupt) \
            else "error"
        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        full = f"job failed ({self.label}; {reason}): {message}\n{tb.rstrip()}"
        if not log_to_files(full):
            log.error("%s", full)
        self._end("failed", error=message, reason=reason, traceback=tb)

    def where(self) -> str:
        """Where the job's record and full log are, for one-line messages."""
        return f"status {self.out_dir / STATUS_FILE if self.out_dir else 'not recorded'}" + (
            f", log {self.log_file}" if self.log_file else "")

    def failure(self) -> "JobFailed":
        """The one-line exception a failed sweep job re-raises."""
        return JobFailed(f"idsim: job {self.label} failed: {self.status.get('error')} ({self.where()})")


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
