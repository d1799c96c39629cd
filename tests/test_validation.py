"""Every bad input is refused before any forward pass, with one line saying what is valid."""
import pytest

from conftest import TINY
from idsim.config import check_overrides
from idsim.datasets import load_probe_set
from idsim.errors import IdsimError
from idsim.experiment import ExperimentSpec


@pytest.mark.parametrize("override, expect", [
    (["target=vgg111"], "did you mean vgg11"),
    (["sources=[alexnet,resnet1800]"], "resnet1800"),
    (["dataset=nope"], "valid: .*shapes"),
    (["metric=ckaa"], "did you mean cka"),
    (["-m", "target=vgg11,bogus"], "bogus"),
])
def test_unknown_group_options(override, expect):
    with pytest.raises(IdsimError, match=expect) as e:
        check_overrides(override)
    assert "\n" not in str(e.value)


def test_known_options_pass():
    check_overrides(["target=vgg11", "metric=cka", "sources=[alexnet,vgg11]", "target=deit_tiny_patch16_224",
                     "dataset=shapes", "metric=regression_loo", "unit_ratio=0.5"])


@pytest.mark.parametrize("override, expect", [
    ("unit_ratio=1.5", r"unit_ratio must be a number in \(0, 1\]"),
    ("unit_ratio=0", r"unit_ratio must be a number in \(0, 1\]"),
    ("unit_ratio=abc", r"unit_ratio must be a number in \(0, 1\]"),
    ("batch_size=0", "batch_size must be an integer >= 1"),
    ("seed=-1", "seed must be an integer >= 0"),
    ("weights=/no/such/file.pt", "not random, imagenet or an existing checkpoint"),
    ("logger=foo", "valid: wandb, none"),
    ("sources=[]", "no source models"),
    ("target.layers=[no.such.layer]", "has no layer 'no.such.layer'"),
    ("target.library=keras", "valid: auto, torchvision, timm"),
    ("metric.debiased=maybe", "valid: true or false"),
])
def test_bad_values(compose_cfg, override, expect):
    cfg = compose_cfg(["target=alexnet", "sources=[alexnet]", *TINY, override])
    with pytest.raises(IdsimError, match=expect) as e:
        ExperimentSpec.from_config(cfg)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("override, expect", [
    ("metric.cv=1", "metric.cv=1"),
    ("metric.alphas=[-1]", "alphas must be positive"),
    ("metric.srp_dim=-5", "metric.srp_dim"),
    ("+metric.bogus=1", "unknown option"),
])
def test_bad_metric_options(compose_cfg, override, expect):
    cfg = compose_cfg(["target=alexnet", "sources=[alexnet]", "metric=regression", *TINY, override])
    with pytest.raises(IdsimError, match=expect):
        ExperimentSpec.from_config(cfg)


def test_dataset_errors():
    with pytest.raises(IdsimError, match="n_images must be a positive integer"):
        load_probe_set({"name": "shapes", "n_images": -3})
    with pytest.raises(IdsimError, match="unknown option"):
        load_probe_set({"name": "shapes", "n_images": 4, "colour": "red"})
    with pytest.raises(IdsimError, match="valid: .*shapes"):
        load_probe_set({"name": "imagenet2"})
