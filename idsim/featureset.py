"""What extraction keeps of a system's layers, and the plan that says what to keep.

A :class:`Plan` comes from a metric (``metric.plan(role)``); extraction (:mod:`idsim.features`,
or a recording's loader) fills one :class:`LayerData` per layer into a :class:`FeatureSet`; the
feature cache stores feature sets; metrics score pairs of them. NumPy only: reading this module
imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Plan:
    """What to keep of every layer of one system.

    grams:       Gram matrices of the kept units' patterns, by kind (:mod:`idsim.gram`):
                 ``column`` (CKA, Euclidean RDMs), ``row`` (correlation RDMs), ``raw`` (cosine RDMs).
    units:       keep (up to ``max_units`` of) the kept units' values (target side of regression).
    features:    keep every unit's values as regression features (source side of regression) ...
    project:     ... through a sparse random projection to this many dims (``"auto"``: the
                 Johnson-Lindenstrauss bound at eps 0.1 for the number of images; ``None``: none).
                 Layers no wider than that are kept exactly.
    unit_ratio:  fraction of each layer's units kept, sampled without replacement with ``seed``.
    drop_constant: drop units with zero variance over the probe images (and count them).
    """

    grams: tuple[str, ...] = ("column",)
    units: bool = False
    max_units: int | None = None
    features: bool = False
    project: int | str | None = None
    unit_ratio: float = 1.0
    drop_constant: bool = False
    seed: int = 0


@dataclass
class LayerData:
    """What a layer of one system contributes to the metrics."""

    name: str
    n_units: int                      # units in the layer (flattened output)
    n_sampled: int                    # units kept by unit_ratio
    n_constant: int = 0               # kept units dropped for zero variance
    grams: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> (n, n) float64 Gram of the kept units
    features: np.ndarray | None = None  # (n, q) float32: projected (or exact narrow) features
    units: np.ndarray | None = None   # (n, m) float32: values of kept units (at most max_units)
    unit_index: np.ndarray | None = None  # indices (into the flattened layer) of ``units``
    projected: bool = False           # regression features are a sparse random projection
    approximate: bool = False         # grams come from a sparse random projection (layer beyond the exact budget)

    @property
    def n_kept(self) -> int:
        return self.n_sampled - self.n_constant

    @property
    def gram(self) -> np.ndarray | None:
        """The Gram of column-centred units (CKA's), when kept."""
        return self.grams.get("column")


@dataclass
class FeatureSet:
    """Per-layer data of one system on one probe set, in layer order."""

    model: str
    layers: dict[str, LayerData] = field(default_factory=dict)
    n_images: int = 0

    def __getitem__(self, layer: str) -> LayerData:
        return self.layers[layer]

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)
