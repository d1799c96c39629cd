"""The recording format: a netCDF file (xarray) of responses to stimuli, as Brain-Score's neural assemblies.

A file holds one variable ``responses`` with dims

- ``presentation × neuroid`` (trial-averaged responses), or
- ``repetition × presentation × neuroid`` (single trials: needed for reliability and ceilings),

with coordinates ``stimulus_id`` on ``presentation`` (one presentation per stimulus) and
``neuroid_id`` and ``region`` on ``neuroid``, plus any others (cell type, depth...), which are
kept. The stimuli are a folder of images named ``<stimulus_id>.<ext>``: given when the file is
used (``target.stimuli``) or stored in the file's attribute ``stimuli`` (a path, relative to the
file's folder unless absolute).

:func:`load` reads and checks a file; each problem is one :class:`~idsim.errors.IdsimError` line
(missing ``stimulus_id``, wrong dims, NaNs...). :func:`write` writes the format.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import IdsimError

log = logging.getLogger("idsim")

RESPONSES = "responses"
TRIAL_DIMS = ("repetition", "presentation", "neuroid")
MEAN_DIMS = ("presentation", "neuroid")
FORMAT = ("a netCDF file with a variable `responses` of dims (presentation, neuroid) or (repetition, presentation,"
          " neuroid), coordinates stimulus_id on presentation and neuroid_id and region on neuroid")


@dataclass
class Recording:
    """Responses of neuroids (grouped in regions) to stimuli, with trials when the file has them."""

    responses: np.ndarray                 # (repetition, presentation, neuroid) float32; repetition = 1 if averaged
    stimulus_ids: list[str]
    neuroid_ids: list[str]
    regions: np.ndarray                   # (neuroid,) region of each neuroid (str)
    has_trials: bool                      # the file holds single trials (a repetition dim)
    neuroid_coords: dict[str, np.ndarray] = field(default_factory=dict)  # every coordinate on neuroid
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_repetitions(self) -> int:
        return self.responses.shape[0]

    @property
    def n_stimuli(self) -> int:
        return self.responses.shape[1]

    def region_names(self) -> list[str]:
        """Regions in order of first appearance along ``neuroid``."""
        return list(dict.fromkeys(self.regions.tolist()))

    def region_index(self, region: str) -> np.ndarray:
        return np.flatnonzero(self.regions == region)

    def stimuli_path(self) -> Path | None:
        """The stimuli folder stored in the file's attributes (relative to the file's folder), or None."""
        value = self.attrs.get("stimuli")
        if not value:
            return None
        p = Path(str(value)).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p


def _where(path: Path | str | None) -> str:
    return str(path) if path is not None else "the assembly"


def from_dataarray(da, path: Path | str | None = None, attrs: Mapping[str, Any] | None = None) -> Recording:
    """A checked :class:`Recording` from an xarray DataArray of responses (see the module docs)."""
    where = _where(path)
    dims = tuple(str(d) for d in da.dims)
    if set(dims) == set(TRIAL_DIMS) and len(dims) == 3:
        da = da.transpose(*TRIAL_DIMS)
        has_trials = True
    elif set(dims) == set(MEAN_DIMS) and len(dims) == 2:
        da = da.transpose(*MEAN_DIMS)
        has_trials = False
    else:
        raise IdsimError(f"{where}: responses has dims ({', '.join(dims)}); expected (presentation, neuroid) or"
                         f" (repetition, presentation, neuroid)")
    for coord, dim in (("stimulus_id", "presentation"), ("neuroid_id", "neuroid"), ("region", "neuroid")):
        if coord not in da.coords:
            raise IdsimError(f"{where}: no `{coord}` coordinate on {dim}; expected {FORMAT}")
        if tuple(da.coords[coord].dims) != (dim,):
            raise IdsimError(f"{where}: coordinate `{coord}` has dims {tuple(da.coords[coord].dims)}; expected ({dim},)")
    if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.complexfloating):
        raise IdsimError(f"{where}: responses are of type {da.dtype}; expected real numbers")
    values = np.asarray(da.values, dtype=np.float32)
    if not has_trials:
        values = values[None]
    bad = ~np.isfinite(values)
    if bad.any():
        r, p, u = (int(i[0]) for i in np.nonzero(bad))
        at = f"repetition {r}, " if has_trials else ""
        raise IdsimError(f"{where}: responses hold {int(bad.sum())} NaN or infinite values (first at {at}presentation"
                         f" {p}, neuroid {u}); remove or impute them")
    stim = [str(s) for s in np.asarray(da.coords["stimulus_id"].values).tolist()]
    ids = [str(s) for s in np.asarray(da.coords["neuroid_id"].values).tolist()]
    regions = np.asarray([str(s) for s in np.asarray(da.coords["region"].values).tolist()], dtype=object)
    _unique(stim, "stimulus_id", "presentation", where, " (single trials go on a repetition dim)")
    _unique(ids, "neuroid_id", "neuroid", where, "")
    if values.shape[1] < 3:
        raise IdsimError(f"{where}: {values.shape[1]} presentations; at least 3 stimuli are needed")
    if values.shape[2] < 1:
        raise IdsimError(f"{where}: no neuroids")
    coords = {str(k): np.asarray(v.values) for k, v in da.coords.items() if tuple(v.dims) == ("neuroid",)}
    return Recording(responses=np.ascontiguousarray(values), stimulus_ids=stim, neuroid_ids=ids, regions=regions,
                     has_trials=has_trials, neuroid_coords=coords, attrs={**dict(da.attrs), **dict(attrs or {})},
                     path=Path(path) if path is not None else None)


def _unique(values: Sequence[str], name: str, dim: str, where: str, hint: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            n = len(values) - len(set(values))
            raise IdsimError(f"{where}: {name} {v!r} appears on more than one {dim} ({n} duplicates){hint}")
        seen.add(v)


def load(path: Path | str) -> Recording:
    """Read and check a recording file (see the module docs)."""
    import xarray as xr

    p = Path(path).expanduser()
    if not p.is_file():
        raise IdsimError(f"recording {path}: no such file; expected {FORMAT}")
    try:
        with xr.open_dataset(p) as ds:
            ds.load()
    except Exception as err:  # not netCDF, unreadable, no engine
        raise IdsimError(f"recording {path}: cannot read it as netCDF ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); expected {FORMAT}") from err
    if RESPONSES not in ds.data_vars:
        names = ", ".join(map(str, ds.data_vars)) or "none"
        raise IdsimError(f"recording {path}: no variable `{RESPONSES}` (variables: {names}); expected {FORMAT}")
    return from_dataarray(ds[RESPONSES], p, attrs=ds.attrs)


def write(path: Path | str, responses: np.ndarray, stimulus_ids: Sequence[Any], neuroid_ids: Sequence[Any],
          regions: Sequence[Any], neuroid_coords: Mapping[str, Sequence[Any]] | None = None,
          attrs: Mapping[str, Any] | None = None) -> Path:
    """Write responses (``(presentation, neuroid)`` or ``(repetition, presentation, neuroid)``) in the format."""
    import xarray as xr

    responses = np.asarray(responses, dtype=np.float32)
    dims = TRIAL_DIMS if responses.ndim == 3 else MEAN_DIMS
    if responses.ndim not in (2, 3):
        raise IdsimError(f"responses must be 2-D or 3-D, got shape {responses.shape}")
    coords: dict[str, Any] = {"stimulus_id": ("presentation", [str(s) for s in stimulus_ids]),
                              "neuroid_id": ("neuroid", [str(s) for s in neuroid_ids]),
                              "region": ("neuroid", [str(s) for s in regions])}
    for k, v in (neuroid_coords or {}).items():
        if k not in coords:
            v = np.asarray(v)
            coords[k] = ("neuroid", v.astype(str) if v.dtype == object else v)
    if responses.ndim == 3:
        coords["repetition"] = ("repetition", np.arange(responses.shape[0]))
    da = xr.DataArray(responses, dims=dims, coords=coords, name=RESPONSES)
    ds = da.to_dataset()
    ds.attrs.update({str(k): (v if isinstance(v, (int, float, np.number)) else str(v))
                     for k, v in (attrs or {}).items() if v is not None})
    out = Path(path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    ds.to_netcdf(tmp, engine=_engine())
    tmp.replace(out)
    return out


def _engine() -> str | None:
    """A netCDF-4 writer: h5netcdf (on h5py), else netCDF4, else xarray's choice."""
    import importlib.util

    for engine, module in (("h5netcdf", "h5netcdf"), ("netcdf4", "netCDF4")):
        if importlib.util.find_spec(module) is not None:
            return engine
    return None


def write_images(probe, folder: Path | str, fmt: str = "png") -> Path:
    """The images of a probe set as ``<folder>/<stimulus_id>.<fmt>`` (lossless PNG by default)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(probe)):
        sid = str(probe.stimulus_id(i))
        if "/" in sid or sid.startswith("."):
            raise IdsimError(f"stimulus_id {sid!r} cannot be a file name")
        probe.image(i).save(folder / f"{sid}.{fmt}")
    return folder


__all__ = ["Recording", "load", "write", "from_dataarray", "write_images", "FORMAT"]
