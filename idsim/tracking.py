"""Experiment tracking: W&B (offline by default, no account needed) or nothing.

The W&B run lives inside the run's output folder (``<run dir>/wandb/``); ``wandb sync`` on that
folder uploads it later. It is kept by a child process (``python -m idsim.tracking``,
:class:`WandbProcess`): importing wandb and starting a run is ~0.85 s of interpreter work, which
in the job's own process took turns with the job's start (importing torch) for the one
interpreter, and runs beside it in a process of its own. Every run is finished, even when the
experiment fails (the child finishes it as failed when the job's process goes away), so runs of a
multirun never merge. In a sweep, each job is its own run, named by the job's swept overrides
(its folder name, e.g. ``metric=cka,target=vgg11``) and grouped by the sweep (``wandb.group``, else the sweep
folder's name); the sweep summary joins the same group (see :mod:`idsim.sweep`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .errors import IdsimError

log = logging.getLogger(__name__)
LOGGERS = ("wandb", "none")
WANDB_MODES = ("offline", "online", "disabled")


class NullTracker:
    """Logs nothing."""

    run_dir: Path | None = None

    def log_table(self, key: str, df: pd.DataFrame) -> None: ...

    def log_images(self, images: Mapping[str, Path]) -> None: ...

    def summary(self, values: Mapping[str, Any]) -> None: ...

    def finish(self, failed: bool = False) -> None: ...


class WandbTracker(NullTracker):
    def __init__(self, out_dir: Path, config: dict, mode: str = "offline", project: str = "idsim", entity: str | None = None,
                 group: str | None = None, tags=(), name: str | None = None, job_type: str = "identify"):
        if mode not in WANDB_MODES:
            raise IdsimError(f"wandb.mode={mode!r}; valid: {', '.join(WANDB_MODES)}")
        import wandb

        self._wandb = wandb
        out_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            self.run = wandb.init(project=project, entity=entity, group=group, tags=list(tags or []), name=name,
                                  job_type=job_type, dir=str(out_dir), config=config, mode=mode, reinit="finish_previous",
                                  settings=wandb.Settings(quiet=True, console="off", x_disable_stats=True))
        except Exception as e:  # online without credentials, ...
            hint = " (offline mode needs no account: logger.mode=offline)" if mode == "online" else ""
            raise IdsimError(f"could not start a W&B run in {mode} mode: {str(e).splitlines()[0][:200]}{hint};"
                             f" or turn logging off with logger=none") from e
        self.run_dir = Path(self.run.dir).parent if getattr(self.run, "dir", None) else None

    def log_table(self, key: str, df: pd.DataFrame) -> None:
        # missing values (pandas' NA in nullable columns, NaN) as None: W&B serialises tables as JSON
        df = df.reset_index(drop=True).astype(object)
        self.run.log({key: self._wandb.Table(dataframe=df.where(df.notna(), None))})

    def log_images(self, images: Mapping[str, Path]) -> None:
        self.run.log({k: self._wandb.Image(str(p)) for k, p in images.items()})

    def summary(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            self.run.summary[k] = v

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class WandbProcess(NullTracker):
    """A :class:`WandbTracker` in a child process; each call waits for the child's answer (on the writer's
    background thread), and an error there is an :class:`IdsimError` here, with the child's words."""

    def __init__(self, out_dir: Path, config: dict, **options):
        import subprocess
        import sys

        env = dict(os.environ)
        env.setdefault("WANDB_SILENT", "true")
        here = str(Path(__file__).resolve().parent.parent)  # this idsim, installed or not
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen([sys.executable, "-m", "idsim.tracking"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, env=env)
        try:
            run_dir = self._call("start", Path(out_dir), config, options)
        except BaseException:
            self._close()
            raise
        self.run_dir = None if run_dir is None else Path(run_dir)

    def _call(self, method: str, *args):
        import pickle

        try:
            pickle.dump((method, args), self._proc.stdin)
            self._proc.stdin.flush()
            ok, value = pickle.load(self._proc.stdout)
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            raise IdsimError(f"the W&B process ended (exit code {self._proc.poll()}; its messages are above); or turn"
                             f" logging off with logger=none") from e
        if not ok:
            raise IdsimError(value)
        return value

    def log_table(self, key: str, df: pd.DataFrame) -> None:
        self._call("log_table", key, df)

    def log_images(self, images: Mapping[str, Path]) -> None:
        self._call("log_images", dict(images))

    def summary(self, values: Mapping[str, Any]) -> None:
        self._call("summary", dict(values))

    def finish(self, failed: bool = False) -> None:
        finished = False
        try:
            self._call("finish", failed)
            finished = True
        except IdsimError as e:
            if not failed:
                raise
            log.warning("W&B: %s", e)  # the job's own error is the one to report
        finally:
            self._close(wait=not finished)

    def _close(self, wait: bool = True) -> None:
        """Close the child's input (it finishes an unfinished run as failed and exits); ``wait=False`` once its
        run is finished: what is left is its interpreter's exit (~0.17 s), which need not hold up the job."""
        import subprocess
        import threading

        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if not wait:
            threading.Thread(target=self._proc.wait, name="idsim-wandb-exit", daemon=True).start()  # reaps it
            return
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _serve() -> None:
    """The child of :class:`WandbProcess`: (method, args) pickled on stdin, (ok, value) pickled back."""
    import pickle
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job's stop reaches its own process, which finishes this run
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (or, when it is killed, the end of its input below)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever prints goes to stderr, not into the answers
    tracker = None
    while True:
        try:
            method, args = pickle.load(sys.stdin.buffer)
        except (EOFError, OSError, pickle.UnpicklingError):
            if tracker is not None:
                tracker.finish(failed=True)
            return
        try:
            if method == "start":
                out_dir, config, options = args
                tracker = WandbTracker(out_dir, config, **options)
                value = None if tracker.run_dir is None else str(tracker.run_dir)
            else:
                value = getattr(tracker, method)(*args)
            answer = (True, value)
        except IdsimError as e:
            answer = (False, str(e))
        except Exception as e:  # noqa: BLE001 - W&B's own errors, in one line
            answer = (False, f"W&B: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
        pickle.dump(answer, answers)
        answers.flush()
        if method == "finish" or (method == "start" and not answer[0]):
            return


def sweep_identity() -> tuple[str, str] | None:
    """(group, name) of the sweep job Hydra is running now: the sweep folder's name and the job's overrides."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode != RunMode.MULTIRUN:
            return None
        from .jobs import sweep_group

        # the job's folder name: its swept overrides, e.g. metric=cka,target=vgg11
        return sweep_group(hc.sweep.dir), Path(hc.runtime.output_dir).name
    except Exception:  # not inside a Hydra job
        return None


def check_credentials(logger: Mapping[str, Any] | Any) -> None:
    """``logger.mode=online`` needs a W&B account: say so at once (the tracker itself starts in the background)."""
    w = dict(logger) if isinstance(logger, Mapping) else dict(vars(logger)) if logger is not None else {}
    if w.get("kind") != "wandb" or w.get("mode", "offline") != "online" or os.environ.get("WANDB_API_KEY"):
        return
    import netrc

    try:
        hosts = netrc.netrc(os.path.expanduser("~/.netrc")).hosts
    except (OSError, netrc.NetrcParseError):
        hosts = {}
    if not any("wandb" in h for h in hosts):
        raise IdsimError("logger.mode=online needs a W&B account on this machine (wandb login, or WANDB_API_KEY); or log"
                         " offline (logger.mode=offline, the default) and upload later with wandb sync")


def make_tracker(logger: Mapping[str, Any] | Any, out_dir: Path, config: dict, name: str | None = None,
                 job_type: str = "identify", in_job: bool = True) -> NullTracker:
    """The tracker for one run from its ``logger`` config (``kind``: ``none`` or ``wandb`` with its options).

    ``logger=none`` (or ``logger.mode=disabled``) logs nothing; ``wandb`` starts a W&B run in
    ``out_dir``. Inside a sweep job (``in_job``), the run is named by the job's overrides and
    grouped by the sweep unless ``logger.group`` says otherwise.
    """
    w = dict(logger) if isinstance(logger, Mapping) else dict(vars(logger)) if logger is not None else {}
    kind = w.get("kind", "none")
    if kind == "none" or w.get("mode", "offline") == "disabled":
        return NullTracker()
    if kind != "wandb":
        raise IdsimError(f"logger={kind!r}; valid: {', '.join(LOGGERS)}")
    group = w.get("group")
    ident = sweep_identity() if in_job else None
    if ident is not None:
        group, name = group or ident[0], ident[1]
    return WandbProcess(out_dir, config, mode=w.get("mode", "offline"), project=w.get("project", "idsim"),
                        entity=w.get("entity"), group=group, tags=list(w.get("tags") or ()), name=name,
                        job_type=job_type)


if __name__ == "__main__":
    _serve()
