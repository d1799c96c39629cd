"""Kind ``recording``: brain recordings as targets, and network targets degraded into simulated recordings.

Target names:

- ``target=recording``: a netCDF file in idsim's recording format (:mod:`idsim.recordings.assembly`)
  and its stimuli (``target.stimuli``, or the folder the file names);
- ``target=allen``: Allen Brain Observatory two-photon NWB files (:mod:`idsim.recordings.allen`),
  converted in the run; the stimuli are the files' natural-scenes template;
- any network target with ``target.recording.*`` set (:class:`SimulatedRecordingConfig`, a node of
  :class:`~idsim.systems.network.NetworkTargetConfig`): the network's layers as a recording of
  ``neurons`` units per layer, ``trials`` noisy repetitions (:mod:`idsim.recordings.simulate`).

Regions play the part of target layers. Every one of them goes through the same reliability
filter, trial averaging, reduction and ceilings (:class:`~idsim.recordings.target.RecordingTarget`).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, List, Optional

import numpy as np

from ..errors import IdsimError
from ..featureset import FeatureSet, Plan
from ..schema import Checked, ExtractionConfig, SystemConfig, int_at_least, is_number, one_of, opt, optional, positive
from .base import TARGET, System

log = logging.getLogger("idsim")

NOISES = ("none", "poisson", "gaussian")
RELIABILITY_VALID = ("null (keep every neuroid) or a number in [-1, 1]: keep the neuroids whose split-half reliability"
                     " (Spearman-Brown corrected) is at least this (the mouse paper: 0.8)")


def _reliability_ok(v: Any) -> bool:
    return v is None or (is_number(v) and -1 <= v <= 1)


def _regions_ok(v: Any) -> bool:
    return v is None or (len(v) > 0 and len(set(v)) == len(v))


@dataclass
class RecordingOptions(SystemConfig):
    """What every recording target shares (no ``name``: a base, not a target)."""

    regions: Optional[List[str]] = opt(None, "null (every region) or a non-empty list of distinct region names",
                                       _regions_ok)
    min_reliability: Optional[float] = opt(None, RELIABILITY_VALID, _reliability_ok)
    splits: int = opt(10, "an integer >= 1 (random split halves of the trials, averaged)", int_at_least(1))
    seed: Optional[int] = opt(None, "null (the run's seed) or an integer >= 0 (seeds the random split halves)",
                              optional(int_at_least(0)))


@dataclass
class RecordingConfig(RecordingOptions):
    """``target=recording``: a netCDF recording (README: Recordings as targets)."""

    name: str = "recording"
    kind: str = "recording"
    path: Optional[str] = opt(None, "the path of a netCDF recording file")
    stimuli: Optional[str] = opt(None, "null (the folder the file's `stimuli` attribute names) or a folder of images"
                                       " named <stimulus_id>.<ext>")

    def check(self, key: str) -> None:
        if self.path is None or not str(self.path).strip():
            raise IdsimError(f"{key}.path is not set: target=recording reads a netCDF file of responses"
                             f" ({key}.path=resp.nc; README: Recordings as targets)")


def _window_ok(v: Any) -> bool:
    return v is None or (len(v) == 2 and all(is_number(x) for x in v) and v[0] < v[1])


@dataclass
class AllenConfig(RecordingOptions):
    """``target=allen``: Allen Brain Observatory Visual Coding 2P NWB files of three_session_B sessions."""

    name: str = "allen"
    kind: str = "recording"
    nwb: List[str] = opt(valid="a non-empty list of three_session_B ophys NWB files, e.g. [a.nwb,b.nwb]",
                         check=lambda v: len(v) > 0, factory=list)
    window: Optional[List[float]] = opt(None, "null (each presentation's own frames) or [start, end] in seconds after"
                                              " onset, start < end", _window_ok)


@dataclass
class SimulatedRecordingConfig(Checked):
    """``target.recording``: the target network as a recording (all defaults: the network itself, ideal)."""

    neurons: Optional[int] = opt(None, "null (every unit) or an integer >= 1 (units sampled per layer)",
                                 optional(int_at_least(1)))
    trials: int = opt(1, "an integer >= 1 (repetitions of every stimulus)", int_at_least(1))
    noise: str = opt("none", "none, poisson (counts at a mean of `rate` per trial) or gaussian (at `snr`)",
                     one_of(*NOISES))
    rate: float = opt(5.0, "a positive number (mean Poisson count per trial of each neuron)", positive)
    snr: float = opt(1.0, "a positive number (signal variance over stimuli / noise variance of one trial)", positive)
    seed: Optional[int] = opt(None, "null (the run's seed) or an integer >= 0 (neuron sample, noise, split halves)",
                              optional(int_at_least(0)))
    min_reliability: Optional[float] = opt(None, RELIABILITY_VALID, _reliability_ok)
    splits: int = opt(10, "an integer >= 1 (random split halves of the trials, averaged)", int_at_least(1))

    @property
    def ideal(self) -> bool:
        """Every unit, one noise-free trial, no filter: the network itself."""
        return self.neurons is None and self.trials == 1 and self.noise == "none" and self.min_reliability is None

    def check(self, key: str) -> None:
        if self.min_reliability is not None and self.trials < 2:
            raise IdsimError(f"{key}.min_reliability={self.min_reliability} needs split-half reliabilities, so at"
                             f" least 2 trials; set {key}.trials=2 or more")


def config_class(name: str, role: str) -> type | None:
    if role != TARGET:
        return None
    return {"recording": RecordingConfig, "allen": AllenConfig}.get(name)


def build(config: RecordingOptions, label: str, role: str, run: Any) -> "RecordingSystem":
    if role != TARGET:
        raise IdsimError(f"{label}: a recording can only be the target")
    return RecordingSystem(config, label, role, seed=config.seed if config.seed is not None else run.seed)


def reduce_kwargs(settings: ExtractionConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`idsim.arrays.reduce_arrays` that an extraction config sets."""
    from ..devices import resolve_device

    return dict(device=resolve_device(settings.device), scratch=settings.scratch_dir,
                ram_budget=int(settings.ram_budget_mb * 2**20),
                exact_budget=None if settings.exact_max_mb is None else int(settings.exact_max_mb * 2**20),
                gram_dim=settings.gram_dim)


# --------------------------------------------------------------------------- recordings from files


class FileTrials:
    """A loaded :class:`~idsim.recordings.Recording`'s regions as a trial source."""

    def __init__(self, recording, regions: list[str]):
        self.recording, self._regions = recording, regions

    def regions(self) -> list[str]:
        return list(self._regions)

    def trials(self, region: str) -> np.ndarray:
        return self.recording.responses[:, :, self.recording.region_index(region)]

    def n_repetitions(self) -> int:
        return self.recording.n_repetitions if self.recording.has_trials else 1


class RecordingSystem(System):
    """A recording read from a netCDF file or Allen NWB files; its regions are the target layers."""

    def __init__(self, config: RecordingOptions, label: str, role: str, seed: int):
        super().__init__(config, label, role)
        self.seed = seed
        self._recording = None
        self._probe = None
        self._regions: list[str] | None = None
        self._target = None
        self._files: list[Path] = []

    @property
    def architecture(self) -> str:
        # a recording written by `python -m idsim.recordings simulate` names the network it came from
        rec = self._recording
        arch = rec.attrs.get("architecture") if rec is not None else None
        return str(arch) if arch else f"recording:{self.name}"

    def describe(self) -> str:
        rec = self._recording
        if rec is None:
            return self.label
        trials = f"{rec.n_repetitions} trials" if rec.has_trials else "trial-averaged"
        return (f"{self.label} [{len(rec.neuroid_ids)} neuroids in {len(self.layers())} regions, {rec.n_stimuli}"
                f" stimuli, {trials}]")

    def prepare(self) -> None:
        """Read and check the recording and its stimuli: every bad-file error comes before any extraction."""
        from ..recordings import allen, assembly
        from ..recordings.target import RecordingTarget

        cfg = self.config
        if isinstance(cfg, AllenConfig):
            self._files = [Path(p).expanduser() for p in cfg.nwb]
            rec = allen.read(self._files, cfg.window)
            probe = allen.stimuli(self._files, rec)
        else:
            self._files = [Path(cfg.path).expanduser()]
            rec = assembly.load(self._files[0])
            probe = stimuli_folder(rec, cfg.stimuli)
        regions = rec.region_names()
        if cfg.regions is not None:
            bad = [r for r in cfg.regions if r not in regions]
            if bad:
                raise IdsimError(f"target.regions: {bad[0]!r} is not a region of the recording; valid:"
                                 f" {', '.join(regions)}")
            regions = [str(r) for r in cfg.regions]
        if cfg.min_reliability is not None and not (rec.has_trials and rec.n_repetitions >= 2):
            raise IdsimError(f"target.min_reliability={cfg.min_reliability} needs single trials, but the recording's"
                             f" responses are trial-averaged (presentation × neuroid); store repetition ×"
                             f" presentation × neuroid, or set target.min_reliability=null")
        self._recording, self._probe, self._regions = rec, probe, regions
        self._target = RecordingTarget(FileTrials(rec, regions), cfg.min_reliability, cfg.splits, self.seed,
                                       self.label)

    def _ready(self):
        if self._recording is None:
            self.prepare()
        return self._target

    def layers(self) -> list[str]:
        self._ready()
        return list(self._regions or [])

    def stimuli(self):
        self._ready()
        return self._probe

    def identity(self) -> dict[str, Any]:
        self._ready()
        cfg = self.config
        files = []
        for p in self._files:
            st = p.stat()
            files.append({"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        return {"kind": "recording", "files": files, "regions": self.layers(), "min_reliability": cfg.min_reliability,
                "splits": cfg.splits, "seed": self.seed,
                "window": list(cfg.window) if getattr(cfg, "window", None) is not None else None}

    def extract(self, probe, plan: Plan, settings: ExtractionConfig) -> FeatureSet:
        return self._ready().features(plan, **reduce_kwargs(settings))

    def ceilings(self, metric, plan: Plan, features: FeatureSet, probe, settings: ExtractionConfig):
        return self._ready().ceilings(metric, plan, features)


def stimuli_folder(recording, stimuli: str | None):
    """The recording's stimuli as a probe set: images ``<stimulus_id>.<ext>`` in the recording's order."""
    from ..datasets.folders import DirStore, Entry, list_images, open_checked

    where = recording.path or "the recording"
    if stimuli is not None:
        root = Path(stimuli).expanduser()
        key = "target.stimuli"
    else:
        root = recording.stimuli_path()
        key = f"the `stimuli` attribute of {where}"
        if root is None:
            raise IdsimError(f"target.stimuli is not set and {where} names no stimuli folder (attribute `stimuli`);"
                             f" set target.stimuli=<folder of images named <stimulus_id>.<ext>>")
    if not root.is_dir():
        raise IdsimError(f"{key}={root} is not a folder; expected a folder of images named <stimulus_id>.<ext>")
    by_id: dict[str, str] = {}
    for rel in list_images(root, recursive=False):
        sid = Path(rel).stem
        if sid in by_id:
            raise IdsimError(f"{root}: {by_id[sid]} and {rel} are both images of stimulus {sid!r}")
        by_id[sid] = rel
    ids = recording.stimulus_ids
    missing = [s for s in ids if s not in by_id]
    if missing:
        raise IdsimError(f"{len(missing)} of {len(ids)} stimuli of {where} have no image in {root}"
                         f" ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); expected files named"
                         f" <stimulus_id>.<ext>")
    extra = sorted(set(by_id) - set(ids))
    if extra:
        raise IdsimError(f"{len(extra)} images in {root} have no responses in {where}"
                         f" ({', '.join(by_id[s] for s in extra[:3])}{' ...' if len(extra) > 3 else ''}); remove them"
                         f" or point target.stimuli at the recording's own stimuli")
    entries = [Entry(by_id[s], s, None) for s in ids]
    return open_checked("recording", DirStore(root.resolve()), entries, {"source": "recording"}, n_images=None,
                        skip_unreadable=False)


# --------------------------------------------------------------------------- simulated recordings


class SimulatedTrials:
    """A network's sampled units as noisy trials (:func:`idsim.recordings.simulate_trials`)."""

    def __init__(self, values: FeatureSet, sim: SimulatedRecordingConfig, seed: int):
        self.values, self.sim, self.seed = values, sim, seed
        self._last: tuple[str, np.ndarray] | None = None

    def regions(self) -> list[str]:
        return self.values.layer_names

    def trials(self, region: str) -> np.ndarray:
        from ..recordings.simulate import simulate_trials

        if self._last is None or self._last[0] != region:  # the filter, the averages and the RSA ceiling reuse it
            s = self.sim
            x = simulate_trials(self.values[region].units, s.trials, s.noise, s.rate, s.snr, self.seed, region)
            self._last = (region, x)
        return self._last[1]

    def n_repetitions(self) -> int:
        return self.sim.trials

    def unit_index(self, region: str) -> np.ndarray:
        return self.values[region].unit_index


class SimulatedRecordingSystem(System):
    """A network target seen through a simulated recording; its architecture stays the network's."""

    def __init__(self, network: System, sim: SimulatedRecordingConfig, run: Any):
        super().__init__(network.config, network.label, TARGET)
        self.network, self.sim = network, sim
        self.seed = sim.seed if sim.seed is not None else run.seed
        self.cache_root = run.cache.dir if run.cache.enabled else None
        self._target = None

    @property
    def architecture(self) -> str:
        return self.network.architecture

    def describe(self) -> str:
        s = self.sim
        noise = {"none": "no noise", "poisson": f"Poisson noise at {s.rate:g} counts/trial",
                 "gaussian": f"Gaussian noise at SNR {s.snr:g}"}[s.noise]
        return (f"{self.network.describe()} as a recording of {s.neurons or 'all'} units/layer, {s.trials} trials,"
                f" {noise}")

    def prepare(self) -> None:
        self.network.prepare()

    def layers(self) -> list[str]:
        return self.network.layers()

    def values_plan(self) -> Plan:
        """What is kept of the network: the exact values of ``neurons`` sampled non-constant units per layer."""
        return Plan(grams=(), units=True, max_units=self.sim.neurons, drop_constant=True, seed=self.seed)

    def identity(self) -> dict[str, Any]:
        return {"kind": "simulated_recording", "network": self.network.identity(),
                "recording": {**asdict(self.sim), "seed": self.seed}}

    def recording(self, probe, settings: ExtractionConfig):
        """The simulated recording on ``probe`` (the network's values come from the feature cache when there)."""
        from ..cache import cached_features
        from ..recordings.target import RecordingTarget

        if self._target is None:
            values, _ = cached_features(self.network, probe, self.values_plan(), settings, self.cache_root)
            trials = SimulatedTrials(values, self.sim, self.seed)
            self._target = RecordingTarget(trials, self.sim.min_reliability, self.sim.splits, self.seed, self.label)
        return self._target

    def extract(self, probe, plan: Plan, settings: ExtractionConfig) -> FeatureSet:
        return self.recording(probe, settings).features(plan, **reduce_kwargs(settings))

    def ceilings(self, metric, plan: Plan, features: FeatureSet, probe, settings: ExtractionConfig):
        return self.recording(probe, settings).ceilings(metric, plan, features)


__all__ = ["RecordingConfig", "AllenConfig", "SimulatedRecordingConfig", "RecordingSystem",
           "SimulatedRecordingSystem", "stimuli_folder", "config_class", "build"]
