"""Sweeps end to end (``python run.py -m`` with Hydra's basic launcher, in real processes): status
files, the sweep summary, failing jobs; re-launching and W&B runs per job (slow: one more process
each); and the helpers of :mod:`idsim.sweep` in process."""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from idsim.errors import IdsimError
from idsim.jobs import Job, config_hash, job_dir_name, write_status
from idsim.sweep import collect, main, swept_keys

ROOT = Path(__file__).resolve().parent.parent
TINY = ["extraction.batch_size=6", "sources=[alexnet]", "plots=false", "extraction.progress=false"]
# 2 targets x 2 metrics that run, and the same four on 2 images (a valid config that fails in
# run_experiment, when the metric sees the probe set, before any forward pass): four failed jobs cost almost nothing
GRID = ["target=alexnet,resnet18", "metric=cka,cka_debiased", "dataset.n_images=12,2", "logger=none"]
GOOD = {f"dataset.n_images=12,metric={m},target={t}" for m in ("cka", "cka_debiased") for t in ("alexnet", "resnet18")}
BAD = {name.replace("n_images=12", "n_images=2") for name in GOOD}
FAILURE = "needs at least"  # the metric's one line for 2 images
WANDB = ["target=alexnet", "metric=cka", "dataset.n_images=12,2", "logger=wandb", "logger.mode=offline"]


def _start(args: list[str], sweep_dir: Path, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "run.py", "-m", *args, *TINY, f"hydra.sweep.dir={sweep_dir}"]
    e = {**os.environ, "WANDB_SILENT": "true", **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=400)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """The grid sweep, with a snapshot of what it wrote (before any re-launch changes it)."""
    grid = tmp_path_factory.mktemp("sweeps") / "grid"
    first = _finish(_start(GRID, grid))
    before = {name: _status(grid / name) for name in GOOD | BAD if (grid / name / "status.json").exists()}
    mtimes = {name: (grid / name / "scores.csv").stat().st_mtime for name in GOOD if (grid / name).exists()}
    summary = {p.name: p.read_bytes() for p in (grid / "summary").glob("*.csv")}
    return {"grid": grid, "first": first, "before": before, "mtimes": mtimes, "summary": summary}


@pytest.fixture(scope="module")
def relaunched(sweeps):
    """The same command again, into the same sweep folder."""
    time.sleep(1.1)  # status times have one-second resolution
    return _finish(_start(GRID, sweeps["grid"]))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A sweep logged to W&B offline: one job that runs, one that fails."""
    folder = tmp_path_factory.mktemp("wandb") / "logged"
    return folder, _finish(_start(WANDB, folder, {"WANDB_MODE": "offline"}))


def test_sweep_writes_status_files_and_a_summary(sweeps):
    grid, res, before = sweeps["grid"], sweeps["first"], sweeps["before"]
    assert res.returncode == 1, res.stderr[-3000:]
    assert {p.name for p in grid.iterdir() if (p / "status.json").exists()} == GOOD | BAD
    for name in GOOD:
        st = before[name]
        assert st["state"] == "done" and st["error"] is None, st
        assert st["python"] == sys.executable and st["ended"] >= st["started"]
        assert st["result"]["n_target_layers"] == (7 if "alexnet" in name else 9)
        assert (grid / name / "scores.csv").is_file()

    jobs = pd.read_csv(io.BytesIO(sweeps["summary"]["jobs.csv"]))
    assert sorted(jobs["job"]) == sorted(GOOD | BAD)
    assert {"target", "metric", "dataset.n_images", "state", "status_file", "log"} <= set(jobs.columns)
    assert set(jobs.loc[jobs["dataset.n_images"] == 12, "state"]) == {"done"}
    assert set(jobs.loc[jobs["dataset.n_images"] == 2, "state"]) == {"failed"}

    # the summary is every finished job's own table, concatenated, with the job and swept values in front
    ident = pd.read_csv(io.BytesIO(sweeps["summary"]["identifiability.csv"]))
    scores = pd.read_csv(io.BytesIO(sweeps["summary"]["scores.csv"]))
    assert set(scores["job"]) == set(ident["job"]) == GOOD
    for name in GOOD:
        own = pd.read_csv(grid / name / "scores.csv")
        mine = scores[scores["job"] == name].drop(columns="job").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine[own.columns], own, check_dtype=False)
        assert set(ident.loc[ident["job"] == name, "target"]) == {name.split("target=")[1].split(",")[0]}
    assert len(ident) == 2 * 7 + 2 * 9
    for png in ("identifiability_mean.png", "identifiability_by_layer.png"):
        assert (grid / "summary" / png).stat().st_size > 5000
    assert not (grid / "summary" / "wandb").exists()  # logger=none


def test_failed_jobs_are_named_recorded_and_logged(sweeps):
    grid, res, before = sweeps["grid"], sweeps["first"], sweeps["before"]
    assert "idsim: error: 4 of 8 jobs failed" in res.stderr
    tail = res.stderr.strip().splitlines()[-4:]
    for name in BAD:
        bad = grid / name
        assert any(line.strip().startswith(f"{name}: IdsimError:") and FAILURE in line
                   and str(bad / "status.json") in line and str(bad / "run.log") in line for line in tail), tail
        st = before[name]
        assert st["state"] == "failed" and FAILURE in st["error"], st
        assert "Traceback" in st["traceback"] and "Traceback" in (bad / "run.log").read_text()


@pytest.mark.slow
def test_relaunch_skips_done_jobs_and_reruns_failed_ones(sweeps, relaunched):
    grid, res, before = sweeps["grid"], relaunched, sweeps["before"]
    assert res.returncode == 1 and "4 of 8 jobs failed" in res.stderr, res.stderr[-3000:]
    for name in GOOD:
        after = _status(grid / name)
        assert "skipped: already done" in (grid / name / "run.log").read_text()
        assert (after["started"], after["ended"], after["config_hash"]) == (
            before[name]["started"], before[name]["ended"], before[name]["config_hash"])
        assert (grid / name / "scores.csv").stat().st_mtime == sweeps["mtimes"][name]
    for name in BAD:  # failed jobs run again
        assert _status(grid / name)["started"] > before[name]["started"]
    assert len(pd.read_csv(grid / "summary" / "identifiability.csv")) == 2 * 7 + 2 * 9


def _wandb_records(path: Path):
    """Records of an offline W&B run file (LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 2):
            buf = chunk
        elif kind in (3, 4):
            buf += chunk
        else:
            break
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def _wandb_run(folder: Path) -> tuple[object, int | None]:
    runs = sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    run, exit_code = None, None
    for rec in _wandb_records(runs[0]):
        kind = rec.WhichOneof("record_type")
        run = rec.run if kind == "run" else run
        exit_code = rec.exit.exit_code if kind == "exit" else exit_code
    return run, exit_code


@pytest.mark.slow
def test_wandb_one_offline_run_per_job_grouped_by_sweep(logged):
    logged, res = logged
    assert res.returncode == 1 and "1 of 2 jobs failed" in res.stderr, res.stderr[-3000:]
    run, code = _wandb_run(logged / "dataset.n_images=12")
    assert (run.run_group, run.display_name, run.job_type, code) == ("logged", "dataset.n_images=12", "identify", 0)
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["target"]["name"] == "alexnet" and config["dataset"]["n_images"] == 12  # the resolved job config
    assert not (logged / "dataset.n_images=2" / "wandb").exists()  # failed before any work
    summary, code = _wandb_run(logged / "summary")
    assert (summary.run_group, summary.display_name, summary.job_type, code) == ("logged", "summary", "sweep-summary", 0)


# --------------------------------------------------------------------------- helpers, in process


def test_job_dir_name_is_safe_stable_and_unique():
    assert job_dir_name(["target=vgg11", "metric=cka"]) == "metric=cka,target=vgg11"
    assert job_dir_name([]) == "defaults"
    assert "/" not in job_dir_name(["target.weights=/data/ck pt.pt"])
    long_a, long_b = job_dir_name([f"k{i}=v" for i in range(60)]), job_dir_name([f"k{i}=w" for i in range(60)])
    assert len(long_a) <= 120 and long_a != long_b


def test_job_dir_name_keeps_only_swept_keys(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task: ['target=alexnet,vgg11', 'extraction.batch_size=6', 'metric=glob(*)']\n")
    assert job_dir_name(["extraction.batch_size=6", "target=vgg11", "metric=cka"], str(tmp_path)) == \
        "metric=cka,target=vgg11"


def test_swept_keys_and_config_hash():
    assert swept_keys([{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]) == ["a"]
    assert swept_keys([{"a": 1}]) == ["a"]
    h = config_hash({"seed": 0, "target": {"name": "vgg11"}})
    assert h == config_hash({"target": {"name": "vgg11"}, "seed": 0})
    assert h != config_hash({"seed": 1, "target": {"name": "vgg11"}})


def test_stored_result_needs_done_same_config_same_inputs_and_results(tmp_path):
    cfg_hash, inputs = "a" * 64, {"idsim": "0.2.0", "probe_set": "p" * 64, "checkpoints": {}}
    job = Job(out_dir=tmp_path, overrides=["seed=1"], multirun=True, config_hash=cfg_hash)
    assert job.stored_result(inputs) == (None, None)  # nothing there
    write_status(tmp_path, {"state": "done", "config_hash": cfg_hash, "inputs": inputs,
                            "result": {"mean_identifiability_index": 0.25}})
    assert job.stored_result(inputs) == (None, "its results are missing")  # no identifiability.csv
    (tmp_path / "identifiability.csv").write_text("x\n1\n")
    assert job.stored_result(inputs) == (0.25, None)
    other = Job(out_dir=tmp_path, overrides=["seed=1"], multirun=True, config_hash="b" * 64)
    assert other.stored_result(inputs) == (None, "the config changed")  # another config in the same folder
    assert job.stored_result(None)[0] is None  # inputs that cannot be read now: run (the run says why)
    write_status(tmp_path, {"state": "failed", "config_hash": cfg_hash})
    assert job.stored_result(inputs) == (None, None)


def test_summarize_command_rebuilds_and_rejects_bad_folders(sweeps, tmp_path, capsys):
    grid = sweeps["grid"]
    (grid / "summary" / "jobs.csv").unlink()
    assert main(["summarize", str(grid), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "4 of 8 jobs done" in out and all(name in out for name in BAD)
    assert len(pd.read_csv(grid / "summary" / "jobs.csv")) == 8
    assert main(["summarize", str(tmp_path / "nope")]) == 2
    assert "no sweep folder" in capsys.readouterr().err
    with pytest.raises(IdsimError, match="holds no sweep jobs"):
        collect(tmp_path)
