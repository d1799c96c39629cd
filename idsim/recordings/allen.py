"""Allen Brain Observatory Visual Coding (two-photon) NWB files as a recording, read with h5py as AllenSDK does.

From each ``three_session_B`` ophys NWB (1.x, HDF5) file:

- dF/F traces: ``processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/data``
  (cells × imaging frames) and its ``timestamps`` (s);
- cell ids: ``processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids``;
- the natural-scenes stimulus table: ``stimulus/presentation/natural_scenes_stimulus/data``
  (scene index per presentation, -1 = blank) and ``frame_duration`` (first and last imaging
  frame of each presentation, end exclusive), as AllenSDK's
  ``get_natural_scenes_stimulus_table``;
- metadata: the targeted structure (``general/optophysiology/imaging_plane_1/location``, e.g.
  ``VISp``: the neuroids' ``region``), imaging depth (``depth_um``), session id
  (``experiment_id``), session type, genotype (``cre_line``: its first part, as AllenSDK);
- the stimulus template ``stimulus/templates/natural_scenes_image_stack/data`` (the probe images).

**Response of a trial**: the mean dF/F over the presentation's own imaging frames (from its
start frame up to, not including, its end frame: about 7 frames, the 250 ms the scene is shown),
as AllenSDK's ``mean_sweep_response``; or, with ``window=(a, b)``, over the frames whose
timestamps fall in ``[onset + a, onset + b)`` seconds. Trials of a scene are kept in time order;
every scene gets the same number of repetitions (the smallest count over scenes and files; the
extra ones are dropped and logged).

Several files (areas, depths, mice) merge into one assembly: their neuroids are concatenated and
the scene sets must agree.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..datasets.base import ProbeSet
from ..errors import IdsimError
from .assembly import Recording

log = logging.getLogger("idsim")

PIPELINE = "processing/brain_observatory_pipeline"
DFF = f"{PIPELINE}/DfOverF/imaging_plane_1"
CELL_IDS = f"{PIPELINE}/ImageSegmentation/cell_specimen_ids"
SCENES = "stimulus/presentation/natural_scenes_stimulus"
TEMPLATE = "stimulus/templates/natural_scenes_image_stack"
META = {"region": "general/optophysiology/imaging_plane_1/location",
        "imaging_depth": "general/optophysiology/imaging_plane_1/imaging depth",
        "experiment_id": "general/session_id", "session_type": "general/session_type",
        "genotype": "general/subject/genotype"}
SESSION_TYPE = "three_session_B"


@dataclass
class Session:
    """One file's trials: responses (repetition × scene × cell) and what describes them."""

    path: Path
    responses: np.ndarray
    scenes: np.ndarray          # scene index of each column of ``responses`` (sorted)
    cell_ids: np.ndarray
    meta: dict[str, Any]


def _text(f, key: str) -> str | None:
    node = f.get(key)
    if node is None:
        return None
    v = node[()]
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0]
        return v.decode() if isinstance(v, bytes) else str(v)
    return str(v)


def _need(f, key: str, path: Path, what: str):
    node = f.get(key)
    if node is None:
        raise IdsimError(f"{path}: no {what} at {key}; expected a Visual Coding two-photon NWB file of a {SESSION_TYPE}"
                         f" session (natural scenes)")
    return node


def read_session(path: Path | str, window: Sequence[float] | None = None) -> Session:
    """One NWB file's natural-scene trials (module docs)."""
    import h5py

    path = Path(path).expanduser()
    if not path.is_file():
        raise IdsimError(f"{path}: no such NWB file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise IdsimError(f"{path}: not a readable NWB (HDF5) file ({err})") from err
    with f:
        meta = {k: _text(f, v) for k, v in META.items()}
        if meta["session_type"] not in (None, SESSION_TYPE) and SCENES not in f:
            raise IdsimError(f"{path} is a {meta['session_type']} session; natural scenes are shown in {SESSION_TYPE}"
                             f" sessions")
        scene = np.asarray(_need(f, f"{SCENES}/data", path, "natural-scenes stimulus table")[()]).astype(np.int64)
        frames = np.asarray(_need(f, f"{SCENES}/frame_duration", path, "presentation frames")[()]).astype(np.int64)
        dff = np.asarray(_need(f, f"{DFF}/data", path, "dF/F traces")[()], dtype=np.float64)
        times = np.asarray(_need(f, f"{DFF}/timestamps", path, "dF/F timestamps")[()], dtype=np.float64)
        cells = np.asarray(_need(f, CELL_IDS, path, "cell specimen ids")[()])
    if frames.ndim != 2 or frames.shape != (scene.size, 2):
        raise IdsimError(f"{path}: {SCENES}/frame_duration has shape {frames.shape}; expected ({scene.size}, 2)")
    if dff.ndim != 2 or dff.shape[1] != times.size:
        raise IdsimError(f"{path}: dF/F has shape {dff.shape} but {times.size} timestamps")
    if cells.size != dff.shape[0]:
        raise IdsimError(f"{path}: {cells.size} cell specimen ids for {dff.shape[0]} dF/F traces")
    shown = scene >= 0
    scene, frames = scene[shown], frames[shown]
    if scene.size == 0:
        raise IdsimError(f"{path}: the natural-scenes stimulus table has no scene presentations")
    start, end = _windows(frames, times, window, path)
    csum = np.concatenate([np.zeros((dff.shape[0], 1)), np.cumsum(dff, axis=1)], axis=1)
    trial = (csum[:, end] - csum[:, start]) / (end - start)         # cells × presentations
    scenes = np.unique(scene)
    counts = np.array([(scene == s).sum() for s in scenes])
    reps = int(counts.min())
    if counts.max() != reps:
        log.info("%s: scenes shown %d to %d times; keeping the first %d trials of each", path.name, counts.min(),
                 counts.max(), reps)
    responses = np.empty((reps, scenes.size, dff.shape[0]), dtype=np.float32)
    for j, s in enumerate(scenes):
        responses[:, j, :] = trial[:, np.flatnonzero(scene == s)[:reps]].T
    return Session(path=path, responses=responses, scenes=scenes, cell_ids=cells, meta=meta)


def _windows(frames: np.ndarray, times: np.ndarray, window, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) imaging frames of every presentation's response window."""
    n = times.size
    if window is None:
        start, end = frames[:, 0], frames[:, 1]
    else:
        a, b = float(window[0]), float(window[1])
        onset = times[np.clip(frames[:, 0], 0, n - 1)]
        start = np.searchsorted(times, onset + a, side="left")
        end = np.searchsorted(times, onset + b, side="left")
    bad = (start < 0) | (end > n) | (end <= start)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IdsimError(f"{path}: presentation {i} has no imaging frame in its response window (frames {start[i]} to"
                         f" {end[i]} of {n}); check the window")
    return start, end


def read(paths: Sequence[Path | str], window: Sequence[float] | None = None) -> Recording:
    """One assembly (repetition × presentation × neuroid) from one or more NWB files (module docs)."""
    if not paths:
        raise IdsimError("no NWB files given")
    sessions = [read_session(p, window) for p in paths]
    scenes = sessions[0].scenes
    for s in sessions[1:]:
        if not np.array_equal(s.scenes, scenes):
            raise IdsimError(f"{s.path} shows scenes {_span(s.scenes)} but {sessions[0].path} shows {_span(scenes)};"
                             f" merged files must show the same scenes")
    reps = min(s.responses.shape[0] for s in sessions)
    if any(s.responses.shape[0] != reps for s in sessions):
        log.info("allen: files have %s repetitions; keeping the first %d of each",
                 sorted({s.responses.shape[0] for s in sessions}), reps)
    responses = np.concatenate([s.responses[:reps] for s in sessions], axis=2)
    ids = [str(c) for s in sessions for c in s.cell_ids.tolist()]
    if len(set(ids)) != len(ids):  # the same cell in two files: tell them apart by experiment
        ids = [f"{s.meta.get('experiment_id') or s.path.stem}:{c}" for s in sessions for c in s.cell_ids.tolist()]
    coords: dict[str, np.ndarray] = {}
    for key in ("region", "experiment_id", "genotype"):
        coords[key] = np.asarray([str(s.meta.get(key) or "unknown") for s in sessions for _ in range(s.cell_ids.size)],
                                 dtype=object)
    coords["depth_um"] = np.asarray([_microns(s.meta.get("imaging_depth")) for s in sessions
                                     for _ in range(s.cell_ids.size)], dtype=np.float64)
    coords["cre_line"] = np.asarray([g.split(";")[0] for g in coords.pop("genotype")], dtype=object)
    coords["cell_specimen_id"] = np.asarray([str(c) for s in sessions for c in s.cell_ids.tolist()], dtype=object)
    coords["file"] = np.asarray([s.path.name for s in sessions for _ in range(s.cell_ids.size)], dtype=object)
    attrs = {"source": "Allen Brain Observatory Visual Coding 2P (natural scenes)",
             "response": "mean dF/F over each presentation's frames" if window is None else
             f"mean dF/F in [{window[0]}, {window[1]}) s after onset",
             "nwb_files": ", ".join(str(s.path) for s in sessions)}
    return Recording(responses=responses, stimulus_ids=[str(int(s)) for s in scenes], neuroid_ids=ids,
                     regions=coords["region"], has_trials=reps >= 2, neuroid_coords=coords, attrs=attrs, path=None)


def _microns(text: str | None) -> float:
    """``"175 microns"`` -> 175.0 (as AllenSDK's ``imaging_depth_um``); NaN when absent or unreadable."""
    import re

    m = re.match(r"\s*(-?\d+(?:\.\d+)?)", text or "")
    return float(m.group(1)) if m else float("nan")


def _span(scenes: np.ndarray) -> str:
    return f"{scenes.size} ({scenes.min()}..{scenes.max()})" if scenes.size else "none"


def stimuli(paths: Sequence[Path | str], recording: Recording):
    """The recording's stimuli: the first file's natural-scenes template, in the recording's order."""
    from ..datasets.allen import TemplateProbeSet

    probe = TemplateProbeSet(Path(paths[0]).expanduser(), TEMPLATE, {"source": "nwb"})
    index = [int(s) for s in recording.stimulus_ids]
    if max(index) >= len(probe):
        raise IdsimError(f"{paths[0]}: scene {max(index)} is shown but the template holds {len(probe)} images")
    if index == list(range(len(probe))):
        return probe
    return Subset(probe, index)


class Subset(ProbeSet):
    """Some images of a probe set, in a given order."""

    def __init__(self, probe: ProbeSet, index: Sequence[int]):
        self.probe, self.index, self.name = probe, list(index), probe.name

    def __len__(self) -> int:
        return len(self.index)

    def image(self, i: int):
        return self.probe.image(self.index[self._index(i)])

    def stimulus_id(self, i: int) -> str:
        return self.probe.stimulus_id(self.index[i])

    def identity(self) -> dict[str, Any]:
        return {**self.probe.identity(), "subset": self.index}


__all__ = ["read", "read_session", "stimuli", "Session"]
