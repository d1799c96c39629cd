"""Model zoo: any torchvision or timm classification model by name.

``build_model("resnet18", weights="random", seed=0)`` returns a :class:`Model` holding the
network in eval mode (in-place operations switched off), its own preprocessing transform and
its default layer set, named by module path (``layer1.0``, ``features.4``, ``blocks.3``...).

Weights:
- ``"random"``: the library's own initialisation, drawn from ``seed`` (the offline default);
- ``"imagenet"``: the library's pretrained weights through its own download and cache
  (``$TORCH_HOME`` for torchvision, the Hugging Face cache for timm);
- a path to a local checkpoint holding a state dict (loaded with ``weights_only=True``).
"""
from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .errors import IdsimError, cli
from .model_names import (LIBRARIES, all_model_names, did_you_mean, resolve_library, timm_models,  # noqa: F401
                          torchvision_models)

SHARED_SIZE = 224          # the common geometry: shorter side resized to 224 px, centre crop 224 x 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS = ("shared", "model")


@dataclass
class Model:
    """A network ready for feature extraction."""

    name: str
    library: str
    weights: str
    seed: int | None
    module: nn.Module
    transform: Callable             # PIL image -> the model's input tensor (see ``preprocess``)
    default_layers: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = IMAGENET_MEAN   # the normalisation of its inputs
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = SHARED_SIZE            # side of its square input in pixels
    preprocess: str = "shared"

    def finish(self, pixels: torch.Tensor) -> torch.Tensor:
        """``preprocess=shared``: a batch of shared uint8 crops (B, 3, 224, 224), on any device, as this model's input."""
        return finish_shared(pixels, self.input_size, self.mean, self.std)

    @functools.cached_property
    def weights_digest(self) -> str:
        """A short hash of the parameters and buffers (identifies the weights whatever their origin)."""
        return _state_dict_digest(self.module)

    @property
    def architecture(self) -> str:
        """The architecture, used to decide which source matches the target."""
        return f"{self.library}:{self.name}"

    @property
    def identity(self) -> str:
        """Library, name, weights and seed: what seeds this model's random projections (so that the target and a
        source of the same architecture never share projection matrices, and their errors stay independent)."""
        return f"{self.library}:{self.name}:{self.weights}:{self.seed}"

    def layer_names(self) -> list[str]:
        """Every named submodule (the names usable in ``layers=[...]``)."""
        return [n for n, _ in self.module.named_modules() if n]

    def resolve_layers(self, layers=None) -> list[str]:
        """The layers to record: the default set, or the given module paths (checked)."""
        if layers is None or (isinstance(layers, str) and layers == "default"):
            return list(self.default_layers)
        if isinstance(layers, str):
            layers = [layers]
        layers = [str(x) for x in layers]
        if not layers:
            raise IdsimError(f"{self.name}: empty layer list; give module paths or leave layers unset for the default set")
        known = dict(self.module.named_modules())
        for layer in layers:
            if layer not in known or not layer:
                close = difflib.get_close_matches(layer, list(known), n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise IdsimError(
                    f"{self.name} has no layer {layer!r}{hint} (list them: python -m idsim.models layers {self.name})"
                )
        if len(set(layers)) != len(layers):
            raise IdsimError(f"{self.name}: duplicate layer names in {layers}")
        return layers


def _disable_inplace(module: nn.Module) -> None:
    """Switch off in-place activations so a captured output is never overwritten later."""
    for m in module.modules():
        if hasattr(m, "inplace") and isinstance(getattr(m, "inplace"), bool):
            m.inplace = False


def _state_dict_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _import_library(library: str) -> None:
    """The library's models package, imported once per process with the cycle collector quiet."""
    module = "torchvision.models" if library == "torchvision" else "timm"
    if module not in sys.modules:
        from .procs import importing

        with importing():
            importlib.import_module(module)


def _construct(name: str, library: str, pretrained: bool, tag: str | None = None) -> nn.Module:
    _import_library(library)
    if library == "torchvision":
        import torchvision

        weights = (tag or "DEFAULT") if pretrained else None
        return torchvision.models.get_model(name, weights=weights)
    import timm

    return timm.create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained)


# --------------------------------------------------------------------------- published weight sets

def parse_weights(weights: str) -> tuple[str, str | None]:
    """``"imagenet"`` -> (imagenet, None: the library's default set); ``"imagenet:TAG"`` -> (imagenet, TAG)."""
    kind, _, tag = str(weights).partition(":")
    return (kind, tag or None) if kind == "imagenet" else (str(weights), None)


def weight_sets(name: str, library: str) -> list[str]:
    """The ImageNet-1k weight sets a library publishes for ``name``, its default first.

    torchvision: the members of the model's weights enum (``IMAGENET1K_V1``, ``IMAGENET1K_V2``...);
    timm: the pretrained tags whose head is ImageNet-1k (``a1_in1k``, ``augreg_in21k_ft_in1k``...).
    Read from the libraries' registries: nothing is downloaded.
    """
    if library == "torchvision":
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(name)
        except (ValueError, KeyError):
            return []
        default = enum.DEFAULT.name
        return [default] + [w.name for w in enum if w.name != default]
    import timm
    from timm.models import get_pretrained_cfg

    tags = [t.split(".", 1)[1] for t in timm.list_pretrained(f"{name}.*") if "." in t]
    tags = [t for t in tags if t.endswith("in1k")]
    cfg = get_pretrained_cfg(name)
    default = getattr(cfg, "tag", None) if cfg is not None else None
    return ([default] if default in tags else []) + sorted(t for t in tags if t != default)


def resolve_weights(name: str, library: str, weights: str) -> str:
    """``imagenet`` as the concrete set it means (``imagenet:<default tag>``); other values unchanged.

    An unknown tag is an error naming the published ones.
    """
    kind, tag = parse_weights(weights)
    if kind != "imagenet":
        return weights
    sets = weight_sets(name, library)
    if not sets:
        raise IdsimError(f"{name} ({library}) publishes no ImageNet weights; use weights=random or a checkpoint path")
    if tag is None:
        return f"imagenet:{sets[0]}"
    if tag not in sets:
        raise IdsimError(f"{name} ({library}) has no ImageNet weight set {tag!r}; published: {', '.join(sets)}"
                         f" (python -m idsim.models weights {name})")
    return f"imagenet:{tag}"


# --------------------------------------------------------------------------- preprocessing



def input_spec(name: str, library: str, module: nn.Module, weights: str) -> tuple[int, tuple, tuple]:
    """(input size, mean, std) the model expects, from its library's configuration."""
    if library == "torchvision":
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(name)
            kind, tag = parse_weights(weights)
            w = enum[tag] if kind == "imagenet" and tag else enum.DEFAULT
            t = w.transforms()
            return int(t.crop_size[0]), tuple(t.mean), tuple(t.std)
        except Exception:  # models without published weights: the standard ImageNet input
            return SHARED_SIZE, IMAGENET_MEAN, IMAGENET_STD
    import timm

    cfg = timm.data.resolve_data_config({}, model=module)
    return int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"])


def shared_crop() -> Callable:
    """``preprocess=shared``, the part common to every model: PIL image -> uint8 tensor (3, 224, 224).

    The shorter side is resized to 224 px (bilinear, anti-aliased) and the centre 224 x 224 kept;
    grayscale and other modes become RGB. A run computes it once per image for all its models
    (:func:`idsim.features.shared_pixels`).
    """
    from torchvision.transforms import v2 as T

    return T.Compose([T.Lambda(_rgb), T.Resize(SHARED_SIZE, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.CenterCrop(SHARED_SIZE), T.ToImage()])


def finish_shared(x: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """``preprocess=shared``, the part each model does itself, on a uint8 image or batch (on any device):
    to float in [0, 1], a bilinear resize of the same crop when the model's input size differs, its normalisation."""
    from torchvision.transforms.v2 import functional as TF

    x = TF.to_dtype(x, torch.float32, scale=True)
    if size != SHARED_SIZE:
        x = TF.resize(x, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.normalize(x, list(mean), list(std))


def shared_transform(size: int, mean, std) -> Callable:
    """``preprocess=shared``: every model sees the same pixels.

    Each image is brought once to a common geometry (:func:`shared_crop`: shorter side resized to
    224 px with bilinear anti-aliased interpolation, centre crop 224 x 224); a model then applies
    only what it must (:func:`finish_shared`): a bilinear resize of that same crop when its input
    size differs, and its own normalisation.
    """
    crop = shared_crop()
    return lambda img: finish_shared(crop(img), size, mean, std)


def _rgb(img):
    return img if getattr(img, "mode", "RGB") == "RGB" else img.convert("RGB")


def model_transform(name: str, library: str, module: nn.Module, weights: str) -> Callable:
    """``preprocess=model``: the library's full eval transform (its resize, crop fraction, interpolation), as Brain-Score."""
    if library == "torchvision":
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(name)
            kind, tag = parse_weights(weights)
            return (enum[tag] if kind == "imagenet" and tag else enum.DEFAULT).transforms()
        except Exception:  # models without published weights: the standard ImageNet eval transform
            from torchvision.transforms import v2 as T

            return T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224), T.ToImage(),
                              T.ToDtype(torch.float32, scale=True), T.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))])
    import timm

    cfg = timm.data.resolve_data_config({}, model=module)
    return timm.data.create_transform(**cfg)


def _offline_hint(name: str, library: str) -> str:
    if library == "torchvision":
        cache = os.environ.get("TORCH_HOME", "~/.cache/torch")
        where = f"torchvision's cache ({cache}/hub/checkpoints)"
    else:
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        where = f"the Hugging Face cache ({cache})"
    return (
        f"could not load ImageNet weights for {name} ({library}): no download possible and none in {where}; "
        f"on a machine with internet run `python -m idsim.models download {name}` and copy the cache here "
        f"(or point TORCH_HOME/HF_HOME at it), pass a local checkpoint with weights=/path/to/state_dict.pt, "
        f"or use weights=random"
    )


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``timeout`` seconds (name lookup included)."""
    import socket
    import threading
    from urllib.parse import urlparse

    u = urlparse(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((u.hostname, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=connect, daemon=True)  # a hanging name lookup cannot hold the run
    t.start()
    t.join(timeout + 1)
    return bool(ok)


def pretrained_cached(name: str, library: str, tag: str | None = None) -> tuple[bool, str | None]:
    """(whether the library's ImageNet weights of ``name`` (set ``tag``, default the library's) are in its local
    cache, the URL they come from)."""
    if library == "torchvision":
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(name)
            url = (enum[tag] if tag else enum.DEFAULT).url
        except Exception:  # no published weights
            return False, None
        return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file(), url
    import timm.models

    cfg = timm.models.get_pretrained_cfg(f"{name}.{tag}" if tag else name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return False, None
    if cfg.file:
        return Path(cfg.file).is_file(), None
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for fname in filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            if isinstance(try_to_load_from_cache(repo, fname, revision=revision or None), str):
                return True, constants.ENDPOINT
        return False, constants.ENDPOINT
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)).is_file(), cfg.url


def check_pretrained(name: str, library: str, tag: str | None = None) -> bool:
    """Before any forward pass: ImageNet weights are cached (True), or can be downloaded now (False).

    Otherwise one line, at once: no 60 s of hub retries when there is no network.
    """
    cached, url = pretrained_cached(name, library, tag)
    if cached:
        return True
    if url is None:
        raise IdsimError(f"{name} ({library}) has no pretrained weights (no ImageNet weights to load); use weights=random"
                         f" or a checkpoint path")
    if not _reachable(url):
        raise IdsimError(_offline_hint(name, library))
    return False


@contextlib.contextmanager
def _hub_offline():
    """Hugging Face hub calls read the local cache only (no HEAD requests, no retries) inside the block."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def read_state_dict(path: Path, name: str) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (``weights_only``: a pickle cannot run code), unwrapped and without DDP prefixes."""
    if not path.is_file():
        raise IdsimError(f"checkpoint {str(path)!r} for {name} not found; weights must be random, imagenet or an existing file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickled code, ...
        raise IdsimError(f"cannot read checkpoint {str(path)!r} as a state dict ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    for key in ("state_dict", "model", "model_state_dict"):  # common wrappers
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise IdsimError(f"checkpoint {str(path)!r} does not hold a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel / DDP
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def match_state_dict(module: nn.Module, obj: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Raise one line when a state dict's keys or shapes differ from the module's (works on the meta device)."""
    own = module.state_dict()
    missing = [k for k in own if k not in obj]
    unexpected = [k for k in obj if k not in own]
    shape = [k for k in own if k in obj and tuple(own[k].shape) != tuple(obj[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])}{', ...' if len(unexpected) > 3 else ''})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} shape mismatches ({k}: {tuple(obj[k].shape)} vs {tuple(own[k].shape)})")
        raise IdsimError(f"checkpoint {str(path)!r} does not match {name}: " + "; ".join(parts))


def _load_checkpoint(module: nn.Module, path: Path, name: str) -> None:
    obj = read_state_dict(path, name)
    match_state_dict(module, obj, path, name)
    module.load_state_dict(obj, strict=True)


def meta_module(name: str, library: str) -> nn.Module | None:
    """The network without weights (meta device: no memory, no initialisation), or None if it cannot be built so."""
    try:
        with torch.device("meta"):
            return _construct(name, library, pretrained=False)
    except Exception:  # some constructors compute at init
        return None


def build_model(name: str, weights: str = "random", seed: int | None = 0, library: str = "auto",
                preprocess: str = "shared") -> Model:
    """Build a model by name.

    ``weights``: ``random`` (seeded), ``imagenet`` (the library's default ImageNet set) or
    ``imagenet:<set>`` (``python -m idsim.models weights NAME`` lists them), or a checkpoint path.
    ``preprocess``: ``shared`` (default: every model sees the same pixels; see
    :func:`shared_transform`) or ``model`` (the library's own eval transform). The model's
    ``transform`` maps a PIL image to its input tensor; ``mean`` and ``std`` are its normalisation.

    >>> m = build_model("alexnet", weights="random", seed=1)
    >>> m.default_layers[:2]
    ['features.1', 'features.4']
    """
    library = resolve_library(name, library)
    if preprocess not in PREPROCESS:
        raise IdsimError(f"preprocess={preprocess!r}; valid: {', '.join(PREPROCESS)}")
    weights = str(weights)
    if weights == "random":
        if seed is None:
            raise IdsimError(f"{name}: weights=random needs an integer seed")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            module = _construct(name, library, pretrained=False)
    elif parse_weights(weights)[0] == "imagenet":
        weights = resolve_weights(name, library, weights)
        tag = parse_weights(weights)[1]
        cached = check_pretrained(name, library, tag)
        try:
            with torch.random.fork_rng(devices=[]), (_hub_offline() if cached else contextlib.nullcontext()):
                module = _construct(name, library, pretrained=True, tag=tag)
        except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError; hub errors too
            if isinstance(e, RuntimeError) and "Error(s) in loading state_dict" in str(e):
                raise
            if "no pretrained weights" in str(e).lower():
                raise IdsimError(f"{name} ({library}) has no pretrained weights (no ImageNet weights to load); use weights=random or a"
                                 f" checkpoint path") from e
            raise IdsimError(_offline_hint(name, library)) from e
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0 if seed is None else int(seed))  # only for buffers not in the checkpoint
            module = _construct(name, library, pretrained=False)
        _load_checkpoint(module, Path(os.path.expanduser(weights)), name)
    module.eval()
    module.requires_grad_(False)
    _disable_inplace(module)
    from .layers import default_layers

    size, mean, std = input_spec(name, library, module, weights)
    transform = shared_transform(size, mean, std) if preprocess == "shared" else \
        model_transform(name, library, module, weights)
    return Model(
        name=name,
        library=library,
        weights=weights,
        seed=None if weights.startswith("imagenet") else seed,
        module=module,
        transform=transform,
        default_layers=default_layers(module, name, library),
        mean=mean,
        std=std,
        input_size=size,
        preprocess=preprocess,
    )


def download(name: str, library: str = "auto") -> str:
    """Fetch a model's pretrained weights into the library's cache (needs internet)."""
    library = resolve_library(name, library)
    _construct(name, library, pretrained=True)
    return library


@cli
def main(argv: list[str] | None = None) -> int:
    """``python -m idsim.models list | layers NAME | weights NAME | download NAME``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m idsim.models", description=main.__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="model names (torchvision's, then timm's)")
    ls.add_argument("pattern", nargs="?", default=None, help="substring filter")
    la = sub.add_parser("layers", help="a model's default layers and every module path")
    la.add_argument("name")
    la.add_argument("--library", default="auto")
    la.add_argument("--all", action="store_true", help="list every module path, not only the default set")
    dl = sub.add_parser("download", help="pre-download ImageNet weights into the library cache")
    dl.add_argument("names", nargs="+")
    ws = sub.add_parser("weights", help="the ImageNet weight sets an architecture has in torchvision and timm")
    ws.add_argument("name")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for lib, names in (("torchvision", torchvision_models()), ("timm", timm_models())):
            for n in names:
                if a.pattern is None or a.pattern in n:
                    print(f"{lib}\t{n}")
    elif a.cmd == "layers":
        m = build_model(a.name, weights="random", seed=0, library=a.library)
        names = m.layer_names() if a.all else m.default_layers
        for n in names:
            mark = "*" if a.all and n in m.default_layers else ""
            print(f"{n}{mark}")
    elif a.cmd == "weights":
        found = False
        for lib, names in (("torchvision", torchvision_models()), ("timm", timm_models())):
            if a.name in names:
                sets = weight_sets(a.name, lib)
                found = True
                for i, tag in enumerate(sets):
                    print(f"{lib}\t{a.name}\timagenet:{tag}" + ("\t(default: weights=imagenet)" if i == 0 else ""))
                if not sets:
                    print(f"{lib}\t{a.name}\t(no ImageNet weights published)")
        if not found:
            resolve_library(a.name)  # the one-line error with close names
    else:
        for n in a.names:
            lib = download(n)
            print(f"downloaded {n} ({lib})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
