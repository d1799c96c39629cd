"""Default layer sets per model family, following the system-identification paper.

- AlexNet, VGG: every ReLU output (``features.1``, ..., ``classifier.4``);
- ResNets: the stem activation and every residual block output (``relu``, ``layer1.0``, ...);
- ViT (torchvision and timm): every encoder block output;
- MLP-Mixer: the token-mixing and channel-mixing MLP outputs of every block;
- any other model: timm's ``feature_info`` stages, or the children of a ``features`` sequence,
  or the top-level children that are not the classifier head.

Every name is a module path as ``model.named_modules()`` gives it, so users can pass their own.
"""
from __future__ import annotations

from torch import nn

_HEADS = {"fc", "classifier", "head", "heads", "head_drop", "fc_norm", "global_pool", "avgpool", "dropout", "flatten",
          "pre_logits", "norm"}


def _relu_paths(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.ReLU)]


def default_layers(module: nn.Module, name: str, library: str) -> list[str]:
    cls = type(module).__name__
    if cls in ("AlexNet", "VGG"):
        return _relu_paths(module)
    if cls == "ResNet" and library == "torchvision":
        blocks = [f"{stage}.{i}" for stage in ("layer1", "layer2", "layer3", "layer4")
                  for i in range(len(getattr(module, stage)))]
        return ["relu", *blocks]
    if cls == "ResNet" and library == "timm":
        blocks = [f"{stage}.{i}" for stage in ("layer1", "layer2", "layer3", "layer4")
                  for i in range(len(getattr(module, stage)))]
        return ["act1", *blocks]
    if cls == "VisionTransformer" and library == "torchvision":
        return [f"encoder.layers.{n}" for n, _ in module.encoder.layers.named_children()]
    if cls == "MlpMixer":
        out = []
        for i in range(len(module.blocks)):
            for sub in ("mlp_tokens", "mlp_channels"):
                if hasattr(module.blocks[i], sub):
                    out.append(f"blocks.{i}.{sub}")
        if out:
            return out
    if hasattr(module, "blocks") and isinstance(module.blocks, (nn.Sequential, nn.ModuleList)) and library == "timm" \
            and cls in ("VisionTransformer", "Eva", "Beit", "Deit", "VisionTransformerDistilled"):
        return [f"blocks.{i}" for i in range(len(module.blocks))]
    known = dict(module.named_modules())
    info = getattr(module, "feature_info", None)
    if info is not None:
        try:
            mods = [d["module"] for d in info] if isinstance(info, list) else list(info.module_name())
        except Exception:
            mods = []
        mods = [m for i, m in enumerate(mods) if m in known and m and m not in mods[:i]]
        if mods:
            return mods
    feats = getattr(module, "features", None)
    if isinstance(feats, nn.Sequential) and len(feats) > 1:
        return [f"features.{n}" for n, _ in feats.named_children()]
    children = [n for n, m in module.named_children()
                if n not in _HEADS and any(True for _ in m.parameters())]
    return children or [n for n, _ in module.named_children()]
