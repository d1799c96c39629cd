"""Faults a real cluster throws at a run, and what idsim does about each (README "Errors" and "Sweeps").

- killed runs: SIGTERM is recorded as ``failed``/``killed`` with scratch files removed and partial
  results kept; SIGKILL is recognised later (``summarize``) and its scratch folder swept;
- re-launched sweeps: a job runs again when its images change, and is skipped while another
  process holds its folder's lock;
- a reused run folder: the earlier run's results move to ``previous/<time>/``;
- errors before any work: every late error of the past now stops the run before a forward pass;
- ImageNet weights with no network: from the local cache without retries, or one line at once.

Kill tests run ``run.py`` in real processes (started together); the rest run it in this process.
The tests that run whole jobs (kills, re-launches) are marked slow.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from idsim import jobs, procs

ROOT = Path(__file__).resolve().parents[1]
BASE = ["logger=none", "plots=false", "extraction.progress=false", "extraction.batch_size=6", "dataset.n_images=6"]
TINY = [*BASE, "target=resnet18", "sources=[resnet18]", "target.layers=[layer1,layer2]",
        "sources.resnet18.layers=[layer1,layer2]"]


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


# --------------------------------------------------------------------------- run.py in this process


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [x for x in self.stderr.splitlines() if x.startswith("idsim: error:")]


@pytest.fixture(scope="module")
def run_py():
    spec = importlib.util.spec_from_file_location("idsim_run_py_faults", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main.__wrapped__.__module__ = "__main__"  # Hydra finds conf/ next to a task function of __main__
    return mod


@pytest.fixture
def cli(run_py, monkeypatch):
    """``cli(*args)``: ``python run.py *args`` in this process (give hydra.run.dir or hydra.sweep.dir)."""
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def call(*args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        hydra_cfg = HydraConfig.instance().cfg
        code = 0
        monkeypatch.setattr(sys, "argv", ["run.py", *args])
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                run_py.launch(run_py.main)
        except SystemExit as e:
            code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
        finally:
            for h in root.handlers:
                if h not in handlers:
                    h.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            HydraConfig.instance().cfg = hydra_cfg
            os.environ.pop(jobs.LAUNCH_ENV, None)
        return Result(code, out.getvalue(), err.getvalue())

    return call


# --------------------------------------------------------------------------- killed runs (real processes)


KILL_RUN = ["target=alexnet", "sources=[alexnet,vgg11]", "target.layers=[features.1,features.4]",
            "sources.alexnet.layers=[features.1]", "dataset.n_images=24", "extraction.batch_size=2",
            "extraction.ram_budget_mb=0.001", "cache.enabled=false", "logger=none", "plots=false",
            "extraction.progress=false"]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A single run stopped with SIGTERM and a sweep job killed with SIGKILL, each once its first source is scored."""
    tmp = tmp_path_factory.mktemp("killed")
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "WANDB_MODE": "disabled"}
    runs = {
        "term": (signal.SIGTERM, [*KILL_RUN, f"extraction.scratch_dir={tmp / 'scratch-term'}",
                                  f"hydra.run.dir={tmp / 'term'}"], tmp / "term"),
        "kill": (signal.SIGKILL, ["-m", "seed=0", *KILL_RUN, f"extraction.scratch_dir={tmp / 'scratch-kill'}",
                                  f"hydra.sweep.dir={tmp / 'sweep'}"], tmp / "sweep"),
    }
    procs_ = {k: subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for k, (_, args, _) in runs.items()}
    out, signalled = {}, {}
    try:
        deadline = time.time() + 400
        while len(signalled) < len(runs) and time.time() < deadline:
            for k, (sig, _, folder) in runs.items():
                if k not in signalled and (any(folder.glob("scores.csv")) or any(folder.glob("*/scores.csv"))
                                           or procs_[k].poll() is not None):
                    signalled[k] = sorted(p.name for p in (tmp / f"scratch-{k}").glob("idsim-scratch-*"))
                    procs_[k].send_signal(sig)  # at once: the second source is still being extracted
            time.sleep(0.1)
        for k, (_, _, folder) in runs.items():
            stdout, stderr = procs_[k].communicate(timeout=120)
            if k == "kill":  # the sweep's one job folder (named by its overrides)
                folder = next(p.parent for p in folder.glob("*/status.json") if p.parent.name != "summary")
            out[k] = (Result(procs_[k].returncode, stdout, stderr), folder, tmp / f"scratch-{k}", signalled.get(k))
    finally:
        for p in procs_.values():
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert set(signalled) == set(runs), "runs did not reach their first source in time"
    return tmp, out


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_removes_scratch_and_keeps_partial_results(killed):
    _, out = killed
    r, folder, scratch, before = out["term"]
    assert r.returncode == 128 + signal.SIGTERM, r.stderr[-3000:]
    assert before, "the run had a scratch folder while it ran"
    assert [x for x in r.stderr.splitlines() if x.strip()] == r.error_lines()  # one line on stderr, nothing else
    line = r.error_lines()[0]
    assert "stopped by SIGTERM" in line and "failed (killed)" in line and str(folder / "run.log") in line
    assert "Traceback" not in r.stdout + r.stderr
    st = _status(folder)
    assert (st["state"], st["reason"]) == ("failed", "killed") and "SIGTERM" in st["error"]
    assert "Traceback" in (folder / "run.log").read_text()  # the traceback is in the log only
    scores = pd.read_csv(folder / "scores.csv")  # partial results stay
    assert set(scores["source"]) == {"alexnet"} and len(scores) == 2
    assert not list(scratch.glob("idsim-scratch-*"))  # its scratch folder is gone


@pytest.mark.slow
def test_sigkill_is_recognised_later_and_its_scratch_swept(killed, capsys):
    from idsim.sweep import main as sweep_main

    tmp, out = killed
    r, folder, scratch, before = out["kill"]
    assert r.returncode == -signal.SIGKILL
    st = _status(folder)
    assert st["state"] == "running" and st["pid"] and st["host"] and st["pid_start"]  # nobody could record it
    assert [p.name for p in scratch.glob("idsim-scratch-*")] == before  # left behind ...

    assert sweep_main(["summarize", str(tmp / "sweep"), "--no-plots", "--logger", "none"]) == 0
    printed = capsys.readouterr().out
    assert "0 of 1 jobs done" in printed and f"failed: {folder.name}" in printed and "is gone" in printed
    st = _status(folder)
    assert (st["state"], st["reason"]) == ("failed", "killed") and f"process {st['pid']}" in st["error"]
    jobs_csv = pd.read_csv(tmp / "sweep" / "summary" / "jobs.csv")
    assert list(jobs_csv["state"]) == ["failed"] and list(jobs_csv["reason"]) == ["killed"]

    procs.run_folder(scratch)  # the next run on this host ...
    assert [p.name for p in scratch.glob("idsim-scratch-*")] == [procs.run_folder(scratch).name]  # ... sweeps it
    assert jobs.FolderLock(folder).acquire()  # the kernel released the dead job's lock


@pytest.mark.slow
def test_a_killed_jobs_wandb_run_is_finished_as_failed(tmp_path):
    """The W&B run lives in a child process (idsim.tracking), which finishes it as failed when the job's process
    is SIGKILLed (the end of its input), so a killed job leaves no unfinished run to merge with the next."""
    from test_sweep import _wandb_run

    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    folder = tmp_path / "run"
    args = [a for a in KILL_RUN if not a.startswith("logger=")] + ["logger=wandb", f"hydra.run.dir={folder}"]
    proc = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (folder / "scores.csv").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the job ended before its first source was scored"
        proc.kill()
        proc.wait()
        deadline, code = time.time() + 120, None  # the child sees the end of its input and finishes the run
        while code is None and time.time() < deadline:
            time.sleep(0.5)
            try:
                code = _wandb_run(folder)[1]
            except Exception:  # noqa: BLE001 - the run file is still being written
                code = None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1


def test_a_stopping_signal_waits_until_a_result_table_is_written(tmp_path, monkeypatch):
    """SIGTERM that arrives while scores.csv is being written (the slow test above sends it as soon as the file
    exists) must not leave the file empty or cut: the table is written whole, then the run stops."""
    from idsim.outputs import write_table

    first = pd.DataFrame({"source": ["alexnet"] * 500, "score": np.linspace(0, 1, 500)})
    second = pd.DataFrame({"source": ["vgg11"] * 500, "score": np.linspace(1, 2, 500)})
    to_csv = pd.DataFrame.to_csv

    def signalled(self, *args, **kwargs):  # the signal arrives in the middle of the write
        os.kill(os.getpid(), signal.SIGTERM)
        return to_csv(self, *args, **kwargs)

    path = tmp_path / "scores.csv"
    monkeypatch.setattr(pd.DataFrame, "to_csv", signalled)
    for frame, append in ((first, False), (second, True)):
        with pytest.raises(jobs.Killed, match="SIGTERM"):
            with jobs.stop_on_signals():
                write_table(path, frame, append=append)
                raise AssertionError("the run went on after the table was written")
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_csv(path), pd.concat([first, second], ignore_index=True))
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]  # no temporary file left
    with jobs.stop_on_signals():  # nothing held over: the next block runs as usual
        write_table(path, first)
    pd.testing.assert_frame_equal(pd.read_csv(path), first)


def test_liveness_of_recorded_processes(tmp_path):
    me = {"state": "running", "host": procs.hostname(), "pid": os.getpid(), "pid_start": procs.process_start(os.getpid())}
    assert jobs.liveness(me)[0] is True
    assert jobs.reconcile(tmp_path, dict(me))["state"] == "running"
    reused = {**me, "pid_start": "1"}  # same PID, another process
    assert jobs.liveness(reused)[0] is False
    elsewhere = {**me, "host": "another-host"}
    assert jobs.liveness(elsewhere)[0] is None  # cannot tell: left as it is
    assert jobs.reconcile(tmp_path, dict(elsewhere))["state"] == "running"
    st = jobs.reconcile(tmp_path, dict(reused))
    assert (st["state"], st["reason"]) == ("failed", "killed") and _status(tmp_path)["state"] == "failed"


def test_a_running_slurm_job_is_dead_once_squeue_says_it_ended(tmp_path, monkeypatch):
    st = {"state": "running", "host": "node17", "pid": 4242, "slurm_job_id": "77"}
    states = {"77": "RUNNING"}
    monkeypatch.setattr(procs, "slurm_state", lambda job_id, timeout=10: states.get(job_id))
    assert jobs.reconcile(tmp_path, dict(st))["state"] == "running"
    states["77"] = "TIMEOUT"
    after = jobs.reconcile(tmp_path, dict(st))
    assert (after["state"], after["reason"]) == ("failed", "timeout") and "SLURM job 77 is timeout" in after["error"]
    states["77"] = "ENDED"  # squeue has forgotten it
    assert jobs.reconcile(tmp_path, dict(st))["reason"] == "killed"


# --------------------------------------------------------------------------- re-launched sweeps, reused folders


def _images(folder: Path, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.slow
def test_relaunch_reruns_jobs_whose_images_changed_and_skips_jobs_running_elsewhere(cli, tmp_path):
    images, sweep = tmp_path / "images", tmp_path / "sweep"
    _images(images)
    args = ["-m", "seed=0,1", *TINY, "dataset=folder", f"dataset.root={images}", f"hydra.sweep.dir={sweep}"]
    first = cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    a, b = sweep / "seed=0", sweep / "seed=1"
    done = {j: _status(j) for j in (a, b)}
    assert all(st["state"] == "done" and st["inputs"]["probe_set"] for st in done.values())

    time.sleep(1.1)  # status times have one-second resolution
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(images / "2.png")  # the images change ...
    lock = jobs.FolderLock(b)
    assert lock.acquire()  # ... and seed=1 is "running" in another launcher
    try:
        second = cli(*args)
    finally:
        lock.release()
    assert second.returncode == 0, second.stderr[-3000:]
    assert _status(a)["started"] > done[a]["started"] and _status(a)["state"] == "done"
    assert "running again: the probe set changed" in (a / "run.log").read_text()
    assert _status(b) == done[b]  # untouched
    assert "skipped: running elsewhere" in (b / "run.log").read_text()
    assert "running again" not in (b / "run.log").read_text()

    # (a re-launch with nothing changed skips done jobs: tests/test_sweep.py)


def test_stored_result_names_what_changed(tmp_path):
    job = jobs.Job(out_dir=tmp_path, overrides=["seed=1"], multirun=True, config_hash="a" * 64)
    inputs = {"idsim": "0.2.0", "probe_set": "p" * 64, "checkpoints": {"/w.pt": "c" * 64}}
    jobs.write_status(tmp_path, {"state": "done", "config_hash": "a" * 64, "inputs": inputs,
                                 "result": {"mean_identifiability_index": 0.5}})
    (tmp_path / "identifiability.csv").write_text("x\n1\n")
    assert job.stored_result(inputs) == (0.5, None)
    for change, words in [({"idsim": "0.3.0"}, "idsim's version changed (0.2.0 -> 0.3.0)"),
                          ({"probe_set": "q" * 64}, "the probe set changed"),
                          ({"checkpoints": {"/w.pt": "d" * 64}}, "checkpoint /w.pt changed")]:
        value, why = job.stored_result({**inputs, **change})
        assert value is None and words in why
    assert "the config changed" in jobs.Job(out_dir=tmp_path, overrides=[], multirun=True,
                                            config_hash="b" * 64).stored_result(inputs)[1]


def test_a_reused_run_folder_moves_the_earlier_results_to_previous(cli, tmp_path):
    run_dir = tmp_path / "run"
    ok = cli(*TINY, f"hydra.run.dir={run_dir}")
    assert ok.returncode == 0, ok.stderr[-3000:]
    earlier = {p.name for p in run_dir.iterdir()}
    assert {"scores.csv", "identifiability.csv", "best_scores.csv", "config.yaml"} <= earlier
    bad = cli(*BASE, "target=alexnet", "sources=[alexnet]", "metric=cka_debiased", "dataset.n_images=3",
              f"hydra.run.dir={run_dir}")  # another target, failing
    assert bad.returncode == 2
    left = {p.name for p in run_dir.iterdir()}
    assert not left & {"scores.csv", "identifiability.csv", "best_scores.csv", "target_units.csv", "config.yaml"}
    assert _status(run_dir)["state"] == "failed"
    (previous,) = (run_dir / "previous").iterdir()
    assert {"scores.csv", "identifiability.csv", "best_scores.csv", "status.json"} <= {p.name for p in previous.iterdir()}
    assert _status(previous)["state"] == "done"


def test_a_run_folder_in_use_is_refused(cli, tmp_path):
    run_dir = tmp_path / "busy"
    lock = jobs.FolderLock(run_dir)
    assert lock.acquire()
    try:
        r = cli(*TINY, f"hydra.run.dir={run_dir}")
    finally:
        lock.release()
    assert r.returncode == 2 and len(r.error_lines()) == 1 and "is in use by a run that is still going" in r.stderr
    assert not (run_dir / "status.json").exists()


# --------------------------------------------------------------------------- errors before any work


@pytest.fixture
def no_forward_pass(monkeypatch):
    """Any extraction fails the test: the error must come before the first forward pass."""
    import idsim.features

    def forbidden(*a, **k):
        raise AssertionError("a forward pass ran before the error")

    monkeypatch.setattr(idsim.features, "extract", forbidden)


@pytest.fixture(scope="module")
def resnet18_checkpoint(tmp_path_factory):
    import torch
    import torchvision

    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pt"
    with torch.device("meta"):
        net = torchvision.models.resnet18()
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in net.state_dict().items()}, path)
    return path


@pytest.mark.parametrize("case", ["source-checkpoint", "cv", "cka-debiased", "timm-imagenet-offline"])
def test_late_errors_now_come_before_any_forward_pass(cli, tmp_path, no_forward_pass, resnet18_checkpoint, monkeypatch,
                                                      case):
    args, expected = {
        "source-checkpoint": (["target=resnet18", "sources=[resnet18,vgg11]",
                               f"sources.vgg11.weights={resnet18_checkpoint}"], ["does not match vgg11", "missing keys"]),
        "cv": (["metric=regression", "metric.cv=20", "dataset.n_images=12"], ["metric.cv=20", "more folds"]),
        "cka-debiased": (["metric=cka_debiased", "dataset.n_images=3"], ["at least 4"]),
        "timm-imagenet-offline": (["target=resnet10t", "sources=[alexnet]", "weights=imagenet"],
                                  ["ImageNet weights for resnet10t", "Hugging Face cache"]),
    }[case]
    if case == "timm-imagenet-offline":
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    r = cli(*(TINY if case in ("cv", "cka-debiased") else BASE), *args, f"hydra.run.dir={run_dir}")
    took = time.perf_counter() - t0
    assert r.returncode == 2, r.stderr[-3000:]
    (line,) = r.error_lines()
    assert all(s in line for s in expected), line
    assert f"(full log: {run_dir / 'run.log'})" in line
    assert "Traceback" not in r.stdout + r.stderr and "Traceback" in (run_dir / "run.log").read_text()
    assert not (run_dir / "target_units.csv").exists()
    if case == "timm-imagenet-offline":
        assert took < 10, f"{took:.1f} s to say there are no weights"


def test_timm_imagenet_weights_load_from_the_local_cache_without_network(tmp_path, monkeypatch):
    """Cached weights load with the hub offline: no HEAD requests, no minute of retries."""
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    from idsim.models import build_model

    cfg = timm.models.get_pretrained_cfg("resnet10t")
    snap = tmp_path / f"models--{cfg.hf_hub_id.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    state = {k: v.contiguous() for k, v in timm.create_model("resnet10t").state_dict().items()}
    state["fc.bias"].fill_(0.25)
    save_file(state, snap / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    t0 = time.perf_counter()
    model = build_model("resnet10t", weights="imagenet")
    assert time.perf_counter() - t0 < 10
    assert float(model.module.fc.bias[0]) == 0.25 and constants.HF_HUB_OFFLINE is False


def test_the_cache_never_stores_an_entry_without_arrays(tmp_path):
    from idsim.cache import FeatureCache
    from idsim.featureset import FeatureSet, LayerData

    empty = FeatureSet(model="net", n_images=6)
    empty.layers["a"] = LayerData(name="a", n_units=10, n_sampled=10)
    c = FeatureCache(tmp_path)
    feats, hit = c.get_or_compute("ab" * 32, {}, lambda: empty)
    assert feats is empty and not hit and c.get("ab" * 32) is None and not c.path("ab" * 32).exists()


@pytest.mark.slow
def test_srp_dim_null_keeps_exact_features(compose_cfg, tmp_path):
    import idsim.experiment as exp
    from idsim.cache import FeatureCache

    cfg = compose_cfg([*TINY, "metric=regression", "metric.srp_dim=null", "metric.cv=loo", "dataset.n_images=8",
                       f"cache.dir={tmp_path / 'cache'}"])
    res = exp.run_experiment(cfg, tmp_path / "run")
    assert res.scores["score"].notna().all()
    entries = [p for p in (tmp_path / "cache" / "features").glob("*/*") if p.is_dir() and not p.name.startswith(".")]
    assert len(entries) == 2  # target and source, each holding arrays
    for e in entries:
        fs = FeatureCache(tmp_path / "cache").get(e.name)
        assert any(d.features is not None or d.units is not None for d in fs.layers.values())


def test_scratch_folders_are_per_process_and_dead_ones_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    gone = tmp_path / f"{procs.SCRATCH_PREFIX}{procs.hostname()}-{pid}-12345"
    (gone / "extract-x").mkdir(parents=True)
    (gone / "extract-x" / "layer.f32").write_bytes(b"\0" * 1000)
    other_host = tmp_path / f"{procs.SCRATCH_PREFIX}another-host-{pid}-12345"
    other_host.mkdir()
    mine = procs.run_folder(tmp_path)
    assert re.fullmatch(rf"{procs.SCRATCH_PREFIX}.+-{os.getpid()}-\d+", mine.name)
    assert not gone.exists() and other_host.exists() and mine.is_dir()


def test_a_full_scratch_disk_is_one_error_line_and_keeps_what_was_computed(cli, tmp_path, monkeypatch):
    """Spilled values are written through a memory mapping, where a full disk would be a SIGBUS that kills the job
    with no message and no status. Their blocks are allocated first, so a disk that fills up during the run (here:
    once the target's features are in the cache, while the source spills) is one error line and a failed status,
    and the target's features stay cached for the next run."""
    import errno

    cache = tmp_path / "cache"
    real = os.posix_fallocate

    def full_once_the_target_is_cached(fd, offset, length):
        if any((cache / "features").rglob("meta.json")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full_once_the_target_is_cached)
    run = tmp_path / "run"
    res = cli("target=alexnet", "sources=[vgg11]", "target.layers=[features.1,features.4]",
              "sources.vgg11.layers=[features.1]", "dataset.n_images=6", "extraction.batch_size=3",
              "extraction.ram_budget_mb=0.001", f"extraction.scratch_dir={tmp_path / 'scratch'}", f"cache.dir={cache}",
              "logger=none", "plots=false", "extraction.progress=false", f"hydra.run.dir={run}")
    assert res.returncode == 2
    assert len(res.error_lines()) == 1, res.stderr
    line = res.error_lines()[0]
    assert line.startswith("idsim: error: no room on disk for spilled layer values (") and "MB free" in line
    assert "extraction.scratch_dir" in line and "extraction.ram_budget_mb" in line
    status = _status(run)
    assert status["state"] == "failed" and "no room on disk" in status["error"]
    assert len([p for p in (cache / "features").glob("*/*") if p.is_dir() and not p.name.startswith(".")]) == 1


# --------------------------------------------------------------------------- SLURM jobs that can never start


class FakeSlurm:
    """Answers the SLURM commands idsim.slurm runs, from canned outputs; records scancel."""

    def __init__(self, squeue: list[str], nodes: str = "node1\n"):
        self.squeue, self.nodes, self.cancelled = list(squeue), nodes, []

    def __call__(self, cmd, timeout=15):
        if cmd[0] == "squeue":
            return self.squeue.pop(0) if len(self.squeue) > 1 else self.squeue[0]
        if cmd[0] == "scancel":
            self.cancelled.append(cmd[1])
            return ""
        if cmd[:2] == ["sinfo", "-h"] and "-N" in cmd:
            return self.nodes
        if cmd[0] == "sinfo":
            return "1|2|21000|(null)|(null)\n"
        if cmd[:3] == ["scontrol", "show", "partition"]:
            return "PartitionName=debug MaxNodes=UNLIMITED MaxTime=UNLIMITED MaxCPUsPerNode=UNLIMITED TotalCPUs=2\n"
        if cmd[:3] == ["scontrol", "show", "hostnames"]:
            return cmd[3].replace(",", "\n")
        return None


def test_a_pending_job_that_can_never_start_is_cancelled_with_one_line():
    from idsim.errors import LaunchAborted
    from idsim.slurm import watch

    fake = FakeSlurm(["12_[0-1]|PENDING|debug|None|(None)\n",
                      "12_[0-1]|PENDING|debug|PartitionConfig|(PartitionConfig)\n"])
    with pytest.raises(LaunchAborted) as e:
        watch("12", {"cpus_per_task": 64, "mem_gb": 2, "timeout_min": 15}, run=fake, sleep=lambda s: None)
    msg = str(e.value)
    assert fake.cancelled == ["12"] and "\n" not in msg
    for words in ("reason PartitionConfig", "cpus_per_task=64", "mem_gb=2 GB", "partition debug", "at most 2 CPUs",
                  "21000 MB", "no GPUs", "scancel 12"):
        assert words in msg, (words, msg)


@pytest.mark.parametrize("squeue, nodes, stuck", [
    (["5|PENDING|debug|Resources|(Resources)\n", ""], "node1\n", False),  # waits for resources, then starts
    (["5|PENDING|debug|ReqNodeNotAvail|(ReqNodeNotAvail, UnavailableNodes:node1)\n", ""], "node1\n", False),  # down
    (["5|PENDING|debug|ReqNodeNotAvail|(ReqNodeNotAvail, UnavailableNodes:gpu9)\n"], "node1\n", True),  # no such node
    (["5|PENDING|debug|BadConstraints|(BadConstraints)\n"], "node1\n", True),
    (["5|RUNNING|debug|None|node1\n", ""], "node1\n", False),
], ids=["resources", "node-down", "node-absent", "bad-constraints", "running"])
def test_only_reasons_that_waiting_cannot_change_cancel(squeue, nodes, stuck):
    from idsim.errors import LaunchAborted
    from idsim.slurm import watch

    fake = FakeSlurm(squeue, nodes)
    if stuck:
        with pytest.raises(LaunchAborted):
            watch("5", {"cpus_per_task": 1}, run=fake, sleep=lambda s: None)
        assert fake.cancelled == ["5"]
    else:
        watch("5", {"cpus_per_task": 1}, run=fake, sleep=lambda s: None)
        assert fake.cancelled == []


def test_tune_memory_stops_numpy_asking_for_huge_pages(monkeypatch):
    """NumPy's huge-page advice made first writes to fresh arrays 4.5x slower on this kernel (BENCHMARKS.md)."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        from numpy.core.multiarray import _set_madvise_hugepage
    from idsim.procs import tune_memory

    before = _set_madvise_hugepage(True)
    try:
        monkeypatch.setenv("IDSIM_MALLOC", "system")   # leaves memory settings as the system has them
        tune_memory()
        assert _set_madvise_hugepage(True) is True
        monkeypatch.delenv("IDSIM_MALLOC")
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
        tune_memory()
        assert _set_madvise_hugepage(True) is False and os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    finally:
        _set_madvise_hugepage(before)
        import gc

        gc.unfreeze()  # tune_memory froze this test process's objects (idsim.procs.settle)


def test_settle_collects_garbage_cycles_before_freezing_the_rest():
    """A model in a reference cycle that the run is done with must be collected, not frozen for good."""
    import gc
    import weakref

    from idsim.procs import importing, settle

    class Node:
        pass

    try:
        done, alive = Node(), Node()
        done.me, alive.me = done, alive  # both in a cycle; only ``alive`` is still referenced
        gone = weakref.ref(done)
        del done
        frozen = gc.get_freeze_count()
        settle()
        assert gone() is None                      # collected first, not frozen
        assert gc.get_freeze_count() > frozen      # the live objects (``alive`` among them) are frozen
        assert gc.isenabled()
        with importing():
            assert not gc.isenabled()               # no collection walks an import's new objects
            made = [Node() for _ in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made)
        with pytest.raises(RuntimeError), importing():
            raise RuntimeError("an import that fails")
        assert gc.isenabled()                       # collection is back on after a failed import too
    finally:
        gc.unfreeze()                               # this test process's objects: collectable again
