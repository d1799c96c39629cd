"""The config is the schema: dataclass structured configs, their checks, and one place that validates them.

Every option idsim reads is a field of a dataclass here or in the module it configures (a metric's
``Options`` in ``idsim/metrics/<kind>.py``, a probe set's in ``idsim/datasets/``). Each field
carries its default (written nowhere else), its type (Hydra's struct mode rejects unknown keys
and values of the wrong type while composing) and, where a type is not enough, a check and the
words that say what is valid (:func:`opt`).

:func:`load` turns a composed config (or a plain mapping, from Python) into validated dataclass
objects; :func:`check_value` checks one ``key=value`` before Hydra composes anything (the command
line pre-check of :mod:`idsim.config`). Both raise :class:`~idsim.errors.IdsimError` with one line
that names the key and what is valid. Nothing else in idsim validates config values.

ConfigStore entries (:func:`register`): ``base_config`` (the run), ``extraction/default``,
``logger/wandb``, ``logger/none``, and ``metric/base_<kind>`` / ``dataset/base_<name>`` for each
metric family and probe set, which the YAML files of ``conf/metric`` and ``conf/dataset`` extend.
Model configs (``target=vgg11``) are served lazily by idsim's Hydra config source
(``hydra_plugins/idsim_source``), so the ~1,450 model names cost nothing at start-up.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional

from omegaconf import MISSING, SI, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from .errors import IdsimError

# --------------------------------------------------------------------------- checks


def opt(default: Any = MISSING, valid: str = "", check: Callable[[Any], bool] | None = None,
        factory: Callable[[], Any] | None = None) -> Any:
    """A config field: its default, a check beyond its type, and what is valid (shown in errors)."""
    meta = {"valid": valid, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def is_int(v: Any, minimum: int | None = None) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and (minimum is None or v >= minimum)


def is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda v: is_int(v, minimum)


#: the largest seed: NumPy's legacy seeding (idsim's shuffled k folds, scikit-learn's splitters) takes no larger one
SEED_MAX = 2**32 - 1
SEED_VALID = f"an integer in [0, {SEED_MAX}]"


def is_seed(v: Any) -> bool:
    return is_int(v, 0) and v <= SEED_MAX


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def positive(v: Any) -> bool:
    return is_number(v) and v > 0


def fraction(v: Any) -> bool:
    """A number in (0, 1]."""
    return is_number(v) and 0 < v <= 1


def one_of(*values: Any) -> Callable[[Any], bool]:
    return lambda v: any(type(v) is type(x) and v == x for x in values)


def auto_or_int(minimum: int = 1) -> Callable[[Any], bool]:
    return lambda v: v == "auto" or is_int(v, minimum)


def show(value: Any) -> str:
    """A value as the user would type it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


class Checked:
    """Base of idsim's config dataclasses: :meth:`validate` runs every field's check, then :meth:`check`."""

    def check(self, key: str) -> None:
        """Checks across fields (override); ``key`` is this node's path, e.g. ``metric``."""

    def validate(self, key: str = "") -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            path = f"{key}.{f.name}" if key else f.name
            test = f.metadata.get("check")
            if test is not None and not test(value):
                raise IdsimError(f"{path}={show(value)}; valid: {f.metadata.get('valid') or 'see the README'}")
            for sub_key, sub in _children(path, value):
                sub.validate(sub_key)
        self.check(key)


def _children(path: str, value: Any):
    if isinstance(value, Checked):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, Checked):
                yield f"{path}.{k}", v


def fail(key: str, value: Any, valid: str) -> None:
    raise IdsimError(f"{key}={show(value)}; valid: {valid}")


# --------------------------------------------------------------------------- the run's nodes


WEIGHTS_VALID = ("random, imagenet (the library's default ImageNet set), imagenet:<set> (python -m idsim.models weights"
                 " NAME) or the path of an existing checkpoint file (a state dict)")


def _weights_ok(v: Any) -> bool:
    return isinstance(v, str) and (v in ("random", "imagenet") or (v.startswith("imagenet:") and len(v) > 9)
                                   or Path(v).expanduser().is_file())


@dataclass
class SystemConfig(Checked):
    """What yields responses on the probe images: a network, a recording, a baseline (``kind``)."""

    name: str = MISSING
    kind: str = MISSING


@dataclass
class NetworkConfig(SystemConfig):
    """A torchvision or timm network, as the target or a source."""

    kind: str = "network"
    library: str = opt("auto", "auto (torchvision first, then timm), torchvision, timm",
                       one_of("auto", "torchvision", "timm"))
    weights: str = opt(SI("${weights}"), WEIGHTS_VALID, _weights_ok)
    seed: Optional[int] = opt(None, f"null (the target uses `seed`, sources `seed + 1`) or {SEED_VALID}",
                              optional(is_seed))
    layers: Optional[List[str]] = opt(None, "null (the family's default layers) or a non-empty list of module paths"
                                            " (python -m idsim.models layers NAME --all)",
                                      lambda v: v is None or len(v) > 0)


@dataclass
class ExtractionConfig(Checked):
    """How features are extracted (``extraction.<key>=...``); none of it changes what is computed."""

    batch_size: int = opt(32, "an integer >= 1 (images per forward pass)", int_at_least(1))
    num_workers: int = opt(0, "an integer >= 0 (image-decoding worker processes)", int_at_least(0))
    device: str = opt("auto", "auto (CUDA when present), cpu, cuda or cuda:N",
                      lambda v: v in ("auto", "cpu", "cuda") or (isinstance(v, str) and v.startswith("cuda:")
                                                                 and v[5:].isdigit()))
    ram_budget_mb: float = opt(1024, "a positive number of MB: exact values kept in RAM over all layers; beyond, they"
                                     " are spilled to files in scratch_dir", positive)
    exact_max_mb: Optional[float] = opt(1024, "a positive number of MB (exact values per layer, as float32 over all"
                                              " images, before its Gram comes from a sparse random projection) or null"
                                              " (always exact)", optional(positive))
    gram_dim: Any = opt("auto", "auto (Johnson-Lindenstrauss bound at eps 0.1) or an integer >= 1 (projection size of"
                                " layers beyond exact_max_mb)", auto_or_int(1))
    scratch_dir: Optional[str] = opt(None, "null (the system's temporary folder) or a folder path")
    precision: str = opt("float32", "float32, float16 or bfloat16 (the forward passes' precision, e.g. on a GPU;"
                                    " activations are reduced in float32 or better)",
                         one_of("float32", "float16", "bfloat16"))
    progress: bool = True


@dataclass
class CacheConfig(Checked):
    """The feature cache and generated probe sets on disk."""

    dir: str = SI("${oc.env:IDSIM_CACHE_DIR,${oc.env:HOME}/.cache/idsim}")
    enabled: bool = True


@dataclass
class StatsConfig(Checked):
    """How sure each verdict is: the bootstrap over probe images (idsim/stats.py)."""

    bootstrap: Optional[int] = opt(None, "null (the metric's default: 1000 for CKA and RSA, 200 for regression), 0 (no"
                                         " intervals) or an integer >= 1 (resamples of the probe images)",
                                   optional(int_at_least(0)))
    ci: float = opt(0.95, "a number in (0, 1) (the coverage of the percentile intervals)",
                    lambda v: is_number(v) and 0 < v < 1)


@dataclass
class LoggerConfig(Checked):
    kind: str = MISSING


@dataclass
class NoLogger(LoggerConfig):
    kind: str = "none"


@dataclass
class WandbLogger(LoggerConfig):
    """Weights & Biases; offline by default (no account needed), inside the run folder."""

    kind: str = "wandb"
    mode: str = opt("offline", "offline (no account needed), online, disabled", one_of("offline", "online", "disabled"))
    project: str = "idsim"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class MetricOptions(Checked):
    """Base of every metric family's ``Options`` (``idsim/metrics/<kind>.py``)."""

    name: str = MISSING      # how results name it (scores.csv `metric`): the YAML's name
    kind: str = MISSING      # the metric family: the module idsim/metrics/<kind>.py


@dataclass
class ProbeSetOptions(Checked):
    """Base of every probe set's options (``idsim/datasets/``); ``build()`` returns the :class:`ProbeSet`."""

    name: str = MISSING

    def build(self):  # pragma: no cover - every probe set overrides it
        raise NotImplementedError


@dataclass
class RunConfig(Checked):
    """One comparison: a target, sources, a probe set, a metric, and how to run it."""

    target: Any = MISSING
    sources: Dict[str, Any] = field(default_factory=dict)
    dataset: Any = MISSING
    metric: Any = MISSING
    extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    logger: Any = MISSING      # a LoggerConfig: logger=wandb | none (Python: none when not given)
    cache: CacheConfig = field(default_factory=CacheConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    seed: int = opt(0, f"{SEED_VALID} (target weights use seed, sources seed + 1; unit sampling and folds use seed)",
                    is_seed)
    weights: str = opt("random", WEIGHTS_VALID, _weights_ok)
    # the source with the target's architecture gets the target's exact weights (false: another seed, another
    # published ImageNet set, or an error when there is none)
    identical_weights: bool = False
    preprocess: str = opt("shared", "shared (every model sees the same pixels: one resize of the shorter side to 224 px"
                                    " and centre crop, then only its own normalisation and input size) or model (each"
                                    " library's full eval transform, as Brain-Score)", one_of("shared", "model"))
    unit_ratio: float = opt(1.0, "a number in (0, 1] (the fraction of each target layer's units kept)", fraction)
    plots: bool = True
    # a sweep's analysis, drawn over its summary when the sweep ends: the dotted path of a function
    # (summary, out_dir) -> {name: path}, e.g. experiments.sysid.fig3 (set by conf/experiment/*.yaml)
    analysis: Optional[str] = None

    def check(self, key: str) -> None:
        if not self.sources:
            raise IdsimError("no source models: choose at least one, e.g. sources=[alexnet,resnet18]")


# --------------------------------------------------------------------------- registries of option classes


def metric_options() -> dict[str, type]:
    """kind -> Options class of every metric family."""
    from .metrics import families

    return {kind: cls.Options for kind, cls in families().items()}


def probe_set_options() -> dict[str, type]:
    """name -> options class of every probe set."""
    from .datasets import registry

    return registry()


def system_config(name: str, role: str) -> type | None:
    """The config class of a target (``role="target"``) or source named ``name``, or None if unknown."""
    from .systems import config_class

    return config_class(name, role)


_registered = False


def register() -> None:
    """Store the schemas in Hydra's ConfigStore (once per process)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    cs.store(group="extraction", name="default", node=ExtractionConfig)
    cs.store(group="logger", name="wandb", node=WandbLogger)
    cs.store(group="logger", name="none", node=NoLogger)
    for kind, cls in metric_options().items():
        cs.store(group="metric", name=f"base_{kind}", node=cls)
    for name, cls in probe_set_options().items():
        cs.store(group="dataset", name=f"base_{name}", node=cls)
    _registered = True


# --------------------------------------------------------------------------- validation


def _node_class(section: str, node: Mapping[str, Any], role: str = "") -> type:
    """The dataclass a plain mapping of ``section`` (metric, dataset, target, a source...) belongs to."""
    if section == "metric":
        kinds = metric_options()
        kind = node.get("kind", node.get("name"))
        if kind not in kinds:
            raise IdsimError(f"metric.kind={show(kind)}; valid: {', '.join(sorted(kinds))}")
        return kinds[kind]
    if section == "dataset":
        sets = probe_set_options()
        name = node.get("name")
        if name not in sets:
            close = difflib.get_close_matches(str(name), list(sets), n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise IdsimError(f"unknown dataset {show(name)}{hint}; valid: {', '.join(sorted(sets))}")
        return sets[name]
    if section == "logger":
        kind = node.get("kind", "none")
        if kind not in ("wandb", "none"):
            raise IdsimError(f"logger={show(kind)}; valid: wandb, none")
        return WandbLogger if kind == "wandb" else NoLogger
    name = node.get("name")
    if name is None:
        raise IdsimError(f"{section} must be a model config with a name (e.g. {role}=resnet18), got {show(dict(node))}")
    cls = system_config(str(name), role)
    if cls is None:
        from .model_names import did_you_mean

        raise IdsimError(f"unknown {role} {show(name)}: not a torchvision or timm model{did_you_mean(str(name))}")
    return cls


def describe_error(e: OmegaConfBaseException, prefix: str = "") -> str:
    """One line for an OmegaConf type or key error, naming the full key and what is valid."""
    key = f"{prefix}{e.full_key}" if getattr(e, "full_key", None) else prefix.rstrip(".")
    cls = getattr(e, "object_type", None)
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(e, (ConfigKeyError, AttributeError)) and not isinstance(e, ValidationError):
        options = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
        close = difflib.get_close_matches(leaf, options, n=3, cutoff=0.6)
        parent = key.rpartition(".")[0]
        hint = f" (did you mean {', '.join((parent + '.' if parent else '') + c for c in close)}?)" if close else ""
        valid = f"; valid keys{' of ' + parent if parent else ''}: {', '.join(options)}" if options else ""
        return f"unknown config key {key!r}{hint}{valid}"
    valid = ""
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name == leaf:
                valid = f.metadata.get("valid") or _type_words(f.type)
    value = getattr(e, "value", None)
    what = str(getattr(e, "msg", e)).split("\n")[0]
    if value is not None and isinstance(e, ValidationError):
        what = "wrong type"
    return f"{key}={show(value) if value is not None else '?'}: {what}" + (f"; valid: {valid}" if valid else "")


def _type_words(t: Any) -> str:
    t = str(t)
    for k, words in (("bool", "true or false"), ("int", "an integer"), ("float", "a number"), ("str", "a string")):
        if k in t:
            return words + (" or null" if "Optional" in t else "")
    return ""


def structured(section: str, node: Any, role: str = "") -> DictConfig:
    """``node`` merged into its schema: unknown keys and wrong types become one-line errors."""
    if isinstance(node, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(node)):
        return node
    if not isinstance(node, (Mapping, DictConfig)):
        raise IdsimError(f"{section} must be a config mapping, got {show(node)}")
    plain = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else dict(node)
    cls = _node_class(section, plain, role or section)
    try:
        return OmegaConf.merge(OmegaConf.structured(cls), plain)
    except OmegaConfBaseException as e:
        raise IdsimError(describe_error(e, f"{section}.")) from None


def load(cfg: DictConfig | Mapping[str, Any]) -> RunConfig:
    """A composed config (or a plain mapping) as validated :class:`RunConfig` objects."""
    from .systems import TARGET, SOURCE

    try:
        if not isinstance(cfg, DictConfig):
            cfg = OmegaConf.create(dict(cfg))
        plain = OmegaConf.to_container(cfg, resolve=True)
        plain.pop("hydra", None)
        parts: dict[str, Any] = {}
        for section in ("metric", "dataset", "target"):
            if plain.get(section) is None:
                raise IdsimError(f"no {section} chosen (e.g. {section}={ {'metric': 'cka', 'dataset': 'shapes', 'target': 'resnet18'}[section]})")
            parts[section] = structured(section, plain.pop(section), TARGET if section == "target" else "")
        sources = plain.pop("sources", None) or {}
        if not isinstance(sources, Mapping):
            raise IdsimError(f"sources must be a list of names (sources=[alexnet,vgg11]), got {show(sources)}")
        parts["sources"] = {str(k): structured(f"sources.{k}", v, SOURCE) for k, v in sources.items()}
        parts["logger"] = structured("logger", plain.pop("logger", None) or {"kind": "none"})
        try:
            base = OmegaConf.merge(OmegaConf.structured(RunConfig), plain)
        except OmegaConfBaseException as e:
            raise IdsimError(describe_error(e)) from None
        for k, v in parts.items():
            base[k] = v
        run: RunConfig = OmegaConf.to_object(base)
    except OmegaConfBaseException as e:  # an interpolation that does not resolve, ...
        raise IdsimError(describe_error(e)) from None
    run.validate()
    return run


def check_value(cls: type, key: str, leaf: str, value: Any) -> None:
    """Check one override ``key=value`` against field ``leaf`` of ``cls`` before anything is composed."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if leaf not in fields:
        e = ConfigKeyError(f"Key '{leaf}' not in '{cls.__name__}'")
        e.full_key, e.object_type = leaf, cls
        raise IdsimError(describe_error(e, key[: -len(leaf)]))
    try:
        node = OmegaConf.merge(OmegaConf.structured(cls), {leaf: value})
        converted = OmegaConf.to_container(node, resolve=False)[leaf]
    except OmegaConfBaseException as e:
        raise IdsimError(describe_error(e, key[: -len(leaf)])) from None
    test = fields[leaf].metadata.get("check")
    if test is not None and not (isinstance(converted, str) and converted.startswith("${")) and not test(converted):
        fail(key, value, fields[leaf].metadata.get("valid") or "see the README")


__all__ = ["opt", "Checked", "RunConfig", "NetworkConfig", "SystemConfig", "ExtractionConfig", "CacheConfig", "StatsConfig",
           "WandbLogger", "NoLogger", "MetricOptions", "ProbeSetOptions", "load", "register", "structured",
           "check_value", "describe_error", "show", "fail", "ClassVar"]
