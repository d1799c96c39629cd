"""Tests for the command line (``python run.py ...``): config composition, one-line errors with
exit status 2 for unknown names and bad values, and a tiny real run writing every output.

A run costs seconds of start-up (torch, torchvision and timm imports), so:

- a few checks run ``run.py`` in real processes, all started at once when the first test of this
  file begins (they run while the other tests do) and read by the tests at the end of the file;
- the many other invocations go through the same ``run.py`` in this process (``launch(main)``
  with ``sys.argv`` set, as the script does), where one call costs ~1-3 s (Hydra composition).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DEFAULT_SOURCES = ["alexnet", "vgg11", "resnet18", "vit_base_patch32_224", "mixer_b16_224"]
ALEXNET_LAYERS = ["features.1", "features.4", "features.7", "features.9", "features.11", "classifier.2",
                  "classifier.5"]


def tiny(**overrides: str) -> list[str]:
    """Cheap settings for anything that could run models; ``overrides`` replace or add keys."""
    base = {"sources": "[alexnet]", "target": "alexnet", "dataset.n_images": "6", "logger": "none",
            "plots": "false", "extraction.progress": "false", "extraction.batch_size": "6"}
    base.update(overrides)
    return [f"{k}={v}" for k, v in base.items()]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [x for x in self.stderr.splitlines() if x.strip().startswith("idsim: error:")]


def assert_one_line_error(r: Result, *expected: str) -> str:
    """Exit status 2, exactly one ``idsim: error:`` line on stderr naming ``expected``, no traceback."""
    assert r.returncode == 2, f"exit status {r.returncode}\nstderr:\n{r.stderr[-3000:]}\nstdout:\n{r.stdout[-2000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.error_lines()
    assert len(lines) == 1, f"expected one 'idsim: error:' line on stderr, got:\n{r.stderr}"
    line = lines[0]
    for s in expected:
        assert s in line, f"{s!r} not in {line!r}"
    return line


# ---------------------------------------------------------------------------------------------
# run.py in this process


@pytest.fixture(scope="module")
def run_py():
    spec = importlib.util.spec_from_file_location("idsim_run_py", ROOT / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # not as __main__: that would start a run
    # Hydra looks for conf/ next to the file of a task function defined in __main__ (as when run.py is the script)
    mod.main.__wrapped__.__module__ = "__main__"
    return mod


@pytest.fixture
def cli(run_py, monkeypatch, tmp_path):
    """``cli(*args)``: ``python run.py *args hydra.run.dir=<tmp>`` in this process."""
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def call(*args: str, run_dir: Path | None = None) -> Result:
        args = [*args, f"hydra.run.dir={run_dir or tmp_path / 'run'}"]
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
        finally:  # undo what Hydra set up for the job: logging handlers, its global config
            for h in root.handlers:
                if h not in handlers:
                    h.close()
            root.handlers[:] = handlers
            root.setLevel(level)
            HydraConfig.instance().cfg = hydra_cfg
        return Result(code, out.getvalue(), err.getvalue())

    return call


def show_job(cli, *overrides: str) -> dict:
    r = cli("--cfg", "job", *overrides)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not r.error_lines()
    cfg = yaml.safe_load(r.stdout)
    assert isinstance(cfg, dict), r.stdout
    return cfg


# ---------------------------------------------------------------------------------------------
# run.py in real processes, started together at the first test of this file


def subprocess_jobs(tmp: Path) -> dict[str, list[str]]:
    return {
        # a tiny real run, with figures
        "tiny_run": [*tiny(plots="true"), f"hydra.run.dir={tmp / 'tiny_run'}"],
        # an unknown name: caught before Hydra starts
        "unknown_target": ["target=vgg111", f"hydra.run.dir={tmp / 'unknown_target'}"],
        # a bad value: caught before Hydra starts
        "bad_ratio": [*tiny(unit_ratio="1.5"), f"hydra.run.dir={tmp / 'bad_ratio'}"],
        # a value only the job can check (the metric against the images): its log holds the traceback
        "job_error": [*tiny(metric="cka_debiased", **{"dataset.n_images": "3"}), f"hydra.run.dir={tmp / 'job_error'}"],
    }


@pytest.fixture(scope="module", autouse=True)
def real_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["WANDB_MODE"] = "disabled"
    procs = {}
    for key, args in subprocess_jobs(tmp).items():
        out, err = (tmp / f"{key}.stdout").open("w"), (tmp / f"{key}.stderr").open("w")
        procs[key] = (subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, stdout=out, stderr=err),
                      out, err)

    def result(key: str) -> tuple[Result, Path]:
        proc, out, err = procs[key]
        proc.wait(timeout=300)
        out.close(), err.close()
        return (Result(proc.returncode, (tmp / f"{key}.stdout").read_text(), (tmp / f"{key}.stderr").read_text()),
                tmp / key)

    yield result
    for proc, out, err in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close(), err.close()


# ---------------------------------------------------------------------------------------------
# Composition (--cfg job)


def test_default_config(cli):
    cfg = show_job(cli)
    for key in ("target", "sources", "dataset", "metric", "unit_ratio", "seed"):
        assert key in cfg, key
    assert cfg["target"]["name"] == "resnet18"
    assert list(cfg["sources"]) == DEFAULT_SOURCES
    assert all(cfg["sources"][k]["name"] == k for k in DEFAULT_SOURCES)
    assert cfg["dataset"]["name"] == "shapes"
    assert cfg["metric"]["name"] == "cka"
    assert cfg["unit_ratio"] == 1.0 and cfg["seed"] == 0
    assert set(cfg["target"]) == {"name", "kind", "library", "weights", "seed", "layers", "recording"}
    assert cfg["target"]["recording"]["trials"] == 1 and cfg["target"]["recording"]["noise"] == "none"  # ideal
    assert cfg["extraction"]["batch_size"] == 32 and cfg["logger"]["kind"] == "wandb"


@pytest.mark.parametrize("overrides, target, sources, metric", [
    (["target=vgg11", "metric=cka"], "vgg11", DEFAULT_SOURCES, "cka"),
    (["sources=[alexnet,vgg11]"], "resnet18", ["alexnet", "vgg11"], "cka"),
    (["target=convnext_tiny"], "convnext_tiny", DEFAULT_SOURCES, "cka"),  # any torchvision model
    (["target=deit_tiny_patch16_224"], "deit_tiny_patch16_224", DEFAULT_SOURCES, "cka"),  # timm
], ids=["vgg11-cka", "two-sources", "torchvision-any", "timm"])
def test_overrides_compose(cli, overrides, target, sources, metric):
    cfg = show_job(cli, *overrides)
    assert cfg["target"]["name"] == target
    assert list(cfg["sources"]) == sources
    assert cfg["metric"]["name"] == metric


def test_model_options_compose(cli, tmp_path):
    ckpt = tmp_path / "file.pt"
    ckpt.write_bytes(b"")
    cfg = show_job(cli, "sources=[alexnet,deit_tiny_patch16_224]", "target=alexnet", "target.layers=[features.1,features.4]", "target.seed=5",
                   "sources.alexnet.weights=imagenet", "unit_ratio=0.25", f"weights={ckpt}")
    assert cfg["target"]["layers"] == ["features.1", "features.4"] and cfg["target"]["seed"] == 5
    assert cfg["sources"]["alexnet"]["weights"] == "imagenet"
    assert cfg["sources"]["deit_tiny_patch16_224"]["weights"] == "${weights}" and cfg["weights"] == str(ckpt)
    assert cfg["unit_ratio"] == 0.25


@pytest.mark.parametrize("group, path", [(p.parent.name, p) for p in sorted(CONF.glob("metric/*.yaml"))]
                         + [(p.parent.name, p) for p in sorted(CONF.glob("dataset/*.yaml"))],
                         ids=lambda x: x.stem if isinstance(x, Path) else x)
def test_every_config_file_composes(cli, group, path):
    cfg = show_job(cli, f"{group}={path.stem}")
    expected = yaml.safe_load(path.read_text())
    defaults = expected.pop("defaults")
    schema = next(d for d in defaults if isinstance(d, str) and d.startswith("base_"))
    assert {k: cfg[group][k] for k in expected} == expected  # the file's own values win over the schema's
    assert cfg[group].get("kind", cfg[group]["name"]) == schema[len("base_"):] or cfg[group]["name"] == schema[5:]


# ---------------------------------------------------------------------------------------------
# Unknown names: caught from the command line, before Hydra composes anything


@pytest.mark.parametrize("args, expected", [
    (["target=vgg111"], ["'vgg111'", "did you mean", "vgg11", "python -m idsim.models list"]),
    (["sources=[alexnet,resnet1800]"], ["'resnet1800'", "resnet18"]),
    (["dataset=nope"], ["'nope'", "valid: ", "shapes"]),
    (["metric=ckaa"], ["'ckaa'", "cka", "cka_debiased", "regression", "regression_loo"]),
    (["target="], ["target", "''"]),
    (["metric=null"], ["metric", "valid: cka"]),
    (["-m", "target=vgg11,bogus"], ["'bogus'", "python -m idsim.models list"]),
    (["-m", "sources=[alexnet],[vgg11,resnet1800]"], ["'resnet1800'", "resnet18"]),
], ids=["target", "sources", "dataset", "metric", "empty-target", "null-metric", "sweep", "sweep-of-lists"])
def test_unknown_names(cli, tmp_path, args, expected):
    sweep = tmp_path / "sweep"
    flags = [a for a in args if a.startswith("-")]
    overrides = dict(a.split("=", 1) for a in args if not a.startswith("-"))
    r = cli(*flags, *tiny(**overrides), f"hydra.sweep.dir={sweep}")
    assert_one_line_error(r, *expected)
    assert not sweep.exists() and not (tmp_path / "run").exists()  # nothing ran, nothing was written
    assert r.stdout == ""


def test_unknown_name_with_cfg_job(cli):
    assert_one_line_error(cli("--cfg", "job", "target=vgg111"), "'vgg111'", "vgg11")


def test_two_targets_are_an_error(cli):
    assert_one_line_error(cli("--cfg=job", "target=[alexnet,vgg11]"), "target")


@pytest.mark.parametrize("bad", ["unitratio=0.5", "unit_ratio=["], ids=["unknown-key", "syntax"])
def test_hydra_level_mistakes(cli, bad):
    assert_one_line_error(cli(*tiny(), bad), bad.split("=")[0].split(".")[-1])


# ---------------------------------------------------------------------------------------------
# Bad values: caught from the command line (values) or when the job starts (layers, devices), before any model is built


BAD_VALUES = [
    ({"unit_ratio": "1.5"}, ["unit_ratio=1.5", "(0, 1]"]),
    ({"unit_ratio": "0"}, ["unit_ratio=0", "(0, 1]"]),
    ({"unit_ratio": "abc"}, ["unit_ratio='abc'", "(0, 1]"]),
    ({"dataset.n_images": "-3"}, ["dataset.n_images=-3", "valid"]),
    ({"weights": "/no/such/file.pt"}, ["/no/such/file.pt", "random", "imagenet"]),
    ({"logger": "foo"}, ["logger", "'foo'", "wandb", "none"]),
    ({"extraction.device": "cuda"}, ["cuda", "not available", "extraction.device=auto", "extraction.device=cpu"]),
    ({"extraction.batch_size": "0"}, ["extraction.batch_size=0", ">= 1"]),
    ({"target": "resnet18", "target.layers": "[no.such.layer]"},
     ["resnet18", "'no.such.layer'", "python -m idsim.models layers resnet18"]),
    ({"metric": "regression", "metric.cv": "1"}, ["metric.cv", "loo", "k >= 2"]),
    ({"sources": "[]"}, ["no source models", "sources=["]),
]


@pytest.mark.parametrize("overrides, expected", BAD_VALUES,
                         ids=["=".join(next(iter(o.items()))) if len(o) == 1 else "+".join(o) for o, _ in BAD_VALUES])
def test_bad_values(cli, tmp_path, overrides, expected):
    if overrides.get("extraction.device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    r = cli(*tiny(**overrides))
    assert_one_line_error(r, *expected)
    out = tmp_path / "run"
    assert not (out / "config.yaml").exists() and not (out / "target_units.csv").exists()  # stopped before any work


# ---------------------------------------------------------------------------------------------
# Real processes (started at the beginning of this file)


def test_real_unknown_name(real_runs):
    r, out = real_runs("unknown_target")
    line = assert_one_line_error(r, "'vgg111'", "did you mean", "vgg11")
    assert [x for x in r.stderr.splitlines() if x.strip()] == [line]  # nothing else on stderr
    assert not out.exists()


def test_real_bad_value(real_runs):
    r, out = real_runs("bad_ratio")
    line = assert_one_line_error(r, "unit_ratio", "(0, 1]", "1.5")
    assert [x for x in r.stderr.splitlines() if x.strip()] == [line]
    assert not (out / "config.yaml").exists()


def test_real_error_in_a_job_is_one_line_naming_the_log(real_runs):
    r, out = real_runs("job_error")
    line = assert_one_line_error(r, "at least 4", f"(full log: {out / 'run.log'})")
    assert [x for x in r.stderr.splitlines() if x.strip()] == [line]
    assert "Traceback" not in r.stdout and "Error" not in r.stdout  # nothing around the line on the console
    assert "Traceback" in (out / "run.log").read_text()
    assert not (out / "target_units.csv").exists()


def test_real_tiny_run(real_runs):
    r, out = real_runs("tiny_run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and not r.error_lines()
    for name in ("scores.csv", "identifiability.csv", "best_scores.csv", "target_units.csv", "config.yaml"):
        assert (out / name).is_file(), name
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "best_scores.png" in figures and "identifiability.png" in figures and len(figures) >= 3, figures
    assert all((out / "figures" / f).stat().st_size > 1000 for f in figures)

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["target"]["name"] == "alexnet" and list(cfg["sources"]) == ["alexnet"]
    assert cfg["dataset"]["n_images"] == 6 and cfg["target"]["weights"] == "random"  # saved resolved

    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == len(ALEXNET_LAYERS) ** 2
    assert set(scores["target_layer"]) == set(ALEXNET_LAYERS) == set(scores["source_layer"])
    assert (scores["source"] == "alexnet").all() and (scores["metric"] == "cka").all()
    assert scores["score"].notna().all() and scores["score"].between(-1e-6, 1 + 1e-6).all()
    ident = pd.read_csv(out / "identifiability.csv")
    assert len(ident) == len(ALEXNET_LAYERS)
    units = pd.read_csv(out / "target_units.csv")
    assert list(units["target_layer"]) == ALEXNET_LAYERS
    assert (units["n_kept"] <= units["n_units"]).all() and (units["n_kept"] > 0).all()
    best = pd.read_csv(out / "best_scores.csv")
    assert len(best) > 0 and set(best["source"]) == {"alexnet"}
    assert "alexnet" in r.stdout  # the summary table / verdict
