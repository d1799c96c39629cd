"""Sweeps on a real SLURM cluster: scripts/slurm-local starts a one-node cluster on this machine,
``python run.py -m hydra/launcher=slurm ...`` runs a 2 targets x 2 metrics sweep through it, a
sweep with a failing job must end the command with a non-zero status, a sweep asking for more CPUs
than the node has is cancelled with one line within a minute, and jobs stopped by SLURM's
pre-timeout signal or scancel are recorded as such. Slow (minutes).

Under CI (``IDSIM_REQUIRE_SLURM=1``, set by ``.ci/run``) a cluster that cannot be installed or
started fails these tests instead of skipping them."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "slurm-local"
TINY = ["dataset.n_images=12", "extraction.batch_size=6", "sources=[alexnet]", "logger=none", "plots=false",
        "extraction.progress=false",
        "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=15"]


REQUIRED = os.environ.get("IDSIM_REQUIRE_SLURM") == "1"  # CI: no cluster is a failure, not a skip


def _have_slurm() -> bool:
    return all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in ("slurmctld", "slurmd", "munged", "sbatch"))


def _no_cluster(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"IDSIM_REQUIRE_SLURM=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A private one-node cluster (own state folder and ports), stopped at the end whatever happens."""
    if not _have_slurm() and (os.geteuid() != 0 or not shutil.which("apt-get")):
        _no_cluster("slurmctld is not installed and cannot be installed here (needs root and apt-get:"
                    " apt-get install -y slurm-wlm munge)")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "IDSIM_SLURM_DIR": str(state), "IDSIM_SLURM_PORT": "6927"}
    try:
        start = subprocess.run([str(SCRIPT), "start", "--install"], env=env, capture_output=True, text=True, timeout=600)
        if start.returncode != 0 and not _have_slurm():
            _no_cluster(f"could not install SLURM: {start.stderr.strip()[-300:]}")
        assert start.returncode == 0, start.stdout + start.stderr
        again = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "already running" in again.stdout  # idempotent
        env["SLURM_CONF"] = str(state / "slurm.conf")
        yield env
    finally:
        stop = subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)
        status = subprocess.run([str(SCRIPT), "status"], env=env, capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0 and status.returncode != 0, stop.stdout + stop.stderr + status.stdout


def _sweep(env: dict, sweep_dir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "run.py", "-m", *args, *TINY, f"hydra.sweep.dir={sweep_dir}"]
    return subprocess.run(cmd, cwd=ROOT, env={**env, "WANDB_MODE": "disabled"}, capture_output=True, text=True,
                          timeout=900)


def test_sbatch_runs_a_job(cluster, tmp_path):
    out = tmp_path / "hello.out"
    res = subprocess.run(["sbatch", "--wait", "-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID"], env=cluster,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert out.read_text().startswith("hello from ")


def test_slurm_sweep_runs_every_job_and_summarizes(cluster, tmp_path):
    sweep_dir = tmp_path / "grid"
    res = _sweep(cluster, sweep_dir, "target=alexnet,resnet18", "metric=cka,cka_debiased")
    assert res.returncode == 0, res.stderr[-4000:]
    names = {f"metric={m},target={t}" for m in ("cka", "cka_debiased") for t in ("alexnet", "resnet18")}
    for name in names:
        st = json.loads((sweep_dir / name / "status.json").read_text())
        assert st["state"] == "done" and st["slurm_job_id"] and st["python"] == sys.executable, st
        assert Path(st["submitit_log"]).is_file()
        ident = pd.read_csv(sweep_dir / name / "identifiability.csv")
        assert len(ident) == (7 if "alexnet" in name else 9)
    jobs = pd.read_csv(sweep_dir / "summary" / "jobs.csv")
    assert set(jobs["job"]) == names and set(jobs["state"]) == {"done"} and jobs["slurm_job_id"].notna().all()
    assert len(pd.read_csv(sweep_dir / "summary" / "identifiability.csv")) == 2 * 7 + 2 * 9
    assert (sweep_dir / "summary" / "identifiability_mean.png").is_file()


def test_slurm_sweep_with_a_failing_job_exits_non_zero(cluster, tmp_path):
    """3 images are too few for debiased CKA: a valid config that fails in the job (before any forward pass)."""
    sweep_dir = tmp_path / "failing"
    cmd = [sys.executable, "run.py", "-m", "target=alexnet", "metric=cka_debiased",
           *_with("dataset.n_images=12,3"), f"hydra.sweep.dir={sweep_dir}"]
    res = subprocess.run(cmd, cwd=ROOT, env={**cluster, "WANDB_MODE": "disabled"}, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 1, res.stderr[-4000:]
    bad_dir = sweep_dir / "dataset.n_images=3"
    assert "1 of 2 jobs failed" in res.stderr and str(bad_dir / "status.json") in res.stderr
    bad = json.loads((bad_dir / "status.json").read_text())
    assert bad["state"] == "failed" and "at least 4" in bad["error"] and bad["slurm_job_id"]
    assert bad["reason"] == "error" and "Traceback" in (bad_dir / "run.log").read_text()
    assert json.loads((sweep_dir / "dataset.n_images=12" / "status.json").read_text())["state"] == "done"
    assert set(pd.read_csv(sweep_dir / "summary" / "identifiability.csv")["job"]) == {"dataset.n_images=12"}


def _with(*overrides: str) -> list[str]:
    """TINY with some of its keys replaced (a key given twice on the command line would be ambiguous)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in TINY if o.split("=", 1)[0] not in keys] + list(overrides)


def _squeue(env: dict) -> list[str]:
    res = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], env=env, capture_output=True, text=True, timeout=60)
    return [x for x in res.stdout.splitlines() if x.strip()]


def test_a_sweep_asking_more_than_the_node_has_is_cancelled_within_a_minute(cluster, tmp_path):
    sweep_dir = tmp_path / "greedy"
    t0 = time.time()
    cmd = [sys.executable, "run.py", "-m", "target=alexnet,resnet18", *_with("hydra.launcher.cpus_per_task=64"),
           f"hydra.sweep.dir={sweep_dir}"]
    res = subprocess.run(cmd, cwd=ROOT, env={**cluster, "WANDB_MODE": "disabled"}, capture_output=True, text=True,
                         timeout=300)
    took = time.time() - t0
    assert res.returncode == 1, res.stderr[-3000:]
    assert took < 60, f"{took:.0f} s"
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("idsim: error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    cpus = os.cpu_count()
    for words in ("reason PartitionConfig", "cpus_per_task=64", f"at most {cpus} CPUs", "partition debug", "scancel"):
        assert words in errors[0], (words, errors[0])
    assert _squeue(cluster) == []  # the array was cancelled
    assert not list(sweep_dir.glob("*/status.json"))  # no job ran


def _job_status(sweep_dir: Path, name: str, timeout: float = 300) -> dict:
    """The job's status.json once it says running with a SLURM job id (or any later state)."""
    path = sweep_dir / name / "status.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            st = json.loads(path.read_text())
            if st.get("slurm_job_id"):
                return st
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{path} never said running")


def test_slurm_pre_timeout_signal_and_scancel_are_recorded(cluster, tmp_path):
    """SLURM's pre-timeout signal (USR2, forwarded by submitit) records reason timeout; scancel's SIGTERM, killed."""
    sweep_dir = tmp_path / "stopped"
    slow = _with("dataset.n_images=96", "extraction.batch_size=2", "sources=[alexnet,vgg11]", "cache.enabled=false")
    cmd = [sys.executable, "run.py", "-m", "seed=0,1", "target=alexnet", *slow, f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**cluster, "WANDB_MODE": "disabled"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        a, b = _job_status(sweep_dir, "seed=0"), _job_status(sweep_dir, "seed=1")
        time.sleep(2)  # inside the run
        subprocess.run(["scancel", "--signal=USR2", a["slurm_job_id"]], env=cluster, check=True, timeout=60)
        subprocess.run(["scancel", b["slurm_job_id"]], env=cluster, check=True, timeout=60)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err[-3000:]
    st_a = json.loads((sweep_dir / "seed=0" / "status.json").read_text())
    st_b = json.loads((sweep_dir / "seed=1" / "status.json").read_text())
    assert (st_a["state"], st_a["reason"]) == ("failed", "timeout") and "SIGUSR2" in st_a["error"], st_a
    assert (st_b["state"], st_b["reason"]) == ("failed", "killed") and "SIGTERM" in st_b["error"], st_b
    assert "2 of 2 jobs failed" in err
