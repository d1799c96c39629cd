"""Tests for idsim.models: building torchvision / timm models by name, their default layer sets,
seeded random weights, local checkpoints, ImageNet weights without a network, one-line errors
for every bad input, and the ``python -m idsim.models`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from idsim.errors import IdsimError
from idsim.layers import default_layers
from idsim.models import Model, build_model, did_you_mean, resolve_library
from idsim.models import main as models_main

ROOT = Path(__file__).resolve().parents[1]

ALEXNET_LAYERS = ["features.1", "features.4", "features.7", "features.9", "features.11", "classifier.2",
                  "classifier.5"]
RESNET18_LAYERS = ["relu", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0",
                   "layer4.1"]
VGG11_LAYERS = ["features.1", "features.4", "features.7", "features.9", "features.12", "features.14", "features.17",
                "features.19", "classifier.1", "classifier.4"]
VIT_B32_LAYERS = [f"blocks.{i}" for i in range(12)]
MIXER_B16_LAYERS = [f"blocks.{i}.{sub}" for i in range(12) for sub in ("mlp_tokens", "mlp_channels")]
MIXER_S32_LAYERS = [f"blocks.{i}.{sub}" for i in range(8) for sub in ("mlp_tokens", "mlp_channels")]


def one_line(e: pytest.ExceptionInfo | Exception) -> str:
    msg = str(e.value if isinstance(e, pytest.ExceptionInfo) else e)
    assert msg and "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


# ---------------------------------------------------------------------------------------------
# `python -m idsim.models layers resnet18` in a real process: started with the first test so it
# runs while the in-process tests below do (it costs ~6 s of imports); checked at the end.

CLI_JOBS = {
    "layers": ["layers", "resnet18"],
}


@pytest.fixture(scope="module", autouse=True)
def models_cli(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models_cli")
    procs = {}
    for key, args in CLI_JOBS.items():
        out, err = (folder / f"{key}.out").open("w"), (folder / f"{key}.err").open("w")
        procs[key] = (subprocess.Popen([sys.executable, "-m", "idsim.models", *args], cwd=ROOT, stdout=out, stderr=err,
                                       env={**os.environ, "WANDB_MODE": "disabled"}), out, err)

    def result(key: str) -> subprocess.CompletedProcess:
        proc, out, err = procs[key]
        proc.wait(timeout=120)
        out.close(), err.close()
        return subprocess.CompletedProcess(proc.args, proc.returncode, (folder / f"{key}.out").read_text(),
                                           (folder / f"{key}.err").read_text())

    yield result
    for proc, out, err in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close(), err.close()


# ---------------------------------------------------------------------------------------------
# Built models, shared by the tests (building is the expensive part).


@pytest.fixture(scope="module")
def alexnet() -> Model:
    return build_model("alexnet", seed=0)


@pytest.fixture(scope="module")
def resnet18() -> Model:
    return build_model("resnet18", seed=3)


@pytest.fixture(scope="module")
def mixer() -> Model:
    return build_model("mixer_s32_224", seed=0)  # tiny timm model (19 M parameters, < 1 s)


# ---------------------------------------------------------------------------------------------
# Default layers


def test_alexnet_defaults(alexnet):
    assert alexnet.library == "torchvision" and alexnet.architecture == "torchvision:alexnet"
    assert alexnet.default_layers == ALEXNET_LAYERS
    modules = dict(alexnet.module.named_modules())
    assert all(isinstance(modules[n], torch.nn.ReLU) for n in alexnet.default_layers)


def test_resnet18_defaults(resnet18):
    assert resnet18.library == "torchvision"
    assert resnet18.default_layers == RESNET18_LAYERS
    assert set(resnet18.default_layers) <= set(resnet18.layer_names())


def test_timm_mixer_defaults(mixer):
    assert mixer.library == "timm"
    assert mixer.default_layers == MIXER_S32_LAYERS
    assert set(mixer.default_layers) <= set(mixer.layer_names())


@pytest.mark.parametrize("name, library, expected", [
    ("vit_base_patch32_224", "timm", VIT_B32_LAYERS),
    ("deit_tiny_patch16_224", "timm", VIT_B32_LAYERS),
    ("mixer_b16_224", "timm", MIXER_B16_LAYERS),
    ("vgg11", "torchvision", VGG11_LAYERS),
    ("resnet18", "torchvision", RESNET18_LAYERS),
])
def test_paper_model_defaults_on_meta_device(name, library, expected):
    """The paper's models (weightless copies: only the module tree matters)."""
    assert resolve_library(name) == library
    import timm

    with torch.device("meta"):
        module = (timm.create_model(name) if library == "timm" else torchvision.models.get_model(name))
    layers = default_layers(module, name, library)
    assert layers == expected
    assert set(layers) <= {n for n, _ in module.named_modules()}


def test_resolve_layers(resnet18):
    assert resnet18.resolve_layers() == RESNET18_LAYERS
    assert resnet18.resolve_layers("default") == RESNET18_LAYERS
    assert resnet18.resolve_layers(["layer2.1", "fc"]) == ["layer2.1", "fc"]
    assert resnet18.resolve_layers("layer1.0") == ["layer1.0"]
    assert resnet18.resolve_layers() is not resnet18.default_layers  # a copy: callers may not mutate the model


def test_eval_mode_no_grad_no_inplace(alexnet, resnet18, mixer):
    for m in (alexnet, resnet18, mixer):
        assert not m.module.training
        assert not any(p.requires_grad for p in m.module.parameters())
        inplace = [n for n, mod in m.module.named_modules() if getattr(mod, "inplace", False) is True]
        assert inplace == [], f"{m.name}: in-place modules left: {inplace}"
    # torchvision's AlexNet uses ReLU(inplace=True): make sure there was something to switch off
    assert any(getattr(mod, "inplace", None) is False for mod in alexnet.module.modules())


def test_transform_gives_a_model_input(resnet18, mixer):
    from PIL import Image

    img = Image.new("RGB", (300, 260), (120, 30, 200))
    for m in (resnet18, mixer):
        x = m.transform(img)
        assert isinstance(x, torch.Tensor) and x.shape == (3, 224, 224) and x.dtype == torch.float32


# ---------------------------------------------------------------------------------------------
# Seeds and the global RNG


def test_same_seed_same_weights(resnet18):
    again = build_model("resnet18", seed=3)
    assert again.weights_digest == resnet18.weights_digest
    for (k, a), (_, b) in zip(resnet18.module.state_dict().items(), again.module.state_dict().items()):
        assert torch.equal(a, b), k


def test_different_seed_different_weights(resnet18):
    other = build_model("resnet18", seed=4)
    assert other.weights_digest != resnet18.weights_digest
    assert not torch.equal(other.module.conv1.weight, resnet18.module.conv1.weight)


def test_timm_seeded(mixer):
    assert build_model("mixer_s32_224", seed=0).weights_digest == mixer.weights_digest
    assert build_model("mixer_s32_224", seed=1).weights_digest != mixer.weights_digest


def test_random_init_leaves_global_rng_alone(tmp_path, resnet18):
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    build_model("resnet18", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    path = tmp_path / "r18.pt"
    torch.save(resnet18.module.state_dict(), path)
    build_model("resnet18", weights=str(path))
    assert torch.equal(torch.random.get_rng_state(), before)


def test_random_weights_need_a_seed():
    with pytest.raises(IdsimError, match="seed") as e:
        build_model("resnet18", weights="random", seed=None)
    one_line(e)


# ---------------------------------------------------------------------------------------------
# Local checkpoints


def test_checkpoint_round_trip(tmp_path, resnet18):
    sd = resnet18.module.state_dict()
    cases = {
        "plain.pt": sd,
        "wrapped.pt": {"state_dict": sd},
        "model.pt": {"model": sd, "epoch": 3},
        "ddp.pt": {f"module.{k}": v for k, v in sd.items()},
    }
    for fname, obj in cases.items():
        torch.save(obj, tmp_path / fname)
        m = build_model("resnet18", weights=str(tmp_path / fname), seed=0)  # seed 0 != 3: weights come from the file
        assert m.weights_digest == resnet18.weights_digest, fname
        assert m.weights == str(tmp_path / fname)
        assert not m.module.training
        assert not any(getattr(mod, "inplace", False) is True for mod in m.module.modules())


def test_checkpoint_of_another_architecture(tmp_path, alexnet):
    path = tmp_path / "alexnet.pt"
    torch.save(alexnet.module.state_dict(), path)
    with pytest.raises(IdsimError) as e:
        build_model("resnet18", weights=str(path))
    msg = one_line(e)
    assert "does not match resnet18" in msg
    assert "missing keys" in msg and "unexpected keys" in msg
    assert str(path) in msg


def test_checkpoint_shape_mismatch(tmp_path):
    path = tmp_path / "r18_10cls.pt"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), path)
    with pytest.raises(IdsimError) as e:
        build_model("resnet18", weights=str(path))
    msg = one_line(e)
    assert "shape mismatch" in msg and "fc.weight" in msg


def test_corrupt_checkpoint(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(IdsimError) as e:
        build_model("resnet18", weights=str(path))
    msg = one_line(e)
    assert "cannot read checkpoint" in msg and str(path) in msg


@pytest.mark.parametrize("obj", [[1, 2, 3], {"a": 1}, torch.zeros(3)], ids=["list", "dict-of-int", "tensor"])
def test_checkpoint_that_is_not_a_state_dict(tmp_path, obj):
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(IdsimError, match="state dict") as e:
        build_model("resnet18", weights=str(path))
    one_line(e)


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(IdsimError) as e:
        build_model("resnet18", weights=str(path))
    msg = one_line(e)
    assert "not found" in msg and "random" in msg and "imagenet" in msg
    with pytest.raises(IdsimError, match="not found"):
        build_model("resnet18", weights="imagenett")  # a typo of a keyword is read as a path
    with pytest.raises(IdsimError, match="not found"):
        build_model("resnet18", weights=str(tmp_path))  # a folder is not a checkpoint


# ---------------------------------------------------------------------------------------------
# ImageNet weights without a network


def test_imagenet_offline_torchvision(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)  # fail at once, even where there is a network
    with pytest.raises(IdsimError) as e:
        build_model("resnet18", weights="imagenet")
    msg = one_line(e)
    assert "python -m idsim.models download resnet18" in msg
    assert "weights=random" in msg
    assert str(tmp_path / "torch") in msg
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # no partial download left behind


def test_imagenet_offline_timm(tmp_path, monkeypatch):
    """With HF_HUB_OFFLINE the Hugging Face hub fails at once (without it: ~48 s of retries, see report)."""
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(IdsimError) as e:
        build_model("deit_tiny_patch16_224", weights="imagenet")
    msg = one_line(e)
    assert "python -m idsim.models download deit_tiny_patch16_224" in msg and "weights=random" in msg


def test_imagenet_for_model_without_pretrained_weights():
    with pytest.raises(IdsimError) as e:
        build_model("mixer_s32_224", weights="imagenet")
    msg = one_line(e)
    assert "no pretrained weights" in msg.lower() or "no imagenet weights" in msg.lower()
    assert "download" not in msg


# ---------------------------------------------------------------------------------------------
# Names, libraries, layers


def test_resolve_library():
    assert resolve_library("alexnet") == "torchvision"
    assert resolve_library("resnet18") == "torchvision"  # torchvision first, as the papers used it
    assert resolve_library("resnet18", "timm") == "timm"
    assert resolve_library("deit_tiny_patch16_224") == "timm"
    assert resolve_library("vit_base_patch32_224") == "timm"
    assert resolve_library("vit_b_32") == "torchvision"


@pytest.mark.parametrize("name, suggestion", [("resnet1800", "resnet18"), ("vgg111", "vgg11"), ("alexnett", "alexnet")])
def test_unknown_model_suggests(name, suggestion):
    with pytest.raises(IdsimError) as e:
        build_model(name)
    msg = one_line(e)
    assert repr(name) in msg and "did you mean" in msg and suggestion in msg
    assert "python -m idsim.models list" in msg


def test_unknown_model_without_close_match():
    with pytest.raises(IdsimError) as e:
        resolve_library("zzzzqqqq")
    msg = one_line(e)
    assert "zzzzqqqq" in msg and "python -m idsim.models list" in msg


def test_unknown_library():
    with pytest.raises(IdsimError) as e:
        build_model("resnet18", library="keras")
    msg = one_line(e)
    assert "keras" in msg and "auto, torchvision, timm" in msg


def test_model_not_in_the_chosen_library():
    with pytest.raises(IdsimError) as e:
        resolve_library("deit_tiny_patch16_224", "torchvision")
    msg = one_line(e)
    assert "not a torchvision classification model" in msg


def test_model_in_the_other_library_hint():
    with pytest.raises(IdsimError) as e:
        resolve_library("alexnet", "timm")
    msg = one_line(e)
    assert "did you mean alexnet" not in msg
    assert "torchvision" in msg  # should say where alexnet is: library=torchvision or auto


def test_did_you_mean():
    assert "vgg11" in did_you_mean("vgg111")
    assert did_you_mean("zzzz", ["a", "b"]) == ""
    assert "list them all" in did_you_mean("zzzz")


def test_resolve_layers_errors(resnet18):
    with pytest.raises(IdsimError) as e:
        resnet18.resolve_layers(["nope"])
    msg = one_line(e)
    assert "'nope'" in msg and "python -m idsim.models layers resnet18" in msg
    with pytest.raises(IdsimError, match="did you mean") as e:
        resnet18.resolve_layers(["layer1.O"])
    assert "layer1.0" in one_line(e)
    with pytest.raises(IdsimError, match="duplicate") as e:
        resnet18.resolve_layers(["layer1.0", "layer2.0", "layer1.0"])
    one_line(e)
    with pytest.raises(IdsimError, match="empty layer list"):
        resnet18.resolve_layers([])
    with pytest.raises(IdsimError, match="no layer ''"):
        resnet18.resolve_layers([""])  # the root module has the empty path: not a layer


# ---------------------------------------------------------------------------------------------
# `python -m idsim.models` (in process: the same main(); in real processes at the end)


def test_main_layers(capsys):
    assert models_main(["layers", "resnet18"]) == 0
    assert capsys.readouterr().out.split() == RESNET18_LAYERS


def test_main_layers_all(capsys):
    assert models_main(["layers", "alexnet", "--all"]) == 0
    lines = capsys.readouterr().out.split()
    assert [x[:-1] for x in lines if x.endswith("*")] == ALEXNET_LAYERS
    assert "features" in lines and "classifier.6" in lines


def test_main_list(capsys):
    assert models_main(["list", "vgg1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "torchvision\tvgg11" in lines and "timm\tvgg11" in lines and "torchvision\tvgg19_bn" in lines
    assert all("vgg1" in line.split("\t")[1] for line in lines)


def test_main_unknown_model(capsys):
    assert models_main(["layers", "resnet1800"]) == 2
    cap = capsys.readouterr()
    err = [x for x in cap.err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith("idsim: error: ") and "resnet18" in err[0]
    assert cap.out == ""


def test_cli_layers(models_cli):
    r = models_cli("layers")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == RESNET18_LAYERS
    assert "Traceback" not in r.stderr


def test_cli_has_clean_stderr(models_cli):
    r = models_cli("layers")
    assert r.stderr.strip() == ""
