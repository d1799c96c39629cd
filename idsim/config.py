"""The command line, checked before Hydra composes anything: one line per mistake, in milliseconds.

Hydra's own messages for an unknown option list every option over many lines (1,400 for the
model groups) and a wrong key or type prints a multi-line report. :func:`check_overrides` reads
the command line first, against the same schema Hydra will use (:mod:`idsim.schema`), without
composing the config or importing torch:

- group choices (``target=``, ``sources=``, ``dataset=``, ``metric=``, ``logger=``,
  ``extraction=``, ``experiment=``) must exist; model names are checked against idsim's cheap
  name list, with the closest names suggested;
- every ``key=value`` must name a field of the node it addresses (for ``metric.*`` and
  ``dataset.*``: of the chosen metric's or probe set's options) and have a valid value;
- range checks are the schema's own (:func:`idsim.schema.check_value`), so the command line and
  a run from Python are judged alike.

It also knows where the configs live (``conf/``) and loads the named presets for Python users
(:func:`load_metric`).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from pathlib import Path
from typing import Any, Iterable

from omegaconf import OmegaConf  # noqa: F401 (HELP, help_text)

from .errors import IdsimError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MODEL_GROUPS = ("target", "sources")
FILE_GROUPS = ("dataset", "metric", "experiment")
STORE_GROUPS = {"logger": ("wandb", "none"), "extraction": ("default",)}
GROUPS = (*MODEL_GROUPS, *FILE_GROUPS, *STORE_GROUPS)


@functools.lru_cache(maxsize=None)
def _yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def group_options(group: str, conf_dir: Path | None = None) -> list[str]:
    """The options of a config group that are files or stored schemas (model groups: none listed here)."""
    conf_dir = conf_dir or CONF_DIR
    if group in STORE_GROUPS:
        extra = sorted(p.stem for p in (conf_dir / group).glob("*.yaml")) if (conf_dir / group).is_dir() else []
        return sorted(set(STORE_GROUPS[group]) | set(extra))
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _defaults(path: Path) -> list:
    d = _yaml(path).get("defaults") or []
    return d if isinstance(d, list) else []


def default_choices(conf_dir: Path | None = None) -> dict[str, Any]:
    """The group choices of ``conf/config.yaml``'s defaults list."""
    conf_dir = conf_dir or CONF_DIR
    out: dict[str, Any] = {}
    for entry in _defaults(conf_dir / "config.yaml"):
        if isinstance(entry, dict):
            for k, v in entry.items():
                out[str(k).split("@")[0].lstrip("/")] = v
    return out


def schema_name(group: str, option: str, conf_dir: Path | None = None) -> str | None:
    """The ``base_<name>`` schema a metric or dataset YAML extends (the metric's kind, the probe set's name)."""
    conf_dir = conf_dir or CONF_DIR
    for entry in _defaults(conf_dir / group / f"{option}.yaml"):
        if isinstance(entry, str) and entry.startswith("base_"):
            return entry[len("base_"):]
    return None


def experiment_choices(name: str, conf_dir: Path | None = None) -> dict[str, list]:
    """Group choices an experiment config sets (``override /group: x`` and its sweeper's params)."""
    conf_dir = conf_dir or CONF_DIR
    data = _yaml(conf_dir / "experiment" / f"{name}.yaml")
    out: dict[str, list] = {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, dict):
            for k, v in entry.items():
                key = str(k).replace("override", "").strip().lstrip("/")
                if key in GROUPS:
                    out[key] = [v]
    params = (((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {})
    for k, v in params.items():
        if k in GROUPS and isinstance(v, str):
            out[k] = [x.strip() for x in v.split(",")] if not v.strip().startswith("[") else [v]
    return out


def groups_help() -> str:
    """The config groups and their options, for ``python run.py --help`` (``${idsim.groups:}`` in its template)."""
    from . import systems

    special = {role: sorted(n for kind in systems.KINDS for n in getattr(systems._module(kind), "NAMES", {}).get(role, ()))
               for role in ("target", "source")}
    lines = [f"  target      any torchvision or timm model name (python -m idsim.models list), e.g. resnet18, vgg11,"
             f" vit_base_patch32_224{''.join(', ' + n for n in special['target'])}",
             f"  sources     a list of them, e.g. sources=[alexnet,vgg11]{''.join(', ' + n for n in special['source'])}"]
    for group in ("dataset", "metric", "experiment", "logger", "extraction"):
        options = [o for o in group_options(group) if not o.startswith("base_")]
        lines.append(f"  {group:<11} {', '.join(options)}")
    return "\n".join(lines)


HELP = """idsim: would the score pick the target's own architecture among the sources?

python run.py [group=option ...] [key=value ...]          one comparison
python run.py -m [key=a,b ...] [experiment=fig3_quick]     a sweep (hydra/launcher=slurm for SLURM)

== Config groups ==
{groups}

== Config ==
Every option, its default and what is valid is declared once in idsim/schema.py (a metric's in
idsim/metrics/<kind>.py, a probe set's in idsim/datasets/); the README explains each.
Override anything with key=value, e.g. unit_ratio=0.1 extraction.batch_size=16 metric.cv=loo.
Hydra's own flags (--cfg job, --info, -m, --hydra-help): python run.py --hydra-help

{config}"""


def help_text(overrides: Iterable[str] = ()) -> str:
    """``python run.py --help``: the groups, then the config those overrides compose (as Hydra's --cfg job)."""
    overrides = [o for o in overrides if not o.startswith("-")]
    return HELP.format(groups=groups_help(), config=OmegaConf.to_yaml(compose(overrides)).rstrip())


# --------------------------------------------------------------------------- the pre-check


def _leaves(value) -> list:
    """Every value in an override value (plain, list, or a sweep of either)."""
    if hasattr(value, "list"):  # ChoiceSweep
        return [x for v in value.list for x in _leaves(v)]
    return [value]


def _choice_lists(value) -> list:
    """The alternatives of a group override: ``a`` -> [a]; ``a,b`` (sweep) -> [a, b]; ``[a,b]`` -> [[a, b]]."""
    if hasattr(value, "list"):
        return list(value.list)
    return [value]


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    items = [o for o in overrides if not o.startswith("-") and ("=" in o or o.startswith("~"))]
    try:
        return parser.parse_overrides(items)
    except Exception:
        for o in items:
            try:
                parser.parse_overrides([o])
            except Exception as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise IdsimError(f"cannot parse the override {o!r}: {first} (lists are [a,b], sweeps a,b with -m;"
                                 f" quote values with spaces or special characters)") from None
        raise


def _system_class(name: Any, group: str):
    from . import schema
    from .model_names import did_you_mean

    role = "target" if group == "target" else "source"
    cls = schema.system_config(str(name), role) if isinstance(name, str) else None
    if cls is None:
        raise IdsimError(f"unknown {group} model {name!r}: not a torchvision or timm classification model"
                         f"{did_you_mean(str(name))}")
    return cls


def _check_choice(group: str, value: Any, conf_dir: Path) -> None:
    if group in MODEL_GROUPS:
        if group == "target" and isinstance(value, (list, tuple)):
            raise IdsimError(f"target takes one model, got a list {list(value)}; to run several targets, sweep them:"
                             f" python run.py -m target=a,b")
        names = value if isinstance(value, (list, tuple)) else [value]
        for name in names:
            _system_class(name, group)
        if group == "sources":
            dup = sorted({str(n) for n in names if list(names).count(n) > 1})
            if dup:
                raise IdsimError(f"sources lists {', '.join(dup)} twice: a source is named by its model, so each model can"
                                 f" be a source once; to compare seeds, sweep them (python run.py -m seed=0,1,2) or set"
                                 f" one source's seed (sources.{dup[0]}.seed=5)")
        return
    options = group_options(group, conf_dir)
    if not options:  # configs not found next to the package (not an editable install): let Hydra judge
        return
    for leaf in (value if isinstance(value, (list, tuple)) else [value]):
        if not isinstance(leaf, str) or leaf not in options:
            close = difflib.get_close_matches(str(leaf), options, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise IdsimError(f"unknown {group} {leaf!r}{hint}; valid: {', '.join(options)}")


def _fixed_nodes() -> dict[str, type]:
    """The run's nodes whose schema does not depend on a group choice (extraction, cache, stats...)."""
    from . import schema

    out = {}
    for f in dataclasses.fields(schema.RunConfig):
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if factory is not None and dataclasses.is_dataclass(factory):
            out[f.name] = factory
    return out


def _all_keys() -> dict[str, str]:
    """Every settable key path of the schema's fixed nodes, by leaf name (for 'did you mean')."""
    from . import schema

    nodes = {"target", "sources", "dataset", "metric", "logger", *_fixed_nodes()}
    keys = {f.name: f.name for f in dataclasses.fields(schema.RunConfig) if f.name not in nodes}
    for node, cls in (*_fixed_nodes().items(), ("logger", schema.WandbLogger)):
        for f in dataclasses.fields(cls):
            keys.setdefault(f.name, f"{node}.{f.name}")
    return keys


def check_overrides(overrides: Iterable[str], conf_dir: Path | None = None) -> None:
    """Raise :class:`IdsimError` for an unknown option, key or bad value on the command line."""
    conf_dir = conf_dir or CONF_DIR
    from . import schema

    parsed = _parse(list(overrides))
    choices: dict[str, list] = {k: [v] for k, v in default_choices(conf_dir).items()}
    for o in parsed:  # the experiment first: the command line overrides what it sets
        if o.key_or_group == "experiment" and not o.is_delete():
            for name in _leaves(o.value()):
                _check_choice("experiment", name, conf_dir)
                choices.update(experiment_choices(str(name), conf_dir))
    for o in parsed:
        key = o.key_or_group
        if key in GROUPS and not o.is_delete() and key != "experiment":
            alternatives = _choice_lists(o.value())
            for v in alternatives:
                _check_choice(key, v, conf_dir)
            choices[key] = alternatives
    for o in parsed:
        key = o.key_or_group
        if o.is_delete() or key.startswith("hydra") or o.package or key in GROUPS:
            continue
        values = [None] if o.is_sweep_override() and not hasattr(o.value(), "list") else _leaves(o.value())
        for cls, path, leaf in _targets(key, choices, conf_dir):
            for v in values:
                if v is not None:
                    schema.check_value(cls, path, leaf, v)
                elif leaf not in {f.name for f in dataclasses.fields(cls)}:
                    schema.check_value(cls, path, leaf, None)


def _targets(key: str, choices: dict[str, list], conf_dir: Path) -> list[tuple[type, str, str]]:
    """(schema class, full key, field) for every config node ``key`` addresses under the chosen options."""
    from . import schema

    parts = key.split(".")
    head, leaf = parts[0], parts[-1]
    if head == "sources":
        if len(parts) != 3:
            raise IdsimError(f"{key}: address a source's option as sources.<model>.<key>, e.g. sources.vgg11.seed=3")
        chosen = {str(n) for alt in choices.get("sources", []) for n in (alt if isinstance(alt, (list, tuple)) else [alt])}
        if parts[1] not in chosen:
            raise IdsimError(f"{key}: {parts[1]!r} is not among the sources ({', '.join(sorted(chosen))}); choose it"
                             f" with sources=[...,{parts[1]}]")
        return [(_system_class(parts[1], "sources"), key, leaf)]
    if head == "target":  # target.<key>, or a key of a nested node: target.recording.trials
        return [(_nested(_system_class(t, "target"), key, parts[1:-1]), key, leaf) for t in choices.get("target", [])]
    if head in ("metric", "dataset"):
        _need_depth(key, parts, 2)
        registry = schema.metric_options() if head == "metric" else schema.probe_set_options()
        out = []
        for option in choices.get(head, []):
            name = schema_name(head, str(option), conf_dir)
            if name in registry:
                out.append((registry[name], key, leaf))
        return out
    if head == "logger":
        _need_depth(key, parts, 2)
        return [(schema.WandbLogger if c == "wandb" else schema.NoLogger, key, leaf) for c in choices.get("logger", [])
                if c in ("wandb", "none")]
    if head in _fixed_nodes():
        _need_depth(key, parts, 2)
        return [(_fixed_nodes()[head], key, leaf)]
    if len(parts) == 1 and head in {f.name for f in dataclasses.fields(schema.RunConfig)}:
        return [(schema.RunConfig, key, leaf)]
    known = _all_keys()
    close = difflib.get_close_matches(leaf, list(known), n=2, cutoff=0.6)
    hint = f" (did you mean {', '.join(known[c] for c in close)}?)" if close else ""
    raise IdsimError(f"unknown config key {key!r}{hint}; see python run.py --cfg job for every key")


def _nested(cls: type, key: str, path: list[str]) -> type:
    """The dataclass of the node ``path`` below ``cls`` (e.g. ``recording`` of a network target)."""
    import typing

    for name in path:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        sub = fields.get(name)
        hints = typing.get_type_hints(cls) if sub is not None else {}
        if sub is None or not dataclasses.is_dataclass(hints.get(name)):
            from . import schema

            schema.check_value(cls, key[: key.index(name) + len(name)], name, None)  # one line: unknown or not a node
            raise IdsimError(f"unknown config key {key!r}: {name} is not a node; see python run.py --cfg job")
        cls = hints[name]
    return cls


def _need_depth(key: str, parts: list[str], depth: int) -> None:
    if len(parts) != depth:
        raise IdsimError(f"unknown config key {key!r}; see python run.py --cfg job for every key")


# --------------------------------------------------------------------------- presets for Python users


def compose(overrides: Iterable[str] = ()) -> Any:
    """The config ``python run.py <overrides>`` would run (Hydra's compose API on ``conf/``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from . import schema

    overrides = list(overrides)
    check_overrides(overrides)
    schema.register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):  # read now: tests may point it elsewhere
        return hydra_compose("config", overrides)


def load_metric(name: str | Any, **options: Any):
    """A metric by preset name (``conf/metric/<name>.yaml``, e.g. ``"cka_debiased"``) or options mapping."""
    from omegaconf import OmegaConf

    from . import metrics

    if isinstance(name, str):
        if name not in group_options("metric"):
            raise IdsimError(f"unknown metric {name!r}; valid: {', '.join(group_options('metric'))}")
        node = OmegaConf.to_container(compose([f"metric={name}"]).metric, resolve=True)
    else:
        node = dict(name)
    node.update(options)
    return metrics.build(node)
