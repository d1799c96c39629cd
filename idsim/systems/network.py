"""Kind ``network``: any torchvision or timm model, with random (seeded), ImageNet or checkpoint weights.

Before any forward pass, :meth:`NetworkSystem.prepare` builds the network on the meta device (no
memory, no initialisation) to resolve its default layers, check user-given layers, and match a
checkpoint's keys and shapes. The real network is built only when its features are not cached.
"""
from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..model_names import is_model, resolve_library
from ..schema import ExtractionConfig, NetworkConfig
from .base import SOURCE, TARGET, System
from .recording import SimulatedRecordingConfig

log = logging.getLogger("idsim")


@dataclass
class NetworkTargetConfig(NetworkConfig):
    """A network as the target: itself (``recording`` left at its defaults) or seen through a simulated recording."""

    recording: SimulatedRecordingConfig = field(default_factory=SimulatedRecordingConfig)


def config_class(name: str, role: str) -> type | None:
    if not is_model(name):
        return None
    return NetworkTargetConfig if role == TARGET else NetworkConfig


def _resolved(name: str, library: str, weights: str) -> str:
    if weights.startswith("imagenet"):
        from ..models import resolve_weights

        return resolve_weights(name, library, weights)
    return weights if weights == "random" else str(Path(weights).expanduser().resolve())


def build(config: NetworkConfig, label: str, role: str, run: Any) -> System:
    system = _network(config, label, role, run)
    sim = getattr(config, "recording", None)
    if role == TARGET and sim is not None and not sim.ideal:
        from .recording import SimulatedRecordingSystem

        return SimulatedRecordingSystem(system, sim, run)
    return system


def _network(config: NetworkConfig, label: str, role: str, run: Any) -> "NetworkSystem":
    library = resolve_library(config.name, config.library)
    seed = config.seed if config.seed is not None else (run.seed if role == TARGET else run.seed + 1)
    weights = _resolved(config.name, library, config.weights)
    target = run.target
    if role == SOURCE and isinstance(target, NetworkConfig) and target.name == config.name \
            and resolve_library(target.name, target.library) == library:
        t_seed = target.seed if target.seed is not None else run.seed
        t_weights = _resolved(target.name, library, target.weights)
        if run.identical_weights:
            seed, weights = t_seed, t_weights
        elif weights == t_weights and weights != "random":  # random: the seeds differ unless the user set them so
            weights = _independent(config.name, library, label, t_weights)
    return NetworkSystem(config, label, role, library=library, weights=weights, seed=seed,
                         preprocess=getattr(run, "preprocess", "shared"))


def _independent(name: str, library: str, label: str, target_weights: str) -> str:
    """Another published ImageNet weight set for the source that shares the target's architecture (or an error)."""
    hint = (f"set identical_weights=true to compare the target with itself, or give the source its own weights:"
            f" sources.{label}.weights=/path/to/other_seed.pt")
    if not target_weights.startswith("imagenet:"):
        raise IdsimError(f"sources.{label} has the target's architecture and would get the target's exact weights"
                         f" ({target_weights}); {hint}")
    from ..models import weight_sets

    others = [t for t in weight_sets(name, library) if f"imagenet:{t}" != target_weights]
    if not others:
        raise IdsimError(f"{name} ({library}) publishes one ImageNet weight set ({target_weights}), which the target"
                         f" uses: sources.{label} would be the target itself; {hint} (python -m idsim.models weights"
                         f" {name})")
    log.info("sources.%s: the target uses %s; the source gets another published set, imagenet:%s", label,
             target_weights, others[0])
    return f"imagenet:{others[0]}"


class NetworkSystem(System):
    """A network whose layers are the compared responses."""

    def __init__(self, config: NetworkConfig, label: str, role: str, library: str, weights: str, seed: int,
                 preprocess: str = "shared"):
        super().__init__(config, label, role)
        self.library = library
        self.weights = weights
        self.seed = seed
        self.preprocess = preprocess
        self._layers: list[str] | None = None

    @property
    def architecture(self) -> str:
        return f"{self.library}:{self.name}"

    def describe(self) -> str:
        w = f"random(seed={self.seed})" if self.weights == "random" else self.weights
        return f"{self.label} [{self.library}, {w}]"

    def prepare(self) -> None:
        from ..layouts import layout

        if self.weights != "random":  # (random weights: nothing to check, and no torch to import on a warm run)
            from .. import models

            if self.weights.startswith("imagenet"):  # cached, or downloadable now: else one line at once
                models.check_pretrained(self.name, self.library, models.parse_weights(self.weights)[1])
            else:
                path = Path(self.weights)
                module = models.meta_module(self.name, self.library)
                if module is not None:
                    models.match_state_dict(module, models.read_state_dict(path, self.name), path, self.name)
        shape = layout(self.name, self.library)
        if shape is None:  # cannot be built weightless: layers are resolved (and checked) on the real network
            return
        layers = self.config.layers
        if layers is None:
            self._layers = list(shape.default_layers)
            return
        layers = [str(x) for x in layers]
        bad = [x for x in layers if x not in shape.modules]
        if bad:
            close = difflib.get_close_matches(bad[0], sorted(shape.modules), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise IdsimError(f"{self.name} has no layer {bad[0]!r}{hint} (list them: python -m idsim.models layers"
                             f" {self.name} --all)")
        if len(set(layers)) != len(layers):
            raise IdsimError(f"{self.label}: a layer is listed twice in {layers}")
        self._layers = layers

    def layers(self) -> list[str]:
        if self._layers is None:
            self._layers = self._model().resolve_layers(self.config.layers)
        return list(self._layers)

    def identity(self) -> dict[str, Any]:
        from ..cache import file_digest

        ident: dict[str, Any] = {"kind": "network", "name": self.name, "library": self.library, "weights": self.weights,
                                 "layers": self.layers(), "preprocess": self.preprocess}
        if self.weights == "random":
            ident["seed"] = self.seed
        elif not self.weights.startswith("imagenet"):
            ident["weights"] = "checkpoint"
            ident["checkpoint_sha256"] = file_digest(self.weights)
        return ident

    def _model(self):
        from ..models import build_model

        return build_model(self.name, weights=self.weights, seed=self.seed, library=self.library,
                           preprocess=self.preprocess)

    def extract(self, probe, plan: Plan, settings: ExtractionConfig) -> FeatureSet:
        from ..features import extract

        model = self._model()
        return extract(model, probe, plan, self.layers(), **settings_kwargs(settings))

    def columns(self) -> dict[str, Any]:
        return {"source_weights": self.weights, "source_seed": self.seed if self.weights == "random" else None,
                "preprocess": self.preprocess}


def settings_kwargs(settings: ExtractionConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`idsim.features.extract` that an extraction config sets."""
    from ..devices import resolve_device

    return dict(batch_size=settings.batch_size, device=resolve_device(settings.device), progress=settings.progress,
                scratch=settings.scratch_dir, ram_budget=int(settings.ram_budget_mb * 2**20),
                num_workers=settings.num_workers, precision=settings.precision,
                exact_budget=None if settings.exact_max_mb is None else int(settings.exact_max_mb * 2**20),
                gram_dim=settings.gram_dim)
