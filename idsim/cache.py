"""The caches on disk, shared by runs, sweeps and parallel jobs: features, and the scores made of them.

A feature entry holds what extraction kept of every layer of one model on one probe set (Gram matrices,
RDMs, projected features, sampled units: a :class:`~idsim.features.FeatureSet`). Its key is a
hash of everything that changes those numbers:

- the system (:meth:`~idsim.systems.base.System.identity`): for a network its library, name,
  weights (``random`` + seed; ``imagenet``; or a checkpoint's content hash) and the resolved list
  of layers (so a change of a family's default layers is a new key, with no version to bump);
- the preprocessing, which is the library's own for that model and weights (pinned by the
  library versions);
- the probe set's identity (generator parameters or a digest of its files) and image count;
- the extraction plan (which reductions, unit ratio and its seed, projection sizes and seed,
  the exact-value budget that decides exact versus projected Grams);
- the device type (CPU and CUDA kernels differ in the last bits) and the batch size (batched
  kernels round differently: a run's bytes must not depend on what ran before), and the versions of torch,
  torchvision, timm, numpy and of idsim's own reductions (:data:`FORMAT`).

A score entry holds a metric's scores of one source against one target (and their bootstrap),
keyed on both feature keys, the metric's options, seed and resamples, and the bytes of idsim's
scoring code (:func:`cached_scores`): a job run again with everything cached fits no regression.

Entries (:class:`Entries`) are directories ``<cache dir>/<kind>/<key[:2]>/<key>/`` holding ``arrays.npz`` and
``meta.json`` (the key's fields and the SHA-256 of the arrays). They are written under a
temporary name in the same folder and renamed into place, which is atomic: a reader sees a whole
entry or none, a crash leaves only a temporary folder (swept later), and when two jobs fill the
same entry at once the first rename wins and the second discards its copy. An entry whose
checksum does not match is treated as missing, removed, and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .featureset import FeatureSet, LayerData, Plan

log = logging.getLogger(__name__)

#: bump when what extraction computes for a given key changes (the reductions' code)
FORMAT = 3
_STALE_TMP_S = 24 * 3600  # temporary folders older than this belong to dead writers


def package_versions(packages) -> dict[str, str]:
    """Installed versions of ``packages`` ("absent" when not installed), read without importing them."""
    import importlib.metadata as md

    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def versions() -> dict[str, str]:
    """Versions of everything whose change can change extracted features."""
    from . import __version__

    return {"idsim": __version__, "format": str(FORMAT),
            **package_versions(("torch", "torchvision", "timm", "numpy", "scipy", "pillow"))}


def source_digest(parts) -> str:
    """SHA-256 of idsim's own source files ``parts`` (paths under the package; a folder: its ``.py`` files)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for part in parts:
        for f in sorted((here / part).rglob("*.py")) if (here / part).is_dir() else [here / part]:
            h.update(f.relative_to(here).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def file_digest(path: Path | str, _memo: dict = {}) -> str:  # noqa: B006 - per-process memo of (path, size, mtime)
    """SHA-256 of a file's content (remembered per path, size and mtime within a process)."""
    st = os.stat(path)
    memo_key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _memo[memo_key] = h.hexdigest()
    return _memo[memo_key]


def make_key(model: dict, probe: dict, plan: Plan, settings: dict) -> tuple[str, dict]:
    """The entry key (hex SHA-256) and the description it hashes."""
    desc = {"model": model, "probe": probe, "plan": {f.name: getattr(plan, f.name) for f in fields(plan)},
            "settings": settings, "versions": versions()}
    blob = json.dumps(desc, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest(), desc


class Entries:
    """Entries of named arrays and a JSON description, at ``<root>/<kind>/<key[:2]>/<key>/``.

    Written atomically (a temporary folder renamed into place), checked against their SHA-256 when
    read (a damaged entry is a miss, removed), and filled under a lock so that jobs needing the same
    entry at once compute it once. Subclasses say what a value is as arrays (:meth:`encode`,
    :meth:`decode`).
    """

    kind = ""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser() / self.kind

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    # what a value is on disk

    def encode(self, value) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON-able fields) of a value."""
        raise NotImplementedError

    def decode(self, arrays: dict[str, np.ndarray], meta: dict):
        raise NotImplementedError

    def worth_keeping(self, value) -> bool:
        return True

    # reading and writing

    def get(self, key: str):
        """The cached value, or None if absent or damaged (a damaged entry is removed)."""
        path = self.path(key)
        meta_path = path / "meta.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            arrays_path = path / "arrays.npz"
            if file_digest(arrays_path) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            with np.load(arrays_path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            return self.decode(arrays, meta)
        except Exception as e:  # anything unreadable is a miss; remove it so it is recomputed
            log.warning("%s cache entry %s is damaged (%s): recomputing", self.kind, path, e)
            self._discard(path)
            return None

    def put(self, key: str, value, desc: dict) -> Path:
        """Write an entry atomically; if another writer got there first, keep theirs."""
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:12]}-", dir=final.parent))
        try:
            arrays, fields_ = self.encode(value)
            with open(tmp / "arrays.npz", "wb") as f:
                np.savez(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
                f.flush()
                os.fsync(f.fileno())
            meta = {"key": key, **fields_, "sha256": file_digest(tmp / "arrays.npz"),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "description": desc}
            with open(tmp / "meta.json", "w") as f:
                json.dump(meta, f, indent=1, default=str)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.rename(tmp, final)  # atomic; fails if a complete entry is already there
            except OSError:
                if self.get(key) is None:  # the one there is damaged: replace it
                    self._discard(final)
                    os.rename(tmp, final)
                else:
                    shutil.rmtree(tmp, ignore_errors=True)
            return final
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def get_or_compute(self, key: str, desc: dict, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, hit): the cached entry, or ``compute()`` stored under ``key``.

        One process fills an entry while the others that need it wait on its lock (a ``flock``,
        released by the kernel however the holder dies) and then read it: the jobs of a sweep that
        start together compute each entry once. The lock lives beside the entry, so it works
        wherever the cache folder is shared (a cluster's shared file system included).
        """
        hit = self.get(key)
        if hit is not None:
            return hit, True
        from filelock import FileLock, Timeout

        folder = self.path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f".{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another job to fill %s cache entry %s", self.kind, key[:12])
            lock.acquire()
        try:
            hit = self.get(key)  # filled while we waited
            if hit is not None:
                return hit, True
            return self._compute_and_put(key, desc, compute), False
        finally:
            lock.release()

    def _compute_and_put(self, key: str, desc: dict, compute: Callable[[], Any]):
        value = compute()
        if not self.worth_keeping(value):
            return value
        try:
            self.put(key, value, desc)
        except OSError as e:  # a full or read-only disk must not lose what was computed
            log.warning("could not write the %s cache under %s (%s); continuing without it", self.kind, self.root, e)
        return value

    def _discard(self, path: Path) -> None:
        trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)  # out of the way atomically, then deleted
        except OSError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    @staticmethod
    def _sweep(folder: Path) -> None:
        """Remove temporary folders left by writers that died long ago."""
        now = time.time()
        for p in folder.glob(".tmp-*"):
            try:
                if now - p.stat().st_mtime > _STALE_TMP_S:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass


_ARRAYS = ("features", "units", "unit_index")  # LayerData arrays; ``grams`` are stored as "<i>.gram.<kind>"


class FeatureCache(Entries):
    """Feature sets (:class:`~idsim.featureset.FeatureSet`), at ``<root>/features``."""

    kind = "features"

    def encode(self, features: FeatureSet) -> tuple[dict[str, np.ndarray], dict]:
        arrays, layers = {}, []
        for i, d in enumerate(features.layers.values()):
            scalars = {f.name: getattr(d, f.name) for f in fields(d) if f.name not in (*_ARRAYS, "grams")}
            layers.append({"fields": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in scalars.items()}})
            for a in _ARRAYS:
                v = getattr(d, a)
                if v is not None:
                    arrays[f"{i}.{a}"] = v
            for kind, v in d.grams.items():
                arrays[f"{i}.gram.{kind}"] = v
        return arrays, {"model_name": features.model, "n_images": features.n_images, "layers": layers}

    def decode(self, arrays: dict[str, np.ndarray], meta: dict) -> FeatureSet:
        fs = FeatureSet(model=meta["model_name"], n_images=int(meta["n_images"]))
        for i, layer in enumerate(meta["layers"]):
            d = LayerData(**layer["fields"])
            for a in _ARRAYS:
                if f"{i}.{a}" in arrays:
                    setattr(d, a, arrays[f"{i}.{a}"])
            d.grams = {k.rsplit(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{i}.gram.")}
            fs.layers[d.name] = d
        return fs

    def worth_keeping(self, features: FeatureSet) -> bool:
        if any(d.grams or d.features is not None or d.units is not None for d in features.layers.values()):
            return True
        log.warning("features of %s hold no arrays: not cached", features.model)
        return False


class ScoreCache(Entries):
    """A metric's scores of one source against one target (:class:`~idsim.metrics.base.LayerScores`),
    at ``<root>/scores``."""

    kind = "scores"

    def encode(self, res) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {"score": res.score, **{f"extra.{k}": v for k, v in res.extra.items()}}
        if res.boot is not None:
            arrays["boot"] = res.boot
        return arrays, {"extra": list(res.extra)}

    def decode(self, arrays: dict[str, np.ndarray], meta: dict):
        from .metrics.base import LayerScores

        return LayerScores(score=arrays["score"], extra={k: arrays[f"extra.{k}"] for k in meta["extra"]},
                           boot=arrays.get("boot"))


def cached_features(system, probe, plan: Plan, settings, root: Path | str | None) -> tuple[FeatureSet, str | None]:
    """(features, key): ``system``'s features on ``probe`` from the cache under ``root``, or extracted and
    stored (key None: no cache).

    ``settings`` (an :class:`~idsim.schema.ExtractionConfig`) adds what changes the numbers beyond the
    plan: the exact-value budget and projection size, the device type and the batch size.
    """
    def compute() -> FeatureSet:
        return system.extract(probe, plan, settings)

    if root is None:
        return compute(), None
    from .devices import device_type

    key, desc = make_key(system.identity(), {"name": probe.name, "n_images": len(probe), **probe.identity()}, plan,
                         {"exact_max_mb": settings.exact_max_mb, "gram_dim": settings.gram_dim,
                          "device": device_type(settings.device),
                          # batched kernels round differently (up to ~1e-7): same command, same bytes
                          "batch_size": settings.batch_size, "precision": settings.precision})
    feats, hit = FeatureCache(root).get_or_compute(key, desc, compute)
    log.info("%s: features %s (%s)", system.label, "from the cache" if hit else "extracted", key[:12])
    return feats, key


#: idsim's code that turns two feature sets into scores: its bytes key the score cache (no version to bump)
SCORING_CODE = ("metrics", "kernels.py", "gram.py", "stats.py")


def scoring_code_digest(_memo: list = []) -> str:  # noqa: B006 - per-process memo
    if not _memo:
        _memo.append(source_digest(SCORING_CODE))
    return _memo[0]


def _module_digest(cls) -> str | None:
    """SHA-256 of the file that defines ``cls`` (a metric family added beside idsim's own, on the package's
    search path, is keyed on its own code too); None when it has no file."""
    import inspect

    try:
        return file_digest(inspect.getfile(cls))
    except (TypeError, OSError):
        return None


def cached_scores(metric, source_key: str | None, target_key: str | None, seed: int, resamples: np.ndarray | None,
                  device, root: Path | str | None, compute: Callable[[], Any], label: str = "source"):
    """A metric's :class:`~idsim.metrics.base.LayerScores` of one source against the target: from the score
    cache under ``root``, or ``compute()`` and stored.

    The key is everything the scores are a function of: both feature-cache keys (which pin the
    features), the metric's options, the seed, the bootstrap's resamples, the scoring device type, the
    bytes of idsim's scoring code (:data:`SCORING_CODE`) and of the file defining the metric's class, and the
    versions of the numerical libraries.
    Without a feature-cache key on both sides (no cache) the scores are computed.
    """
    if root is None or source_key is None or target_key is None:
        return compute()
    from dataclasses import asdict

    desc = {"source": source_key, "target": target_key, "metric": {"kind": metric.kind, **asdict(metric.options)},
            "seed": seed, "device": getattr(device, "type", str(device)),
            "resamples": None if resamples is None else
            [list(resamples.shape), hashlib.sha256(np.ascontiguousarray(resamples, dtype=np.int64)).hexdigest()],
            "code": scoring_code_digest(), "metric_code": _module_digest(type(metric)),
            "versions": package_versions(("numpy", "scipy", "scikit-learn", "torch", "numba"))}
    key = hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()
    res, hit = ScoreCache(root).get_or_compute(key, desc, compute)
    if hit:
        log.info("%s: scores from the cache (%s)", label, key[:12])
    return res
