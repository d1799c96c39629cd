"""Kind ``baseline``: hand-made features as sources, selectable like models (``sources=[alexnet,gabor,gist,rff,pixels]``).

Each baseline is one layer named after it, built as :mod:`idsim.baselines` documents; its
features go through the same reducers as a network layer (:mod:`idsim.arrays`) and are cached
like a model's (the key holds the baseline's options, seed and :data:`VERSION`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, List, Optional

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..schema import ExtractionConfig, SystemConfig, int_at_least, is_number, opt, optional, positive
from .base import SOURCE, TARGET, System

VERSION = 1  # bump when a construction changes



@dataclass
class BaselineConfig(SystemConfig):
    """What every baseline shares (no ``name``: a base)."""

    kind: str = "baseline"
    seed: Optional[int] = opt(None, "null (the sources' seed, seed + 1) or an integer >= 0", optional(int_at_least(0)))


@dataclass
class GaborConfig(BaselineConfig):
    """``gabor``: Gabor energy on an 8×8 grid of each image."""

    name: str = "gabor"
    size: int = opt(128, "an integer >= 8 (side in pixels of the grayscale image the filters see)", int_at_least(8))
    orientations: int = opt(8, "an integer >= 1", int_at_least(1))
    frequencies: List[float] = opt(valid="a non-empty list of spatial frequencies in (0, 0.5] cycles per pixel",
                                   check=lambda v: len(v) > 0 and all(is_number(f) and 0 < f <= 0.5 for f in v),
                                   factory=lambda: [0.05, 0.1, 0.2, 0.4])
    grid: int = opt(8, "an integer >= 1 (the energy is averaged over a grid x grid grid of cells)", int_at_least(1))


@dataclass
class GistConfig(GaborConfig):
    """``gist``: the principal components of the Gabor features over the probe images."""

    name: str = "gist"
    components: int = opt(64, "an integer >= 1 (principal components kept; at most n_images - 1)", int_at_least(1))


def _bandwidth_ok(v: Any) -> bool:
    return v == "median" or positive(v)


@dataclass
class RffConfig(BaselineConfig):
    """``rff``: random Fourier features of the grayscale pixels."""

    name: str = "rff"
    size: int = opt(32, "an integer >= 1 (side in pixels of the grayscale image)", int_at_least(1))
    dim: int = opt(4096, "an integer >= 1 (number of features; 4096 matches regression_loo's projection)",
                   int_at_least(1))
    bandwidth: Any = opt("median", "median (the median distance between the images' pixel vectors) or a positive"
                                   " number", _bandwidth_ok)


@dataclass
class PixelsConfig(BaselineConfig):
    """``pixels``: the pixel values."""

    name: str = "pixels"
    size: int = opt(64, "an integer >= 1 (side in pixels)", int_at_least(1))
    gray: bool = False


CONFIGS: dict[str, type] = {"gabor": GaborConfig, "gist": GistConfig, "rff": RffConfig, "pixels": PixelsConfig}


def config_class(name: str, role: str) -> type | None:
    return CONFIGS.get(name) if role == SOURCE else None


def build(config: BaselineConfig, label: str, role: str, run: Any) -> "BaselineSystem":
    if role == TARGET:
        raise IdsimError(f"{label}: a baseline can only be a source")
    seed = config.seed if config.seed is not None else run.seed + 1
    return BaselineSystem(config, label, role, seed)


class BaselineSystem(System):
    """A hand-made feature extractor with one layer, named after it."""

    def __init__(self, config: BaselineConfig, label: str, role: str, seed: int):
        super().__init__(config, label, role)
        self.seed = seed

    @property
    def seeded(self) -> bool:
        return isinstance(self.config, RffConfig)

    def describe(self) -> str:
        return f"{self.label} [baseline{f', seed={self.seed}' if self.seeded else ''}]"

    def layers(self) -> list[str]:
        return [self.name]

    def identity(self) -> dict[str, Any]:
        opts = {k: v for k, v in asdict(self.config).items() if k not in ("seed",)}
        return {"kind": "baseline", "version": VERSION, **opts, "seed": self.seed if self.seeded else None}

    def columns(self) -> dict[str, Any]:
        return {"source_weights": "baseline", "source_seed": self.seed if self.seeded else None}

    def features(self, probe, batch_size: int = 32):
        """(n, width) features, or an iterator of (rows, batch) when they can be streamed."""
        from .. import baselines as B

        c = self.config
        if isinstance(c, GaborConfig):
            bank = B.gabor_bank(c.orientations, c.frequencies)
            fn = lambda img: B.gabor_features(B.prepare(img, c.size), bank, c.grid)  # noqa: E731
            if isinstance(c, GistConfig):
                return B.pca(np.concatenate([b for _, b in B.batched(probe, batch_size, fn)]), c.components)
            return B.batched(probe, batch_size, fn)
        if isinstance(c, RffConfig):
            x = np.stack([B.prepare(probe.image(i), c.size).ravel() for i in range(len(probe))])
            bw = B.median_distance(x) if c.bandwidth == "median" else float(c.bandwidth)
            w, b = B.rff_weights(x.shape[1], c.dim, bw, self.seed)
            return B.random_fourier_features(x, w, b)
        if isinstance(c, PixelsConfig):
            return B.batched(probe, batch_size, lambda img: B.prepare(img, c.size, gray=c.gray).ravel())
        raise IdsimError(f"unknown baseline {self.name!r}")  # pragma: no cover

    def extract(self, probe, plan: Plan, settings: ExtractionConfig) -> FeatureSet:
        from ..arrays import reduce_arrays, reduce_batches
        from .recording import reduce_kwargs

        feats = self.features(probe, settings.batch_size)
        kwargs = reduce_kwargs(settings)
        if isinstance(feats, np.ndarray):
            return reduce_arrays({self.name: feats}, plan, name=self.name, **kwargs)
        return reduce_batches(({self.name: batch} for _, batch in feats), len(probe), [self.name], plan,
                              name=self.name, **kwargs)


__all__ = ["GaborConfig", "GistConfig", "RffConfig", "PixelsConfig", "BaselineSystem", "config_class", "build"]
