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
