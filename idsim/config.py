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
        parser = OverridesParser.create()
        for o in overrides:
            try:
                parser.parse_overrides([o])
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise IdsimError(f"cannot parse the override {o!r}: {first} (lists are [a,b], sweeps a,b with -m;"
                                 f" quote values with spaces or special characters)") from None
        raise
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
    _check_keys(parsed, conf_dir)


def _check_keys(parsed, conf_dir: Path) -> None:
    """Compose the config with the first value of every override: unknown keys become one line.

    Hydra's own message for ``unitratio=0.5`` is a multi-line traceback-like report; here it is
    ``unknown config key 'unitratio' (did you mean unit_ratio?)``. Keys under ``hydra.`` and
    ``+``/``++`` additions are Hydra's business and left alone.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    plain, choices = [], []
    for o in parsed:
        key = o.key_or_group
        if key in (*MODEL_GROUPS, *FILE_GROUPS) and not o.is_delete():
            v = o.value()
            v = (v.list[0] if v.list else None) if hasattr(v, "list") else v
            if isinstance(v, (list, tuple)):
                choices.append(f"{key}=[{','.join(str(x) for x in v)}]")
            elif v is not None:
                choices.append(f"{key}={v}")
        if o.is_delete() or o.is_add() or o.is_force_add() or key.startswith("hydra") or o.package:
            continue
        value = o.value()
        if hasattr(value, "list"):      # a sweep a,b,c: the first value stands for all
            value = value.list[0] if value.list else None
        elif o.is_sweep_override():     # range/interval sweeps: keys are what matter
            value = None
        plain.append((key, value))
    if not plain or not conf_dir.is_dir():
        return
    register_models()
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            cfg = compose("config", choices)
    except HydraException:
        return
    for key, _ in plain:
        head = key.split(".")[0]
        if head in (*MODEL_GROUPS, *FILE_GROUPS) and "." not in key:
            continue  # group choices were checked above
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__" and not _is_model_subkey(cfg, key):
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            options = [str(k) for k in node.keys()] if hasattr(node, "keys") else []
            close = difflib.get_close_matches(leaf, options, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join((parent + '.' if parent else '') + c for c in close)}?)" if close else ""
            raise IdsimError(f"unknown config key {key!r}{hint}; add it with +{key}=... only if you mean a new key")


def _is_model_subkey(cfg, key: str) -> bool:
    """``sources.<model>.layers`` for a model chosen on the same command line is not in the default config."""
    parts = key.split(".")
    return parts[0] == "sources" and len(parts) == 3 and parts[2] in ("name", "library", "weights", "seed", "layers")
