"""The metric protocol: what every metric family declares.

A family is one module ``idsim/metrics/<kind>.py`` that defines a subclass of :class:`Metric`
with

- ``kind``: its name (the module's name), written in every YAML of ``conf/metric`` that uses it;
- ``Options``: a dataclass (subclass of :class:`~idsim.schema.MetricOptions`) holding its
  options, their defaults and checks: the schema of ``metric.<key>=...``;
- :meth:`Metric.plan`: what feature extraction must keep of each source and target layer;
- :meth:`Metric.check`: whether it can run on this many probe images (before any forward pass);
- :meth:`Metric.score`: every source layer x target layer score at once, from two feature sets.

:func:`idsim.metrics.families` finds the families; an unknown kind is an error, never a default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..schema import MetricOptions

SOURCE, TARGET = "source", "target"


@dataclass
class LayerScores:
    """Scores of every source layer (rows) against every target layer (columns)."""

    score: np.ndarray                                          # (n_source_layers, n_target_layers)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # more columns of scores.csv, same shape
    boot: np.ndarray | None = None     # (n_resamples, n_source_layers, n_target_layers): scores on resampled images


class Metric:
    """Base class of the metric families (see the module docs)."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type[MetricOptions]] = MetricOptions
    #: resamples of the probe images when ``stats.bootstrap`` is null (its cost differs by family)
    bootstrap_default: ClassVar[int] = 1000

    def __init__(self, options: MetricOptions):
        if not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} takes {self.Options.__name__}, got {type(options).__name__}")
        self.options = options

    @property
    def name(self) -> str:
        return self.options.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    def plan(self, role: str, unit_ratio: float = 1.0, seed: int = 0) -> Plan:
        """What extraction keeps of each layer of a ``"source"`` or ``"target"`` system."""
        raise NotImplementedError

    def check(self, n_images: int) -> None:
        """Raise :class:`IdsimError` when the metric cannot run on ``n_images`` probe images."""
        if n_images < 3:
            raise IdsimError(f"{self.name} needs at least 3 probe images, got {n_images}")

    def score(self, source: FeatureSet, target: FeatureSet, seed: int = 0, device: Any = None,
              resamples: np.ndarray | None = None) -> LayerScores:
        """All source x target layer scores; with ``resamples`` ((B, n) image indices drawn with replacement),
        also every score on each resample of the probe images (``LayerScores.boot``)."""
        raise NotImplementedError

    # helpers shared by the families

    @staticmethod
    def _layers(features: FeatureSet, what: str, attr: str, role: str) -> list:
        values = [getattr(features[n], attr) for n in features.layer_names]
        if any(v is None for v in values):
            raise IdsimError(f"{what} needs {role} {attr}: extract the {role} with metric.plan({role!r})")
        return values

    @staticmethod
    def _grams(features: FeatureSet, kind: str, metric: str, role: str) -> list[np.ndarray]:
        out = []
        for n in features.layer_names:
            g = features[n].grams.get(kind)
            if g is None:
                raise IdsimError(f"{metric} needs the {kind} Gram of every {role} layer: extract the {role} with"
                                 f" metric.plan({role!r})")
            out.append(g)
        return out
