"""Probe sets read from local image files: any folder, ImageNet validation, Brain-Score stimulus sets.

Every set here is a :class:`FileProbeSet`: a fixed, ordered list of image files, decoded by
Pillow and converted to RGB (grayscale repeated over three channels; 16-bit images scaled to
8 bits; an alpha channel dropped, as torchvision's and Brain-Score's loaders do). Each has an
options dataclass (:class:`FolderOptions`, :class:`ImagenetOptions`, :class:`HvmOptions`,
:class:`FreemanZiembaOptions`; shared fields in :class:`FileOptions`) whose ``build()`` reads the
files: what the files hold (a root that exists, a CSV, readable images) is checked there, the
option values by the options' own checks.

* ``dataset=folder``: every image under ``root`` (recursive), in sorted path order; label = the
  sub-folder relative to ``root`` (None for files directly in ``root``).
* ``dataset=imagenet``: an ImageNet validation folder in ImageFolder layout
  (``root/n01440764/*.JPEG``); the first ``images_per_class`` files of each class in sorted
  order, as Brain-Score takes them; label = the class folder (WordNet id).
* ``dataset=hvm`` / ``dataset=freeman_ziemba``: a Brain-Score stimulus set on disk, i.e. its CSV
  (``stimulus_id``, ``filename``, metadata) next to the images, the folder its zip unpacks to,
  or the zip itself (read in place).

Unreadable files are found when the set is opened, before any forward pass: every image is
decoded in full once (a truncated JPEG has a valid header; only decoding finds it), and the
verdict is remembered in ``<idsim cache>/decoded/`` by file size and modification time (zip
members: size and CRC-32), so later opens cost a ``stat`` per file. By default unreadable files
are an error that counts them and names the first ten; ``skip_unreadable: true`` drops exactly
those with a warning, and the run records how many (``target_units.csv``, ``n_images_skipped``).
Only the images a run can use are checked: with ``n_images`` set, the first ``n_images``
readable ones (the kept images are a prefix of the full set, so image ``i`` never depends on
``n_images``).

``identity()`` digests the relative paths, sizes and modification times of the kept files
(for zip members: sizes and CRC-32s) plus every option, so editing, adding or removing a file
changes it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from ..errors import IdsimError
from ..schema import ProbeSetOptions, int_at_least, one_of, opt, optional
from . import cap
from .base import ProbeSet

log = logging.getLogger("idsim")

#: file name endings read as images (compared case-insensitively)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_EXT_LIST = "jpg, jpeg, png, bmp, tif, tiff, webp"
_SHOW_BAD = 3  # how many missing paths an error message names
_SHOW_UNREADABLE = 10  # how many unreadable files an error message names (then "and N more")


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension and is not hidden (``._x.jpg`` is macOS metadata)."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB.

    16-bit and 32-bit grayscale (modes ``I;16*``, ``I``, ``F``) are scaled to 0..255 rather
    than clipped as ``Image.convert`` would: values up to 255 are kept, up to 65535 divided by
    257, anything else min-max scaled. Other modes go through ``Image.convert("RGB")``.
    """
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        hi, lo = float(a.max(initial=0.0)), float(a.min(initial=0.0))
        if lo < 0 or hi > 65535:
            a = (a - lo) * (255.0 / max(hi - lo, 1e-12))
        elif hi > 255:
            a = a / 257.0
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2), "RGB")
    return img.convert("RGB")


# --------------------------------------------------------------------------------------------
# where the bytes live: a folder, or a zip archive read in place
# --------------------------------------------------------------------------------------------

class DirStore:
    """Image files below a folder; keys are POSIX paths relative to it."""

    def __init__(self, base: Path):
        self.base = base

    def path(self, key: str) -> Path:
        return self.base / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> IO[bytes]:
        return self.path(key).open("rb")

    def describe(self, key: str) -> str:
        return str(self.path(key))

    def fingerprint(self, key: str) -> tuple[int, int]:
        st = self.path(key).stat()
        return st.st_size, st.st_mtime_ns

    def identity(self) -> dict[str, Any]:
        return {"store": "folder"}

    def location(self) -> str:
        return str(self.base)


class ZipStore:
    """Members of a zip archive (a Brain-Score stimulus zip), read without unpacking.

    The archive is opened lazily once per process; the handle is not pickled, so the set works
    with DataLoader worker processes.
    """

    def __init__(self, path: Path, prefix: str = ""):
        self.zip_path, self.prefix = path, prefix
        self._zf: zipfile.ZipFile | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zf": None, "_pid": -1}

    @property
    def zf(self) -> zipfile.ZipFile:
        if self._zf is None or self._pid != os.getpid():
            self._zf, self._pid = zipfile.ZipFile(self.zip_path), os.getpid()
        return self._zf

    def exists(self, key: str) -> bool:
        try:
            self.zf.getinfo(self.prefix + key)
            return True
        except KeyError:
            return False

    def open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self.zf.read(self.prefix + key))

    def describe(self, key: str) -> str:
        return f"{self.zip_path}:{self.prefix}{key}"

    def fingerprint(self, key: str) -> tuple[int, int]:
        info = self.zf.getinfo(self.prefix + key)
        return info.file_size, info.CRC

    def identity(self) -> dict[str, Any]:
        return {"store": "zip", "prefix": self.prefix}

    def location(self) -> str:
        return f"{Path(self.zip_path).resolve()}:{self.prefix}"


Store = DirStore | ZipStore


# --------------------------------------------------------------------------------------------
# the probe set
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One image of a file-based set: where it is, its stable id and its label."""

    key: str
    stimulus_id: str
    label: str | None = None


class FileProbeSet(ProbeSet):
    """Images from a fixed list of files, decoded with Pillow and converted to RGB.

    Build it with :func:`open_checked` (which checks the files); ``options`` are the choices
    that selected and ordered the files, recorded in :meth:`identity`.
    """

    def __init__(self, name: str, store: Store, entries: Sequence[Entry], options: dict[str, Any] | None = None,
                 unreadable: Sequence[str] = ()):
        self.name, self.store, self.entries = name, store, list(entries)
        self.options = dict(options or {})
        self._identity: dict[str, Any] | None = None
        self._unreadable = list(unreadable)

    @property
    def unreadable(self) -> list[str]:
        return list(self._unreadable)

    def __len__(self) -> int:
        return len(self.entries)

    def image(self, i: int) -> Image.Image:
        e = self.entries[i]
        try:
            with self.store.open(e.key) as fh, Image.open(fh) as img:
                img.load()  # decode now: the file closes when the block ends
                return img.copy() if img.mode == "RGB" else to_rgb(img)
        except (OSError, ValueError, SyntaxError, zipfile.BadZipFile) as err:
            raise IdsimError(f"cannot decode image {self.store.describe(e.key)} ({type(err).__name__}: {err});"
                             f" fix or remove the file") from err

    def stimulus_id(self, i: int) -> str:
        return self.entries[i].stimulus_id

    def label(self, i: int) -> str | None:
        return self.entries[i].label

    def path(self, i: int) -> str:
        """Where image ``i`` is read from (a file path, or ``archive.zip:member``)."""
        return self.store.describe(self.entries[i].key)

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            h = hashlib.sha256()
            for e in self.entries:
                size, stamp = self.store.fingerprint(e.key)
                h.update(json.dumps([e.key, e.stimulus_id, e.label, size, stamp]).encode())
                h.update(b"\n")
            self._identity = {"name": self.name, **self.store.identity(), "options": self.options,
                              "n_files": len(self.entries), "files_sha256": h.hexdigest()}
        return self._identity

    def __repr__(self) -> str:
        return f"FileProbeSet(name={self.name!r}, n_images={len(self)})"


def _short_reason(err: BaseException) -> str:
    """Pillow's error in a few words (its "cannot identify" message repeats the file object)."""
    text = " ".join(str(err).split())
    if "cannot identify image file" in text:
        return "not an image Pillow can read"
    if "truncated" in text:
        return "truncated"
    return f"{type(err).__name__}: {text}".strip().rstrip(":")


def unreadable_reason(store: Store, key: str) -> str | None:
    """None if the file decodes in full (every pixel), else why not."""
    try:
        if store.fingerprint(key)[0] == 0:
            return "empty file"
        with store.open(key) as fh, Image.open(fh) as img:
            img.load()
    except Exception as err:  # PIL raises many types for corrupt data
        return _short_reason(err)
    return None


class DecodeVerdicts:
    """Decode verdicts of one store's files, kept in ``<idsim cache>/decoded/<hash of its location>.json``.

    A verdict is reused while the file's fingerprint (size and mtime; zip: size and CRC-32) and
    Pillow's version are unchanged. A cache that cannot be written only costs speed.
    """

    def __init__(self, store: Store):
        import PIL

        from ..model_names import cache_root

        tag = f"{store.location()}|{PIL.__version__}"
        self.path = cache_root() / "decoded" / f"{hashlib.sha256(tag.encode()).hexdigest()[:24]}.json"
        try:
            self.data: dict[str, list] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def known(self, key: str, fp: tuple[int, int]) -> tuple[bool, str | None]:
        v = self.data.get(key)
        return (True, v[2]) if isinstance(v, list) and len(v) == 3 and v[:2] == list(fp) else (False, None)

    def put(self, key: str, fp: tuple[int, int], reason: str | None) -> None:
        self.data[key] = [*fp, reason]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.debug("could not save image decode verdicts to %s: %s", self.path, e)


def check_files(store: Store, entries: Sequence[Entry], want: int | None) -> tuple[list[Entry], list[tuple[str, str]]]:
    """(readable entries, [(path, reason)] of unreadable ones), in order, until ``want`` readable are found."""
    verdicts = DecodeVerdicts(store)
    kept: list[Entry] = []
    bad: list[tuple[str, str]] = []

    def verdict(e: Entry) -> str | None:
        try:
            fp = store.fingerprint(e.key)
        except (OSError, KeyError) as err:
            return f"cannot read it ({type(err).__name__}: {err})"
        seen, reason = verdicts.known(e.key, fp)
        if not seen:
            reason = unreadable_reason(store, e.key)
            verdicts.put(e.key, fp, reason)
        return reason

    todo = list(entries)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without the GIL
        while todo and (want is None or len(kept) < want):
            n = len(todo) if want is None else max(4 * workers, want - len(kept))
            chunk, todo = todo[:n], todo[n:]
            for e, reason in zip(chunk, pool.map(verdict, chunk)):
                if want is not None and len(kept) >= want:
                    break
                if reason is None:
                    kept.append(e)
                else:
                    bad.append((store.describe(e.key), reason))
    verdicts.save()
    return kept, bad


def open_checked(name: str, store: Store, entries: Sequence[Entry], options: dict[str, Any], *,
                 n_images: int | None, skip_unreadable: bool) -> FileProbeSet:
    """Check the files a run can use (decoded in full) and return the set.

    Files are checked in order until ``n_images`` readable ones are found (all of them when
    ``n_images`` is None). Unreadable files are an error counting them and naming the first
    ten, or with ``skip_unreadable`` are dropped with a warning giving their count.
    """
    kept, bad = check_files(store, entries, n_images)
    if bad:
        checked = len(kept) + len(bad)
        first = ", ".join(f"{p} ({r})" for p, r in bad[:_SHOW_UNREADABLE])
        more = f" and {len(bad) - _SHOW_UNREADABLE} more" if len(bad) > _SHOW_UNREADABLE else ""
        if not skip_unreadable:
            raise IdsimError(f"dataset {name}: {len(bad)} of {checked} image files checked are unreadable: {first}{more};"
                             f" fix or remove them, or set dataset.skip_unreadable=true to skip them")
        log.warning("dataset %s: skipped %d unreadable image file(s) of %d checked: %s%s", name, len(bad), checked,
                    first, more)
    return FileProbeSet(name, store, kept, {**options, "skip_unreadable": bool(skip_unreadable)},
                        unreadable=[p for p, _ in bad])


# --------------------------------------------------------------------------------------------
# options shared by the sets read from files
# --------------------------------------------------------------------------------------------

@dataclass
class FileOptions(ProbeSetOptions):
    """Options of every set read from local files (no ``name``: a base, not a probe set)."""

    # required: where the files are (absolute, or relative to the working directory); each set says its layout
    root: Optional[str] = opt(None, "a folder path")
    # null: every (selected) image; N: the first N (a prefix: never changes which images come first)
    n_images: Optional[int] = opt(None, "null (all images) or a positive integer (the first N)",
                                  optional(int_at_least(1)))
    # false: corrupt/unreadable files are an error naming them; true: skip them with a warning
    skip_unreadable: bool = False


def root_dir(value: Any, dataset: str, layout: str, key: str = "root") -> Path:
    """``value`` (the option ``key``) as an existing folder, or say what is expected."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise IdsimError(f"dataset.{key} is not set: dataset={dataset} reads local files (set dataset.{key}=/path),"
                         f" expected {layout}")
    path = Path(value).expanduser()
    if not path.exists():
        raise IdsimError(f"dataset.{key}={value} does not exist; expected {layout}")
    if not path.is_dir():
        raise IdsimError(f"dataset.{key}={value} is not a folder; expected {layout}")
    return path.resolve()


def _sort_key(rel: str) -> tuple[str, ...]:
    return tuple(PurePosixPath(rel).parts)


def list_images(root: Path, recursive: bool = True) -> list[str]:
    """Image files under ``root`` as POSIX paths relative to it, sorted by path components.

    Hidden files and folders are ignored; symbolic links are followed (each real folder once).
    """
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for f in filenames:
            if is_image_name(f) and os.path.isfile(os.path.join(dirpath, f)):
                found.append(f if rel_dir == "." else f"{rel_dir}/{f}")
    return sorted(found, key=_sort_key)


def interleave(entries: Sequence[Entry]) -> list[Entry]:
    """Round-robin over labels (in sorted label order, unlabelled last), keeping each label's own order.

    Any prefix is then balanced to within one image per label, and image ``i`` still depends
    only on the full list (not on how many images are taken).
    """
    groups: dict[str | None, list[Entry]] = {}
    for e in entries:
        groups.setdefault(e.label, []).append(e)
    queues = [groups[k] for k in sorted(groups, key=lambda lab: (lab is None, lab or ""))]  # unlabelled last
    out: list[Entry] = []
    for r in range(max((len(q) for q in queues), default=0)):
        out.extend(q[r] for q in queues if r < len(q))
    return out


# --------------------------------------------------------------------------------------------
# dataset=folder
# --------------------------------------------------------------------------------------------

FOLDER_LAYOUT = (f"a folder of images ({_EXT_LIST}), optionally in sub-folders whose names become the labels,"
                 " e.g. root/cats/a.jpg, root/dogs/b.png")


@dataclass
class FolderOptions(FileOptions):
    """``dataset=folder``: every image below ``root`` (required: the folder), in sorted path order (or
    interleaved by label) (conf/dataset/folder.yaml)."""

    name: str = "folder"
    # false: only files directly in root
    recursive: bool = True
    # sorted (by path, i.e. grouped by sub-folder) | interleaved (round-robin over labels)
    order: str = opt("sorted", "sorted (by path, grouped by sub-folder) or interleaved (round-robin over labels)",
                     one_of("sorted", "interleaved"))

    def build(self) -> ProbeSet:
        root = root_dir(self.root, "folder", FOLDER_LAYOUT)
        rels = list_images(root, self.recursive)
        if not rels:
            where = f"{_EXT_LIST}{', recursive' if self.recursive else ''}"
            raise IdsimError(f"dataset.root={root} has no images ({where}); expected {FOLDER_LAYOUT}")
        entries = [Entry(rel, rel, None if "/" not in rel else rel.rsplit("/", 1)[0]) for rel in rels]
        if self.order == "interleaved":
            entries = interleave(entries)
        probe = open_checked("folder", DirStore(root), entries, {"recursive": self.recursive, "order": self.order},
                             n_images=self.n_images, skip_unreadable=self.skip_unreadable)
        return cap(probe, self.n_images)


# --------------------------------------------------------------------------------------------
# dataset=imagenet
# --------------------------------------------------------------------------------------------

IMAGENET_LAYOUT = ("an ImageNet validation folder in ImageFolder layout, one sub-folder per class"
                   " (root/n01440764/ILSVRC2012_val_00000293.JPEG, ...); torchvision.datasets.ImageNet(root,"
                   " split='val') builds it from the official archives")
_WNID = re.compile(r"^n\d{8}$")


def _imagenet_root(root: Path) -> Path:
    """``root`` itself, or its ``val`` sub-folder when that is where the class folders are."""
    val = root / "val"
    if val.is_dir() and not any(d.is_dir() and _WNID.match(d.name) for d in root.iterdir()):
        return val
    return root


def imagenet_words() -> list[str]:
    """ImageNet-1k class names in class-index order (= sorted WordNet-id order), from torchvision."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass
class ImagenetOptions(FileOptions):
    """``dataset=imagenet``: the first ``images_per_class`` images of each class, interleaved by class
    (conf/dataset/imagenet.yaml). ``root`` (required): the validation folder with one sub-folder per
    class; ``n_images``: the first N in ``order``."""

    name: str = "imagenet"
    # the first k files of each class in sorted file-name order (null: all)
    images_per_class: Optional[int] = opt(3, "a positive integer (the first k files of each class) or null (all)",
                                          optional(int_at_least(1)))
    # interleaved: image i is the (i // n_classes)-th image of class (i % n_classes), so any prefix covers as
    # many classes as possible | class_major: class by class
    order: str = opt("interleaved", "interleaved (round-robin over classes) or class_major (class by class)",
                     one_of("interleaved", "class_major"))
    # wnid (folder name, e.g. n01440764) | words (torchvision's class names; needs all 1000 classes)
    labels: str = opt("wnid", "wnid (the class folder's name) or words (torchvision's class names)",
                      one_of("wnid", "words"))

    def build(self) -> ProbeSet:
        root = _imagenet_root(root_dir(self.root, "imagenet", IMAGENET_LAYOUT))
        k, labels = self.images_per_class, self.labels
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        loose = [f.name for f in root.iterdir() if f.is_file() and is_image_name(f.name)]
        if not classes:
            hint = f" (it holds {len(loose)} loose images: a flat folder, not class sub-folders)" if loose else ""
            raise IdsimError(f"dataset.root={root} has no class sub-folders{hint}; expected {IMAGENET_LAYOUT}")
        names: dict[str, str] = {c: c for c in classes}
        if labels == "words":
            if len(classes) != 1000 or not all(_WNID.match(c) for c in classes):
                raise IdsimError(f"dataset.labels=words needs the 1000 ImageNet class folders (n01440764 ...), found"
                                 f" {len(classes)} folders; use dataset.labels=wnid")
            names = dict(zip(classes, imagenet_words()))
        entries: list[Entry] = []
        empty: list[str] = []
        for c in classes:
            files = list_images(root / c)
            if not files:
                empty.append(c)
            for rel in files[:k]:
                entries.append(Entry(f"{c}/{rel}", PurePosixPath(rel).stem, names[c]))
        if not entries:
            raise IdsimError(f"dataset.root={root}: its {len(classes)} class folders hold no images ({_EXT_LIST});"
                             f" expected {IMAGENET_LAYOUT}")
        if empty:
            log.warning("dataset imagenet: %d class folder(s) without images ignored: %s", len(empty),
                        ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
        if self.order == "interleaved":
            entries = interleave(entries)
        probe = open_checked("imagenet", DirStore(root), entries,
                             {"images_per_class": k, "order": self.order, "labels": labels},
                             n_images=self.n_images, skip_unreadable=self.skip_unreadable)
        return cap(probe, self.n_images)


# --------------------------------------------------------------------------------------------
# Brain-Score stimulus sets (CSV + images): dataset=hvm, dataset=freeman_ziemba
# --------------------------------------------------------------------------------------------

def _pick_csv(root: Path, csv: str | None, dataset: str, layout: str) -> Path:
    if csv is not None:
        p = Path(csv).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise IdsimError(f"dataset.csv={csv}: no such file (looked for {p}); expected {layout}")
        return p
    found = sorted(p for p in root.glob("*.csv") if p.is_file() and not p.name.startswith("."))
    if not found:
        raise IdsimError(f"dataset.root={root} has no *.csv stimulus table; expected {layout}")
    if len(found) > 1:
        raise IdsimError(f"dataset.root={root} has {len(found)} CSV files ({', '.join(p.name for p in found[:5])});"
                         f" choose one with dataset.csv=NAME")
    return found[0]


def read_stimulus_csv(path: Path, required: Iterable[str], dataset: str):
    """The stimulus table as strings; legacy ``image_id`` stands in for ``stimulus_id``."""
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as err:
        raise IdsimError(f"dataset {dataset}: cannot read CSV {path} ({type(err).__name__}: {err})") from err
    df.columns = [str(c).strip() for c in df.columns]
    if "stimulus_id" not in df.columns and "image_id" in df.columns:
        df = df.rename(columns={"image_id": "stimulus_id"})
    missing = [c for c in required if c not in df.columns]
    if missing:
        alt = " (or legacy image_id)" if "stimulus_id" in missing else ""
        raise IdsimError(f"dataset {dataset}: {path.name} lacks column(s) {', '.join(missing)}{alt};"
                         f" it has {', '.join(df.columns[:12])}{' ...' if len(df.columns) > 12 else ''}")
    if df.empty:
        raise IdsimError(f"dataset {dataset}: {path} has no rows")
    dup = df["stimulus_id"][df["stimulus_id"].duplicated()]
    if len(dup):
        raise IdsimError(f"dataset {dataset}: {path.name} repeats stimulus_id {dup.iloc[0]!r}"
                         f" ({len(dup)} duplicates); each row must be one image")
    return df


def _zip_prefix(zf: zipfile.ZipFile, first: str) -> str | None:
    """The folder prefix under which ``first`` is stored in a zip ('' at top level), or None."""
    for name in zf.namelist():
        if name == first:
            return ""
        if name.endswith("/" + first):
            return name[: -len(first)]
    return None


def locate_images(csv_path: Path, filenames: Sequence[str], dataset: str, layout: str) -> Store:
    """Find where the CSV's ``filename`` values live, trying Brain-Score's layouts in turn.

    1. next to the CSV; 2. the folder named like the CSV (Brain-Score unpacks ``X.zip`` next to
    ``X.csv``) or any other sub-folder; 3. a zip next to the CSV, read in place (the one named
    like the CSV first). The first place holding the first file wins; it must hold them all.
    """
    base = csv_path.parent
    first = filenames[0]
    dirs = [base, base / csv_path.stem] + sorted(d for d in base.iterdir()
                                                 if d.is_dir() and not d.name.startswith(".") and d.name != csv_path.stem)
    store: Store | None = next((DirStore(d) for d in dirs if (d / first).is_file()), None)
    if store is None:
        zips = sorted(base.glob("*.zip"), key=lambda p: (p.stem != csv_path.stem, p.name))
        for zp in zips:
            try:
                with zipfile.ZipFile(zp) as zf:
                    prefix = _zip_prefix(zf, first)
            except zipfile.BadZipFile:
                continue
            if prefix is not None:
                store = ZipStore(zp, prefix)
                break
    if store is None:
        raise IdsimError(f"dataset {dataset}: image {first!r} (first row of {csv_path.name}) not found next to the CSV,"
                         f" in a sub-folder of {base}, or in a zip there; expected {layout}")
    missing = [f for f in filenames if not store.exists(f)]
    if missing:
        where = store.zip_path if isinstance(store, ZipStore) else store.base
        raise IdsimError(f"dataset {dataset}: {len(missing)} of {len(filenames)} files named in {csv_path.name} are"
                         f" missing from {where}: {', '.join(missing[:_SHOW_BAD])}"
                         f"{' ...' if len(missing) > _SHOW_BAD else ''}")
    return store


def _norm_level(value: Any) -> str:
    """Compare variation levels loosely: 3, '3', 'V3' and 3.0 are the same level."""
    s = str(value).strip()
    s = s[1:] if s[:1] in ("V", "v") else s
    try:
        f = float(s)
        return str(int(f)) if f.is_integer() else str(f)
    except ValueError:
        return s


def _levels(value: Any) -> list[Any] | None:
    """A filter option (null, a value or a list of values) as a list (None: no filter)."""
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _levels_ok(value: Any) -> bool:
    """null, one number or string, or a non-empty list of them."""
    vals = _levels(value)
    return vals is None or (len(vals) > 0 and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                                  for v in vals))


def _filter(df, column: str, wanted: list[Any] | None, key: str, dataset: str, norm=_norm_level):
    if wanted is None:
        return df
    if column not in df.columns:
        raise IdsimError(f"dataset.{key} filters on column {column!r}, which the stimulus CSV lacks")
    want = {norm(v) for v in wanted}
    have = sorted(set(df[column].map(norm)))
    out = df[df[column].map(norm).isin(want)]
    if out.empty:
        raise IdsimError(f"dataset.{key}={wanted} matches no stimuli; values present: {', '.join(have[:12])}")
    return out


def _stimulus_set(name: str, csv_path: Path, df, label_column: str, order: str, options: dict,
                  n_images: int | None, skip: bool, layout: str) -> ProbeSet:
    store = locate_images(csv_path, list(df["filename"]), name, layout)
    entries = [Entry(str(f), str(s), str(lab)) for f, s, lab in zip(df["filename"], df["stimulus_id"], df[label_column])]
    if order == "interleaved":
        entries = interleave(entries)
    csv_digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    probe = open_checked(name, store, entries, {**options, "order": order, "csv_sha256": csv_digest},
                         n_images=n_images, skip_unreadable=skip)
    return cap(probe, n_images)


HVM_LAYOUT = ("a Brain-Score HvM stimulus set: a CSV with columns stimulus_id (or image_id), filename, object_name"
              " (category_name, variation optional) plus the images, next to the CSV, in the folder its zip unpacks to,"
              " or in the zip itself")


@dataclass
class StimulusSetOptions(FileOptions):
    """Options of a Brain-Score stimulus set on disk (no ``name``: a base). ``root`` (required): the
    folder holding the stimulus CSV (and the images or their zip); ``n_images``: the first N in ``order``."""

    # null: the single *.csv in root; or a file name/path
    csv: Optional[str] = opt(None, "null (the single *.csv in root) or a file name or path")
    # interleaved: round-robin over the labels (balanced prefixes) | csv: the CSV's row order
    order: str = opt("interleaved", "interleaved (round-robin over the labels) or csv (the CSV's row order)",
                     one_of("interleaved", "csv"))


@dataclass
class HvmOptions(StimulusSetOptions):
    """``dataset=hvm``: the HvM / Majaj-Hong object images from a local Brain-Score stimulus set
    (conf/dataset/hvm.yaml)."""

    name: str = "hvm"
    # null: all; or a level or list of levels of the `variation` column, e.g. [3, 6]
    variation: Any = opt(None, "null (all), a level or a list of levels of the CSV's variation column, e.g. [3, 6]",
                         _levels_ok)

    def build(self) -> ProbeSet:
        root = root_dir(self.root, "hvm", HVM_LAYOUT)
        csv_path = _pick_csv(root, self.csv, "hvm", HVM_LAYOUT)
        variation = _levels(self.variation)
        df = read_stimulus_csv(csv_path, ("stimulus_id", "filename", "object_name"), "hvm")
        df = _filter(df, "variation", variation, "variation", "hvm")
        label = "category_name" if "category_name" in df.columns else "object_name"
        return _stimulus_set("hvm", csv_path, df, label, self.order,
                             {"variation": sorted(_norm_level(v) for v in variation) if variation else None,
                              "label_column": label}, self.n_images, self.skip_unreadable, HVM_LAYOUT)


FZ_LAYOUT = ("a Brain-Score FreemanZiemba2013 stimulus set: a CSV with columns stimulus_id (or image_id), filename,"
             " texture_family, texture_type (texture/noise), resolution, sample plus the images, next to the CSV,"
             " in the folder its zip unpacks to, or in the zip itself")


def _norm_resolution(value: Any) -> str:
    """'320x320', 320 and '320' name the same resolution."""
    s = str(value).strip().lower().replace(" ", "")
    return f"{s}x{s}" if s.isdigit() else s


@dataclass
class FreemanZiembaOptions(StimulusSetOptions):
    """``dataset=freeman_ziemba``: the Freeman & Ziemba 2013 textures and noise from a local Brain-Score set
    (conf/dataset/freeman_ziemba.yaml)."""

    name: str = "freeman_ziemba"
    # both | texture | noise
    texture_type: str = opt("both", "both, texture or noise", one_of("both", "texture", "noise"))
    # null: all; or a value or list of values of the `resolution` column, e.g. 320x320
    resolution: Any = opt(None, "null (all), a value or a list of values of the CSV's resolution column, e.g. 320x320",
                          _levels_ok)

    def build(self) -> ProbeSet:
        root = root_dir(self.root, "freeman_ziemba", FZ_LAYOUT)
        csv_path = _pick_csv(root, self.csv, "freeman_ziemba", FZ_LAYOUT)
        kind, resolution = self.texture_type, _levels(self.resolution)
        df = read_stimulus_csv(csv_path, ("stimulus_id", "filename", "texture_family", "texture_type"),
                               "freeman_ziemba")
        if kind != "both":
            df = _filter(df, "texture_type", [kind], "texture_type", "freeman_ziemba",
                         norm=lambda v: str(v).strip().lower())
        df = _filter(df, "resolution", resolution, "resolution", "freeman_ziemba", norm=_norm_resolution)
        df = df.assign(_family=df["texture_family"].map(_norm_level))
        return _stimulus_set("freeman_ziemba", csv_path, df, "_family", self.order,
                             {"texture_type": kind,
                              "resolution": sorted(_norm_resolution(r) for r in resolution) if resolution else None},
                             self.n_images, self.skip_unreadable, FZ_LAYOUT)
