"""Verdicts that survive a reviewer: every model sees the same pixels (``preprocess=shared``), and a
trained source of the target's architecture never silently gets the target's own weights."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from idsim import build_model, load_probe_set
from idsim.errors import IdsimError
from idsim.schema import NetworkConfig, RunConfig
from idsim.systems import build_all

ROOT = Path(__file__).resolve().parent.parent


def pixels(model, img) -> np.ndarray:
    """The model's input with its normalisation undone: what it sees, in [0, 1]."""
    x = model.transform(img)
    return (x * torch.tensor(model.std)[:, None, None] + torch.tensor(model.mean)[:, None, None]).numpy()


@pytest.fixture(scope="module")
def image():
    return load_probe_set({"name": "natural", "n_images": 1, "size": 300, "min_crop_frac": 1.0}).image(0).crop((0, 0, 300, 240))


def test_shared_preprocessing_gives_every_model_the_same_pixels(image):
    from idsim.models import model_transform

    models = {n: build_model(n, seed=0) for n in ("resnet18", "vit_base_patch32_224", "mixer_b16_224")}
    seen = {n: pixels(m, image) for n, m in models.items()}
    ref = seen["resnet18"]
    assert ref.shape == (3, 224, 224)
    for name, px in seen.items():
        np.testing.assert_allclose(px, ref, atol=1e-6, err_msg=name)
    # the libraries' own transforms do not: crop fractions, interpolation and normalisation differ
    own = {n: pixels(m, image) for n, m in
           ((n, dataclasses.replace(m, transform=model_transform(m.name, m.library, m.module, m.weights)))
            for n, m in models.items())}
    assert np.abs(own["resnet18"] - own["vit_base_patch32_224"]).max() > 0.05
    assert np.abs(own["resnet18"] - ref).max() > 0.05


def test_a_model_with_another_input_size_sees_a_resize_of_the_same_crop(image):
    from torchvision.transforms import v2 as T

    ref = torch.from_numpy(pixels(build_model("resnet18", seed=0), image))
    bigger = build_model("vit_tiny_patch16_384", seed=0)
    assert bigger.input_size == 384
    expected = T.Resize((384, 384), interpolation=T.InterpolationMode.BILINEAR, antialias=True)(ref).numpy()
    np.testing.assert_allclose(pixels(bigger, image), expected, atol=1e-5)


def test_grayscale_images_become_three_channels():
    from PIL import Image

    gray = Image.fromarray((np.arange(32 * 40).reshape(32, 40) % 256).astype(np.uint8), "L")  # tiny, too
    px = pixels(build_model("alexnet", seed=0), gray)
    assert px.shape == (3, 224, 224)
    np.testing.assert_allclose(px[0], px[2], atol=1e-6)  # the three channels hold the same image


def systems(target: str, sources: list[str], weights: str = "imagenet", **run):
    cfg = RunConfig(target=NetworkConfig(name=target, weights=weights),
                    sources={s: NetworkConfig(name=s, weights=weights) for s in sources}, weights=weights, **run)
    return build_all(cfg)


def test_preprocess_is_in_the_cache_key_and_in_scores(compose_cfg, tmp_path):
    from conftest import TINY
    from idsim.experiment import run_experiment

    a, _ = systems("alexnet", ["alexnet"], weights="random")
    b, _ = systems("alexnet", ["alexnet"], weights="random", preprocess="model")
    assert a.identity()["preprocess"] == "shared" and b.identity()["preprocess"] == "model"
    assert a.identity() != b.identity()
    res = run_experiment(compose_cfg(["target=alexnet", "sources=[alexnet]", "target.layers=[features.4]",
                                      "sources.alexnet.layers=[features.4]", *TINY]), tmp_path)
    assert (res.scores["preprocess"] == "shared").all()


def test_a_trained_source_of_the_target_architecture_gets_another_published_weight_set():
    target, (same, other) = systems("resnet50", ["resnet50", "alexnet"])
    assert target.weights == "imagenet:IMAGENET1K_V2"          # torchvision's default for resnet50
    assert same.weights == "imagenet:IMAGENET1K_V1"            # not the target's
    assert other.weights == "imagenet:IMAGENET1K_V1"           # alexnet's only set
    assert same.columns()["source_weights"] == "imagenet:IMAGENET1K_V1"
    t, (s,) = systems("vit_base_patch32_224", ["vit_base_patch32_224"])  # timm
    assert t.weights != s.weights and s.weights.startswith("imagenet:") and s.weights.endswith("in1k")


def test_no_other_weight_set_stops_before_any_forward_pass():
    with pytest.raises(IdsimError, match="publishes one ImageNet weight set.*identical_weights=true.*"
                                         r"sources\.resnet18\.weights=") as e:
        systems("resnet18", ["resnet18"])
    assert "\n" not in str(e.value)
    target, (same,) = systems("resnet18", ["resnet18"], identical_weights=True)
    assert same.weights == target.weights == "imagenet:IMAGENET1K_V1"


def test_a_named_weight_set_is_checked():
    t, _ = systems("resnet50", ["alexnet"], weights="imagenet:IMAGENET1K_V1")
    assert t.weights == "imagenet:IMAGENET1K_V1"
    with pytest.raises(IdsimError, match="no ImageNet weight set 'V9'; published: IMAGENET1K_V2, IMAGENET1K_V1"):
        systems("resnet50", ["alexnet"], weights="imagenet:V9")


def test_weights_command_lists_both_libraries(capsys):
    from idsim.models import main

    assert main(["weights", "resnet18"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "torchvision\tresnet18\timagenet:IMAGENET1K_V1\t(default: weights=imagenet)" in lines
    assert any(x.startswith("timm\tresnet18\timagenet:a1_in1k") for x in lines)
