"""``dataset=allen_scenes``: the 118 natural scenes of the Allen Brain Observatory (Visual Coding 2P).

These are the images of the mouse-cortex model-zoo analyses (Conwell et al.): grayscale
photographs shown in session type ``three_session_B``. Three ways to provide them, used in this
order, whichever the options name first:

1. ``root``: a folder of the scene images, one file per scene whose name holds the scene index
   (``0.png`` ... ``117.png``, ``scene_017.tiff``...; any image format);
2. ``nwb``: a local Visual Coding ophys NWB (HDF5) file of a ``three_session_B`` session; the
   scenes are its stimulus template ``stimulus/templates/natural_scenes_image_stack`` (a group
   whose ``data`` is (118, 918, 1174) with uint8 values), read lazily one image at a time;
3. ``download: true``: AllenSDK's ``BrainObservatoryCache`` (``pip install allensdk``, internet)
   fetches the NWB file of a ``three_session_B`` experiment into ``cache_dir`` (or wherever
   ``manifest_file`` says), which is then read as in 2.

Images are made 3-channel by repeating the gray plane; ``stimulus_id`` is the scene index.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from ..errors import IdsimError
from ..schema import int_at_least, opt, optional
from . import cache_dir as idsim_cache_dir
from . import cap
from .base import ProbeSet
from .folders import DirStore, Entry, FileOptions, FileProbeSet, list_images, open_checked, root_dir

log = logging.getLogger("idsim")

#: where Allen's ophys NWB files keep the natural-scene stimulus template
TEMPLATE_KEY = "stimulus/templates/natural_scenes_image_stack"
SESSION_TYPE = "three_session_B"
N_SCENES = 118

HOW = ("dataset=allen_scenes needs the Allen Brain Observatory natural scenes: set dataset.root=<folder of the"
       " scene images named by index, 0.png ... 117.png>, dataset.nwb=<a three_session_B ophys NWB file>, or"
       " dataset.download=true (AllenSDK's BrainObservatoryCache: pip install allensdk, needs internet)")
ROOT_LAYOUT = "a folder of the scene images, one per scene, named by scene index (0.png ... 117.png, any format)"


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """A template frame as uint8: values are 0..255 (Allen stores some stacks as float32), clipped."""
    if frame.dtype == np.uint8:
        return frame
    return np.clip(np.rint(frame.astype(np.float64)), 0, 255).astype(np.uint8)


class TemplateProbeSet(ProbeSet):
    """Scenes read lazily from an HDF5 image stack of shape (n, H, W) or (n, H, W, 3).

    The file is opened once per process on first use and never pickled (DataLoader workers
    open their own handle).
    """

    name = "allen_scenes"

    def __init__(self, path: Path, key: str = TEMPLATE_KEY, origin: dict[str, Any] | None = None):
        import h5py

        self.path, self.key, self.origin = Path(path), key, dict(origin or {})
        self._h5: Any = None
        self._pid = -1
        try:
            with h5py.File(self.path, "r") as f:
                ds = self._find(f)
                self.shape, self.dtype = tuple(int(s) for s in ds.shape), str(ds.dtype)
        except OSError as err:
            raise IdsimError(f"dataset.nwb={path}: not a readable NWB/HDF5 file ({err})") from err
        if not (len(self.shape) == 3 or (len(self.shape) == 4 and self.shape[3] in (1, 3))) or self.shape[0] < 1:
            raise IdsimError(f"{path}:{self._data_key} has shape {self.shape}; expected (n_scenes, height, width)"
                             f" grayscale or (n_scenes, height, width, 3)")
        if self.shape[0] != N_SCENES:
            log.info("allen_scenes: %s holds %d scenes (the Brain Observatory set has %d)", path, self.shape[0],
                     N_SCENES)
        st = self.path.stat()
        self._stat = (st.st_size, st.st_mtime_ns)

    def _find(self, f):
        """The image dataset at ``key``: the node itself, or its ``data`` when it is an NWB TimeSeries group."""
        import h5py

        node = f.get(self.key)
        if isinstance(node, h5py.Group) and isinstance(node.get("data"), h5py.Dataset):
            self._data_key = f"{self.key}/data"
            return node["data"]
        if isinstance(node, h5py.Dataset):
            self._data_key = self.key
            return node
        raise IdsimError(f"{self.path} has no natural-scenes template at {self.key} (nor {self.key}/data):"
                         f" is it the NWB file of a {SESSION_TYPE} session? (set dataset.nwb_key if stored elsewhere)")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_h5": None, "_pid": -1}

    def _dataset(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._h5[self._data_key]

    def __len__(self) -> int:
        return self.shape[0]

    def image(self, i: int) -> Image.Image:
        frame = to_uint8(np.asarray(self._dataset()[i]))
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        return Image.fromarray(np.ascontiguousarray(frame), "RGB")

    def stimulus_id(self, i: int) -> str:
        return str(i)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "source": "nwb", "key": self._data_key, "shape": list(self.shape),
                "dtype": self.dtype, "file_size": self._stat[0], "file_mtime_ns": self._stat[1], **self.origin}


def _scene_index(rel: str) -> int | None:
    """The scene index in a file name: its last run of digits (``natural_scene_017.png`` -> 17)."""
    digits = re.findall(r"\d+", Path(rel).stem)
    return int(digits[-1]) if digits else None


def from_folder(root: Path, n_images: int | None, skip_unreadable: bool) -> FileProbeSet:
    """Source 1: scene image files named by index, in index order."""
    rels = list_images(root, recursive=False)
    if not rels:
        raise IdsimError(f"dataset.root={root} has no images; expected {ROOT_LAYOUT}")
    by_index: dict[int, str] = {}
    unnamed = []
    for rel in rels:
        idx = _scene_index(rel)
        if idx is None:
            unnamed.append(rel)
        elif idx in by_index:
            raise IdsimError(f"dataset.root={root}: {by_index[idx]} and {rel} both claim scene {idx}; expected {ROOT_LAYOUT}")
        else:
            by_index[idx] = rel
    if unnamed:
        raise IdsimError(f"dataset.root={root}: {len(unnamed)} image name(s) hold no scene index"
                         f" ({', '.join(unnamed[:3])}); expected {ROOT_LAYOUT}")
    entries = [Entry(by_index[i], str(i), None) for i in sorted(by_index)]
    return open_checked("allen_scenes", DirStore(root), entries, {"source": "folder"}, n_images=n_images,
                        skip_unreadable=skip_unreadable)


def fetch_nwb(manifest_file: Path, experiment_id: int | None) -> tuple[Path, int]:
    """Source 3: download (or find in AllenSDK's cache) the NWB file of a three_session_B experiment.

    ``experiment_id`` None picks the lowest-numbered passing three_session_B experiment, so the
    choice is reproducible. Returns the local NWB path and the experiment id.
    """
    try:
        from allensdk.core.brain_observatory_cache import BrainObservatoryCache
    except ImportError as err:
        raise IdsimError("dataset.download=true needs the allensdk package, which is not installed"
                         " (pip install allensdk); or give dataset.root or dataset.nwb") from err
    try:
        manifest_file.parent.mkdir(parents=True, exist_ok=True)
        boc = BrainObservatoryCache(manifest_file=str(manifest_file))
        if experiment_id is None:
            exps = boc.get_ophys_experiments(session_types=[SESSION_TYPE])
            if not exps:
                raise IdsimError(f"AllenSDK lists no {SESSION_TYPE} experiments; give dataset.root or dataset.nwb")
            experiment_id = min(int(e["id"]) for e in exps)
        else:
            exps = boc.get_ophys_experiments(ids=[experiment_id])
            if not exps:
                raise IdsimError(f"dataset.experiment_id={experiment_id}: no such Brain Observatory ophys experiment")
            if exps[0].get("session_type") != SESSION_TYPE:
                raise IdsimError(f"dataset.experiment_id={experiment_id} is a {exps[0].get('session_type')} session;"
                                 f" the natural scenes are shown in {SESSION_TYPE} sessions")
        log.info("allen_scenes: fetching the NWB file of experiment %d through AllenSDK (cache %s)", experiment_id,
                 manifest_file.parent)
        data = boc.get_ophys_experiment_data(experiment_id)
    except IdsimError:
        raise
    except Exception as err:  # network, HTTP, disk: AllenSDK raises many types
        raise IdsimError(f"AllenSDK could not fetch the natural scenes ({type(err).__name__}: {err}); check the"
                         f" network, or give dataset.root or dataset.nwb") from err
    return Path(data.nwb_file), int(experiment_id)


def _nonempty(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip().strip("/"))


@dataclass
class AllenScenesOptions(FileOptions):
    """``dataset=allen_scenes``: from ``root``, else ``nwb``, else AllenSDK when ``download`` is true
    (conf/dataset/allen_scenes.yaml). ``root``: a folder of the scene images named by index (0.png ...
    117.png, any format); ``n_images`` null: all scenes, N: scenes 0..N-1; ``skip_unreadable``: root only."""

    name: str = "allen_scenes"
    # a three_session_B ophys NWB file (template read lazily with h5py)
    nwb: Optional[str] = opt(None, "null or the path of a three_session_B ophys NWB file")
    # the template's HDF5 path (a group with `data`, or a dataset)
    nwb_key: str = opt(TEMPLATE_KEY, f"an HDF5 path such as {TEMPLATE_KEY}", _nonempty)
    # true: fetch an NWB file with AllenSDK's BrainObservatoryCache (pip install allensdk; internet)
    download: bool = False
    # AllenSDK's download folder (its manifest.json lives here); the YAML puts it under the run's cache.dir
    cache_dir: str = opt(valid="a folder path (AllenSDK's download folder)", check=_nonempty,
                         factory=lambda: idsim_cache_dir("allen_brain_observatory"))
    # an existing AllenSDK manifest instead (also selects the AllenSDK source)
    manifest_file: Optional[str] = opt(None, "null or the path of an AllenSDK manifest file",
                                       optional(_nonempty))
    # null: the lowest-numbered three_session_B experiment; or an ophys experiment id
    experiment_id: Optional[int] = opt(None, "null (the lowest-numbered three_session_B experiment) or an ophys"
                                             " experiment id (an integer)", optional(int_at_least(0)))

    def build(self) -> ProbeSet:
        root, nwb, download = self.root, self.nwb, self.download
        chosen = [k for k, v in (("root", root), ("nwb", nwb), ("download", download or None)) if v is not None]
        if len(chosen) > 1:
            log.warning("allen_scenes: %s given; using %s (order: root, nwb, download)", " and ".join(chosen),
                        chosen[0])
        key = self.nwb_key.strip("/")
        if root is not None:
            probe: ProbeSet = from_folder(root_dir(root, "allen_scenes", ROOT_LAYOUT), self.n_images,
                                          self.skip_unreadable)
        elif nwb is not None:
            path = Path(nwb).expanduser()
            if not path.is_file():
                raise IdsimError(f"dataset.nwb={nwb}: no such file; expected a {SESSION_TYPE} ophys NWB file")
            probe = TemplateProbeSet(path, key, {"source": "nwb"})
        elif download or self.manifest_file is not None:
            manifest_file = (Path(self.manifest_file).expanduser() if self.manifest_file is not None
                             else Path(self.cache_dir).expanduser() / "manifest.json")
            path, exp = fetch_nwb(manifest_file, self.experiment_id)
            probe = TemplateProbeSet(path, key, {"source": "allensdk", "experiment_id": exp})
        else:
            raise IdsimError(HOW)
        return cap(probe, self.n_images)
