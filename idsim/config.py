"""Hydra configuration: model config groups, and one-line errors for unknown names.

Every torchvision and timm classification model is registered in Hydra's ConfigStore under
the ``target`` and ``sources`` groups, so ``target=convnext_tiny`` or
``sources=[alexnet,deit_small_patch16_224]`` work for any model the libraries know. The
``dataset`` and ``metric`` groups are YAML files under ``conf/``.

Hydra's own message for an unknown option lists every option over many lines (1,400 for the
model groups); :func:`check_overrides` reads the command line first and answers an unknown
name with one line that names the closest valid ones.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from hydra.core.config_store import ConfigStore

from .errors import IdsimError
from .models import all_model_names, did_you_mean

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MODEL_GROUPS = ("target", "sources")
FILE_GROUPS = ("dataset", "metric")


def model_node(name: str) -> dict:
    """The config of one model: library name, weights (default: the top-level ``weights``), seed, layers."""
    return {
        "name": name,
        "library": "auto",      # auto: torchvision first, then timm
        "weights": "${weights}",  # random | imagenet | /path/to/state_dict.pt
        "seed": None,           # null: target uses `seed`, sources `seed + 1`
        "layers": None,         # null: the family's default layers; or a list of module paths
    }


_registered = False


def register_models() -> None:
    """Register every model name under the ``target`` and ``sources`` config groups (once)."""
    global _registered
    if _registered:
        return
    cs = ConfigStore.instance()
    for name in all_model_names():
        cs.store(group="target", name=name, node=model_node(name))
        cs.store(group="sources", name=name, node={name: model_node(name)})
    _registered = True


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    if group in MODEL_GROUPS:
        return all_model_names()
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _leaves(value) -> list:
    """Every option name in an override value (plain, list, or a sweep of either)."""
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _leaves(v)]
    if hasattr(value, "list"):  # ChoiceSweep
        return [x for v in value.list for x in _leaves(v)]
    return [value]


def check_overrides(overrides: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise :class:`IdsimError` for an unknown option of a config group on the command line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        # overrides are key=value (or ~key); flags such as `--cfg job` and their values are Hydra's
        parsed = OverridesParser.create().parse_overrides(
            [o for o in overrides if not o.startswith("-") and ("=" in o or o.startswith("~"))])
    except Exception:
        return  # Hydra reports syntax errors itself
    groups = {g: None for g in (*MODEL_GROUPS, *FILE_GROUPS)}
    for o in parsed:
        key = o.key_or_group
        if key not in groups or o.is_delete():
            continue
        if key == "target" and isinstance(o.value(), (list, tuple)):
            raise IdsimError(f"target takes one model, got a list {o.value()}; to run several targets, sweep them:"
                             f" python run.py -m target=a,b")
        options = group_options(key, conf_dir)
        if not options:  # configs not found next to the package (not an editable install): let Hydra judge
            continue
        for leaf in _leaves(o.value()):
            if not isinstance(leaf, str) or leaf not in options:
                if key in MODEL_GROUPS:
                    raise IdsimError(f"unknown {key} model {leaf!r}: not a torchvision or timm classification model"
                                     f"{did_you_mean(str(leaf))}")
                close = difflib.get_close_matches(str(leaf), options, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise IdsimError(f"unknown {key} {leaf!r}{hint}; valid: {', '.join(options)}")
