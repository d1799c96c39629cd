"""Every bad input is refused before any forward pass, with one line saying what is valid.

The command line is checked against the schema before Hydra composes anything
(:func:`idsim.config.check_overrides`); a composed config or a plain mapping from Python is
validated by :func:`idsim.schema.load`. Both use the same field checks.
"""
import pytest
from omegaconf import OmegaConf

from conftest import TINY
from idsim import schema
from idsim.config import check_overrides
from idsim.datasets import load_probe_set
from idsim.errors import IdsimError
from idsim.systems import build_all


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("override, expect", [
    (["target=vgg111"], "did you mean vgg11"),
    (["sources=[alexnet,resnet1800]"], "resnet1800"),
    (["dataset=nope"], "valid: .*shapes"),
    (["metric=ckaa"], "did you mean cka"),
    (["-m", "target=vgg11,bogus"], "bogus"),
    (["logger=foo"], "valid: none, wandb"),
    (["experiment=nope"], "unknown experiment"),
    (["target=[alexnet,vgg11]"], "target takes one model"),
    (["sources=[alexnet,alexnet]"], "sources lists alexnet twice"),
])
def test_unknown_or_bad_group_options(override, expect):
    with pytest.raises(IdsimError, match=expect) as e:
        check_overrides(override)
    one_line(e)


def test_known_options_pass():
    check_overrides(["target=vgg11", "metric=cka", "sources=[alexnet,vgg11]", "target=deit_tiny_patch16_224",
                     "dataset=shapes", "metric=regression_loo", "unit_ratio=0.5", "extraction.batch_size=4",
                     "metric.cv=5", "sources.vgg11.seed=3", "target.layers=[features.1]", "dataset.n_images=10",
                     "logger.mode=offline", "cache.enabled=false", "-m", "seed=0,1", "hydra.run.dir=/tmp/x"])


@pytest.mark.parametrize("override, expect", [
    ("unit_ratio=1.5", r"unit_ratio=1.5; valid: a number in \(0, 1\]"),
    ("unit_ratio=0", r"unit_ratio=0; valid: a number in \(0, 1\]"),
    ("unit_ratio=abc", r"unit_ratio='abc': wrong type; valid: a number in \(0, 1\]"),
    ("extraction.batch_size=0", "extraction.batch_size=0; valid: an integer >= 1"),
    ("seed=-1", r"seed=-1; valid: an integer in \[0, 4294967295\]"),
    ("seed=4294967296", r"seed=4294967296; valid: an integer in \[0, 4294967295\]"),  # the folds' generator's bound
    ("target.seed=4294967296", r"target.seed=4294967296; valid: null .* or an integer in \[0, 4294967295\]"),
    ("weights=/no/such/file.pt", "valid: random, imagenet .*existing checkpoint"),
    ("target.library=keras", "valid: auto .*torchvision, timm"),
    ("target.seed=abc", "target.seed='abc': wrong type"),
    ("metric.debiased=maybe", "metric.debiased='maybe': wrong type; valid: true or false"),
    ("unitratio=0.5", r"unknown config key 'unitratio' \(did you mean unit_ratio\?\)"),
    ("batch_size=16", r"did you mean extraction.batch_size\?"),
    ("wandb.mode=offline", "unknown config key 'wandb.mode'"),
    ("metric.cv=5", r"unknown config key 'metric.cv'.*valid keys of metric: name, kind, debiased"),
    ("+metric.bogus=1", "unknown config key 'metric.bogus'"),
    ("extraction.device=gpu", "extraction.device='gpu'; valid: auto"),
    ("sources.vgg11.seed=1", "'vgg11' is not among the sources"),
    ("logger.mode=live", "valid: offline"),
])
def test_bad_keys_and_values_on_the_command_line(override, expect):
    with pytest.raises(IdsimError, match=expect) as e:
        check_overrides(["target=alexnet", "sources=[alexnet]", "metric=cka", override])
    one_line(e)


@pytest.mark.parametrize("override, expect", [
    ("metric.cv=1", "metric.cv=1; valid: loo, gcv or an integer k >= 2"),
    ("metric.alphas=[-1]", "metric.alphas=.*valid: a non-empty list of positive numbers"),
    ("metric.srp_dim=-5", "metric.srp_dim=-5"),
    ("metric.precision=half", "valid: float64 or float32"),
])
def test_bad_metric_options_on_the_command_line(override, expect):
    with pytest.raises(IdsimError, match=expect) as e:
        check_overrides(["metric=regression", override])
    one_line(e)


def test_a_sweep_checks_every_value_and_every_chosen_metric():
    with pytest.raises(IdsimError, match="unit_ratio=2"):
        check_overrides(["-m", "unit_ratio=0.5,2"])
    with pytest.raises(IdsimError, match="unknown config key 'metric.cv'"):  # not a key of cka
        check_overrides(["-m", "metric=regression,cka", "metric.cv=5"])


@pytest.mark.parametrize("change, expect", [
    ({"unit_ratio": 1.5}, r"unit_ratio=1.5; valid: a number in \(0, 1\]"),
    ({"seed": -1}, "seed=-1; valid"),
    ({"sources": {}}, "no source models"),
    ({"extraction": {"batch_size": 0}}, "extraction.batch_size=0"),
    ({"extraction": {"batch_sise": 4}}, r"unknown config key 'extraction.batch_sise' \(did you mean extraction.batch_size\?\)"),
    ({"metric": {"kind": "cka", "debiased": "maybe"}}, "metric.debiased='maybe': wrong type"),
    ({"metric": {"kind": "regression", "cv": 1}}, "metric.cv=1; valid"),
    ({"metric": {"kind": "nope"}}, "metric.kind='nope'; valid: cka, regression, rsa"),
    ({"target": {"name": "alexnet", "library": "keras"}}, "target.library='keras'"),
    ({"logger": {"kind": "wandb", "mode": "live"}}, "logger.mode='live'"),
])
def test_load_validates_mappings_from_python(change, expect):
    cfg = {"target": {"name": "alexnet"}, "sources": {"alexnet": {"name": "alexnet"}},
           "dataset": {"name": "shapes", "n_images": 6}, "metric": {"kind": "cka"}}
    cfg.update(change)
    with pytest.raises(IdsimError, match=expect) as e:
        schema.load(cfg)
    one_line(e)


def test_load_fills_defaults_once(compose_cfg):
    run = schema.load(compose_cfg(["target=alexnet", "sources=[alexnet]", *TINY]))
    assert run.extraction.batch_size == 6 and run.unit_ratio == 1.0 and run.seed == 0
    assert run.metric.kind == "cka" and run.metric.debiased is False
    assert run.target.weights == "random" and run.sources["alexnet"].seed is None
    assert isinstance(run.logger, schema.NoLogger)
    plain = schema.load({"target": {"name": "alexnet"}, "sources": {"alexnet": {"name": "alexnet"}},
                         "dataset": {"name": "shapes"}, "metric": {"kind": "regression"}})
    assert plain.metric.cv == 10 and plain.extraction.batch_size == 32 and plain.target.weights == "random"


def test_a_composed_config_is_struct(compose_cfg):
    cfg = compose_cfg(["target=alexnet", "sources=[alexnet]", *TINY])
    with pytest.raises(Exception):
        cfg.metric.bogus = 1
    with pytest.raises(Exception):
        cfg.extraction.batch_size = "many"
    assert OmegaConf.get_type(cfg.metric).__name__ == "Options"


@pytest.mark.parametrize("overrides, expect", [
    (["target.layers=[no.such.layer]"], "has no layer 'no.such.layer'"),
    (["target.layers=[features.1,features.1]"], "listed twice"),
])
def test_bad_layers_are_found_on_the_meta_device(compose_cfg, overrides, expect):
    run = schema.load(compose_cfg(["target=alexnet", "sources=[alexnet]", *TINY, *overrides]))
    target, _ = build_all(run)
    with pytest.raises(IdsimError, match=expect) as e:
        target.prepare()
    one_line(e)


def test_dataset_errors():
    with pytest.raises(IdsimError, match="n_images"):
        load_probe_set({"name": "shapes", "n_images": -3})
    with pytest.raises(IdsimError, match="unknown config key 'dataset.colour'"):
        load_probe_set({"name": "shapes", "n_images": 4, "colour": "red"})
    with pytest.raises(IdsimError, match="valid: .*shapes"):
        load_probe_set({"name": "imagenet2"})
