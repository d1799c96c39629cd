"""Start-up: reading the configuration imports no torch, timm, torchvision, wandb or matplotlib.

`python run.py --cfg job`, `--help` and any one-line error come back without them (timing is in
benchmarks, not here: BENCHMARKS.md, "Start-up")."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "torchvision", "timm", "wandb", "matplotlib", "sklearn")


def imported(args):
    r = subprocess.run([sys.executable, "-X", "importtime", "run.py", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    modules = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r, modules


@pytest.mark.parametrize("args, code", [(["--cfg", "job"], 0), (["--help"], 0), (["target=vgg111"], 2),
                                        (["unit_ratio=2"], 2), (["metric=rsa", "metric.rdm=nope"], 2)],
                         ids=["cfg-job", "help", "unknown-model", "bad-value", "bad-metric-option"])
def test_reading_the_config_imports_no_heavy_library(args, code):
    r, modules = imported(args)
    assert r.returncode == code, r.stderr[-2000:]
    assert "hydra" in modules and "idsim.schema" in modules  # the measurement works
    assert not [m for m in HEAVY if m in modules], sorted(m for m in modules if m.split(".")[0] in HEAVY)[:10]
    if code == 2:
        assert [line for line in r.stderr.splitlines() if line.startswith("idsim: error:")], r.stderr[-2000:]


def test_a_job_with_everything_cached_imports_no_torch(tmp_path):
    """Features and scores from the caches: the job runs no network and scores nothing, so torch, torchvision and
    timm are never imported (a warm job's time is start-up and writing; BENCHMARKS.md)."""
    args = ["target=alexnet", "sources=[resnet18]", "target.layers=[features.4]", "sources.resnet18.layers=[layer1]",
            "dataset.n_images=12", "extraction.batch_size=6", "logger=none", "plots=false", "extraction.progress=false",
            "extraction.device=cpu", f"cache.dir={tmp_path / 'cache'}"]  # (auto asks torch on a machine with a GPU)
    cold, cold_modules = imported([*args, f"hydra.run.dir={tmp_path / 'cold'}"])
    assert cold.returncode == 0, cold.stderr[-2000:]
    assert "torch" in cold_modules  # the measurement works: a cold job runs the networks
    warm, modules = imported([*args, f"hydra.run.dir={tmp_path / 'warm'}"])
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert (tmp_path / "cold" / "scores.csv").read_text() == (tmp_path / "warm" / "scores.csv").read_text()
    assert not [m for m in ("torch", "torchvision", "timm") if m in modules]


def test_device_type_answers_as_torch_would(monkeypatch):
    """The torch-free answer (no GPU driver's device files) and torch's own agree; a CUDA device asked for
    where there is none is refused either way."""
    import torch

    from idsim import devices
    from idsim.errors import IdsimError

    truth = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.device_type("cpu") == "cpu"
    monkeypatch.setattr(devices, "GPU_DEVICE_FILES", ("/dev/null",))  # "a driver is there": torch decides
    assert devices.device_type("auto") == truth
    if truth == "cpu":
        monkeypatch.setattr(devices, "GPU_DEVICE_FILES", ("/nonexistent/nvidiactl",))
        assert devices.device_type("auto") == "cpu"
        with pytest.raises(IdsimError, match="CUDA is not available"):
            devices.device_type("cuda")
    with pytest.raises(IdsimError, match="unknown device"):
        devices.device_type("tpu")
