"""Scoring every source layer against every target layer with one metric.

``Metric`` describes a metric from its config (``metric=cka`` ...); ``Metric.plan(role)`` says
what feature extraction must keep of each layer for it; :func:`score_layers` turns a source's
and a target's :class:`~idsim.features.FeatureSet` into a tidy layer x layer table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import IdsimError
from .features import FeatureSet, Plan
from .metrics.cka import cka_matrix
from .metrics.rsa import rsa_matrix
from .metrics.regression import DEFAULT_ALPHAS, fit_predict_cv, standardize_columns

KINDS = ("cka", "rsa", "regression")


@dataclass(frozen=True)
class Metric:
    name: str = "cka"
    kind: str = "cka"
    debiased: bool = False
    rdm: str = "correlation"
    compare: str = "pearson"
    cv: Any = 10
    alphas: tuple = DEFAULT_ALPHAS
    srp_dim: Any = "auto"
    standardize: bool = True
    max_units: int | None = 3000
    precision: str = "float64"
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | str) -> "Metric":
        if isinstance(cfg, str):
            from .config import CONF_DIR

            path = CONF_DIR / "metric" / f"{cfg}.yaml"
            if not path.is_file():
                valid = ", ".join(sorted(p.stem for p in (CONF_DIR / "metric").glob("*.yaml")))
                raise IdsimError(f"unknown metric {cfg!r}; valid: {valid}")
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(OmegaConf.load(path))
        d = dict(cfg)
        kind = d.pop("kind", d.get("name", "cka"))
        if kind not in KINDS:
            raise IdsimError(f"metric.kind={kind!r}; valid: {', '.join(KINDS)}")
        name = str(d.pop("name", kind))
        known = {f for f in cls.__dataclass_fields__ if f not in ("name", "kind", "extra")}
        unknown = sorted(set(d) - known)
        if unknown:
            raise IdsimError(f"metric {name}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        if "alphas" in d:
            d["alphas"] = tuple(float(a) for a in np.atleast_1d(d["alphas"]))
        m = cls(name=name, kind=kind, **d)
        m.validate()
        return m

    def validate(self) -> None:
        if self.precision not in ("float64", "float32"):
            raise IdsimError(f"metric.precision={self.precision!r}; valid: float64, float32")
        for flag in ("debiased", "standardize"):
            if not isinstance(getattr(self, flag), bool):
                raise IdsimError(f"metric.{flag}={getattr(self, flag)!r}; valid: true or false")
        if self.kind == "rsa":
            from .metrics.rsa import COMPARES, RDMS

            if self.rdm not in RDMS:
                raise IdsimError(f"metric.rdm={self.rdm!r}; valid: {', '.join(RDMS)}")
            if self.compare not in COMPARES:
                raise IdsimError(f"metric.compare={self.compare!r}; valid: {', '.join(COMPARES)}")
        if self.kind != "regression":
            return
        cv = self.cv
        if not (cv in ("loo", "gcv") or (isinstance(cv, int) and not isinstance(cv, bool) and cv >= 2)):
            raise IdsimError(f"metric.cv={cv!r}; valid: loo, gcv or an integer k >= 2 (k-fold)")
        if not (self.srp_dim in (None, "auto") or (isinstance(self.srp_dim, int) and self.srp_dim > 0)):
            raise IdsimError(f"metric.srp_dim={self.srp_dim!r}; valid: auto, null or a positive integer")
        if self.max_units is not None and (not isinstance(self.max_units, int) or self.max_units < 1):
            raise IdsimError(f"metric.max_units={self.max_units!r}; valid: a positive integer or null (all units)")
        if not self.alphas or any(not np.isfinite(a) or a <= 0 for a in self.alphas):
            raise IdsimError(f"metric.alphas={list(self.alphas)}: alphas must be positive numbers")

    def plan(self, role: str, unit_ratio: float = 1.0, seed: int = 0) -> Plan:
        """What extraction keeps of each layer of a ``"source"`` or ``"target"`` model."""
        if self.kind == "rsa":
            # every sampled unit counts in an RDM (as np.corrcoef on the raw responses), constant or not
            return Plan(gram=False, rdm=self.rdm, unit_ratio=unit_ratio if role == "target" else 1.0, seed=seed)
        if role == "target":
            if self.kind == "cka":
                return Plan(gram=True, unit_ratio=unit_ratio, drop_constant=True, seed=seed)
            return Plan(gram=False, units=True, max_units=self.max_units, unit_ratio=unit_ratio, drop_constant=True,
                        seed=seed)
        if self.kind == "cka":
            return Plan(gram=True, seed=seed)
        return Plan(gram=False, project=self.srp_dim, seed=seed)


def score_layers(source: FeatureSet, target: FeatureSet, metric: Metric, seed: int = 0, device=None) -> pd.DataFrame:
    """Score every source layer against every target layer: a tidy DataFrame, one row per pair."""
    if source.n_images != target.n_images:
        raise IdsimError(f"source and target were extracted on different images ({source.n_images} vs {target.n_images})")
    s_names, t_names = source.layer_names, target.layer_names
    if metric.kind == "cka":
        S = cka_matrix([source[n].gram for n in s_names], [target[n].gram for n in t_names], debiased=metric.debiased)
        extra = {}
    elif metric.kind == "rsa":
        S = rsa_matrix([source[n].rdm for n in s_names], [target[n].rdm for n in t_names], compare=metric.compare)
        extra = {}
    else:
        S, alphas = _regression_matrix(source, target, metric, seed, device)
        extra = {"median_alpha": alphas}
    rows = []
    for i, s in enumerate(s_names):
        for j, t in enumerate(t_names):
            row = {"source_layer": s, "source_layer_index": i, "target_layer": t, "target_layer_index": j,
                   "score": float(S[i, j])}
            for k, v in extra.items():
                row[k] = float(v[i, j])
            rows.append(row)
    return pd.DataFrame(rows)


def _regression_matrix(source: FeatureSet, target: FeatureSet, metric: Metric, seed: int,
                       device=None) -> tuple[np.ndarray, np.ndarray]:
    """Median held-out r for every layer pair; all target layers' units share each source fit."""
    t_names = target.layer_names
    Ys = [target[t].units for t in t_names]
    if any(y is None for y in Ys):
        raise IdsimError("regression needs target units: extract the target with metric.plan('target')")
    Y = np.concatenate(Ys, axis=1)
    bounds = np.cumsum([0] + [y.shape[1] for y in Ys])
    S = np.full((len(source.layer_names), len(t_names)), np.nan)
    A = np.full_like(S, np.nan)
    for i, s in enumerate(source.layer_names):
        X = source[s].features
        if X is None:
            raise IdsimError("regression needs source features: extract the source with metric.plan('source')")
        X = standardize_columns(X) if metric.standardize else np.asarray(X, dtype=np.float64)
        res = fit_predict_cv(X, Y, cv=metric.cv, alphas=metric.alphas, seed=seed, device=device,
                             precision=metric.precision)
        for j in range(len(t_names)):
            r = res.r[bounds[j]:bounds[j + 1]]
            S[i, j] = np.nanmedian(r) if np.isfinite(r).any() else np.nan
            A[i, j] = np.median(res.alpha[bounds[j]:bounds[j + 1]])
    return S, A
