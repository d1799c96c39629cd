"""Sweeps on a real SLURM cluster: scripts/slurm-local starts a one-node cluster on this machine,
``python run.py -m hydra/launcher=slurm ...`` runs a 2 targets x 2 metrics sweep through it, and a
sweep with a failing job must end the command with a non-zero status. Slow (minutes)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "slurm-local"
TINY = ["dataset.n_images=12", "batch_size=6", "sources=[alexnet]", "logger=none", "plots=false", "progress=false",
        "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=15"]


def _have_slurm() -> bool:
    return all(shutil.which(t) or Path("/usr/sbin", t).exists() for t in ("slurmctld", "slurmd", "munged", "sbatch"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A private one-node cluster (own state folder and ports), stopped at the end whatever happens."""
    if not _have_slurm() and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("slurmctld is not installed and cannot be installed here (needs root and apt-get:"
                    " apt-get install -y slurm-wlm munge)")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "IDSIM_SLURM_DIR": str(state), "IDSIM_SLURM_PORT": "6927"}
    try:
        start = subprocess.run([str(SCRIPT), "start", "--install"], env=env, capture_output=True, text=True, timeout=600)
        if start.returncode != 0 and not _have_slurm():
            pytest.skip(f"could not install SLURM: {start.stderr.strip()[-300:]}")
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
    sweep_dir = tmp_path / "failing"
    res = _sweep(cluster, sweep_dir, "target=alexnet", "metric=cka", "unit_ratio=1.0,7")
    assert res.returncode == 1, res.stderr[-4000:]
    assert "1 of 2 jobs failed" in res.stderr and str(sweep_dir / "unit_ratio=7" / "status.json") in res.stderr
    bad = json.loads((sweep_dir / "unit_ratio=7" / "status.json").read_text())
    assert bad["state"] == "failed" and "unit_ratio must be" in bad["error"] and bad["slurm_job_id"]
    assert json.loads((sweep_dir / "unit_ratio=1.0" / "status.json").read_text())["state"] == "done"
    assert set(pd.read_csv(sweep_dir / "summary" / "identifiability.csv")["job"]) == {"unit_ratio=1.0"}
