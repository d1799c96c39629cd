"""The feature cache: keys, atomic writes, damaged entries, concurrent writers, reuse across runs."""
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from idsim import cache as cache_mod
from idsim.cache import FeatureCache, make_key
from idsim.errors import IdsimError
from idsim.featureset import FeatureSet, LayerData, Plan
from idsim.schema import NetworkConfig, RunConfig
from idsim.systems import SOURCE, TARGET, build


def network_identity(name, library="torchvision", weights="random", seed=0, layers=None, role=TARGET):
    """What a network target contributes to the cache key (its layers resolved on the meta device)."""
    run = RunConfig(target=NetworkConfig(name=name, library=library, weights=weights, seed=seed, layers=layers),
                    seed=seed)
    system = build(run.target, name, role, run)
    from unittest import mock

    with mock.patch("idsim.models.check_pretrained", return_value=True):  # the key needs no downloadable weights
        system.prepare()
    return system.identity()


def _features(seed=0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    fs = FeatureSet(model="net", n_images=6)
    fs.layers["a"] = LayerData(name="a", n_units=10, n_sampled=8, n_constant=1,
                               grams={"column": rng.standard_normal((6, 6)), "row": rng.standard_normal((6, 6))})
    fs.layers["b"] = LayerData(name="b", n_units=50, n_sampled=50, features=rng.standard_normal((6, 4)).astype(np.float32),
                               units=rng.standard_normal((6, 3)).astype(np.float32), unit_index=np.array([1, 5, 9]),
                               projected=True)
    return fs


def _same(a: FeatureSet, b: FeatureSet) -> bool:
    if a.layer_names != b.layer_names or a.n_images != b.n_images:
        return False
    for name in a.layer_names:
        x, y = a[name], b[name]
        for f in ("n_units", "n_sampled", "n_constant", "projected", "approximate"):
            if getattr(x, f) != getattr(y, f):
                return False
        for f in ("features", "units", "unit_index"):
            u, v = getattr(x, f), getattr(y, f)
            if (u is None) != (v is None) or (u is not None and not np.array_equal(u, v)):
                return False
        if x.grams.keys() != y.grams.keys() or any(not np.array_equal(x.grams[k], y.grams[k]) for k in x.grams):
            return False
    return True


BASE = dict(model=network_identity("alexnet"),
            probe={"name": "shapes", "seed": 0, "size": 256, "n_images": 12},
            plan=Plan(grams=("column",), unit_ratio=1.0, seed=0),
            settings={"exact_max_mb": 1024, "gram_dim": "auto", "device": "cpu", "batch_size": 6})


def _key(**change):
    parts = {**BASE, **change}
    return make_key(parts["model"], parts["probe"], parts["plan"], parts["settings"])[0]


def test_every_part_of_the_key_matters(tmp_path, monkeypatch):
    base = _key()
    assert _key() == base  # stable
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"first weights")
    torch_ckpt = tmp_path / "alexnet.pt"
    _save_alexnet_checkpoint(torch_ckpt)
    variants = [
        dict(model=network_identity("vgg11")),
        dict(model=network_identity("resnet18", library="timm")),
        dict(model=network_identity("resnet18", library="torchvision")),
        dict(model=network_identity("alexnet", seed=1)),
        dict(model=network_identity("alexnet", weights="imagenet")),
        dict(model=network_identity("alexnet", weights=str(torch_ckpt))),
        dict(model=network_identity("alexnet", layers=["features.1"])),
        dict(probe={**BASE["probe"], "seed": 1}),
        dict(probe={**BASE["probe"], "n_images": 13}),
        dict(probe={**BASE["probe"], "name": "natural"}),
        dict(plan=Plan(grams=("column",), unit_ratio=0.5, seed=0)),
        dict(plan=Plan(grams=("column",), unit_ratio=1.0, seed=1)),
        dict(plan=Plan(grams=(), features=True, project="auto", seed=0)),
        dict(plan=Plan(grams=("row",), seed=0)),
        dict(settings={**BASE["settings"], "exact_max_mb": 1}),
        dict(settings={**BASE["settings"], "gram_dim": 512}),
        dict(settings={**BASE["settings"], "device": "cuda"}),
        dict(settings={**BASE["settings"], "batch_size": 4}),
    ]
    keys = [_key(**v) for v in variants]
    assert base not in keys and len(set(keys)) == len(keys)
    # a checkpoint's key follows its content, not its path
    before = _key(model=network_identity("alexnet", weights=str(torch_ckpt)))
    _save_alexnet_checkpoint(torch_ckpt, seed=1)
    os.utime(torch_ckpt, ns=(1, 1))
    assert _key(model=network_identity("alexnet", weights=str(torch_ckpt))) != before
    # library versions and idsim's reduction format are part of the key
    monkeypatch.setattr(cache_mod, "FORMAT", cache_mod.FORMAT + 1)
    assert _key() != base


def _save_alexnet_checkpoint(path, seed=0):
    import torch

    from idsim import build_model

    torch.save(build_model("alexnet", seed=seed).module.state_dict(), path)


def test_a_change_of_default_layers_is_a_new_key(monkeypatch, tmp_path):
    """The key holds the resolved layer list: editing a family's defaults needs no manual FORMAT bump."""
    import idsim.layers
    from idsim import layouts

    monkeypatch.setenv("IDSIM_CACHE_DIR", str(tmp_path))  # a fresh layout memo
    base, base_path = network_identity("alexnet"), layouts._layout_path("alexnet", "torchvision")
    real = idsim.layers.default_layers
    monkeypatch.setattr(idsim.layers, "default_layers", lambda module, name, library: real(module, name, library)[:3])
    # the edit of layers.py this stands for also changes the layout memo's folder (keyed by that file's bytes)
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: real_read(self) + (b"# edited" if self.name == "layers.py"
                                                                            else b""))
    assert layouts._layout_path("alexnet", "torchvision") != base_path
    changed = network_identity("alexnet")
    assert changed["layers"] == base["layers"][:3]
    assert _key(model=changed) != _key(model=base)


def test_layouts_are_remembered_without_importing_the_library(monkeypatch, tmp_path):
    """A second run checks its layers from the memo: no network is built (no torchvision/timm import)."""
    from idsim import layouts, models

    monkeypatch.setenv("IDSIM_CACHE_DIR", str(tmp_path))
    first = network_identity("resnet18")
    assert layouts._layout_path("resnet18", "torchvision").is_file()

    def no_build(*a, **k):
        raise AssertionError("a remembered layout was built again")

    monkeypatch.setattr(models, "meta_module", no_build)
    assert network_identity("resnet18") == first
    assert network_identity("resnet18", layers=["layer1.0", "fc"])["layers"] == ["layer1.0", "fc"]
    with pytest.raises(IdsimError, match="has no layer 'layer9'"):
        network_identity("resnet18", layers=["layer9"])
    # a damaged memo is rebuilt, never trusted
    layouts._layout_path("resnet18", "torchvision").write_text("{not json")
    monkeypatch.undo()
    monkeypatch.setenv("IDSIM_CACHE_DIR", str(tmp_path))
    assert network_identity("resnet18") == first


def test_round_trip_and_damaged_entries_are_recomputed(tmp_path):
    c = FeatureCache(tmp_path)
    fs = _features()
    assert c.get("ab" * 32) is None
    path = c.put("ab" * 32, fs, {"what": "test"})
    assert _same(c.get("ab" * 32), fs)
    # truncate the arrays: the checksum catches it, the entry is removed, and a new put works
    arrays = path / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:100])
    assert c.get("ab" * 32) is None and not path.exists()
    c.put("ab" * 32, fs, {})
    # a damaged meta.json is a miss too
    (path / "meta.json").write_text("{not json")
    assert c.get("ab" * 32) is None
    computed = []
    got, hit = c.get_or_compute("ab" * 32, {}, lambda: computed.append(1) or fs)
    assert not hit and computed == [1] and _same(got, fs)
    got, hit = c.get_or_compute("ab" * 32, {}, lambda: computed.append(1) or fs)
    assert hit and computed == [1]


def test_interrupted_write_leaves_no_valid_entry(tmp_path, monkeypatch):
    c = FeatureCache(tmp_path)
    key = "cd" * 32

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. the job is killed while writing

    monkeypatch.setattr(cache_mod.json, "dump", dies)  # after arrays.npz is written, before meta.json
    with pytest.raises(KeyboardInterrupt):
        c.put(key, _features(), {})
    monkeypatch.undo()
    assert c.get(key) is None
    assert not list(c.path(key).parent.glob(".tmp-*"))  # cleaned up
    # a writer killed outright (no cleanup) leaves only a temporary folder, never read as an entry
    stale = c.path(key).parent / f".tmp-{key[:12]}-dead"
    stale.mkdir()
    (stale / "arrays.npz").write_bytes(b"partial")
    assert c.get(key) is None
    os.utime(stale, (0, 0))  # older than a day: swept by the next writer
    c.put(key, _features(), {})
    assert not stale.exists() and _same(c.get(key), _features())


def test_score_entries_round_trip_and_key_on_everything_scores_depend_on(tmp_path, monkeypatch):
    """A cached score must come back bit for bit, and any input it depends on must miss the cache."""
    from dataclasses import dataclass

    from idsim.metrics.base import LayerScores

    rng = np.random.default_rng(0)
    with_boot = LayerScores(rng.standard_normal((3, 2)), {"r2": rng.standard_normal((3, 2))},
                            rng.standard_normal((5, 3, 2)))
    c = cache_mod.ScoreCache(tmp_path)
    for res in (with_boot, LayerScores(rng.standard_normal((3, 2)))):
        c.put("ab" * 32, res, {})
        got = c.get("ab" * 32)
        np.testing.assert_array_equal(got.score, res.score)
        assert list(got.extra) == list(res.extra) and all(np.array_equal(got.extra[k], v) for k, v in res.extra.items())
        assert (got.boot is None) == (res.boot is None) and (res.boot is None or np.array_equal(got.boot, res.boot))
        c._discard(c.path("ab" * 32))

    @dataclass
    class Options:
        name: str = "toy"
        alpha: float = 1.0

    class Toy:
        kind = "toy"

        def __init__(self, **kw):
            self.options = Options(**kw)

    computed = []
    resamples = rng.integers(0, 10, (4, 10))

    def scores(metric=Toy(), src="s" * 64, tgt="t" * 64, seed=0, res=resamples, device="cpu", root=tmp_path):
        return cache_mod.cached_scores(metric, src, tgt, seed, res, device, root,
                                       lambda: computed.append(1) or with_boot)

    first = scores()
    np.testing.assert_array_equal(first.boot, with_boot.boot)
    scores()
    assert len(computed) == 1  # the same inputs: from the cache
    changed = [dict(metric=Toy(alpha=2.0)), dict(src="x" * 64), dict(tgt="y" * 64), dict(seed=1),
               dict(res=resamples[:3]), dict(res=(resamples + 1) % 10), dict(res=None), dict(device="cuda")]
    for n, kw in enumerate(changed, start=2):
        scores(**kw)
        assert len(computed) == n, kw  # each input the scores depend on is part of the key
    monkeypatch.setattr(cache_mod, "scoring_code_digest", lambda: "another version of idsim's scoring code")
    scores()
    assert len(computed) == len(changed) + 2
    monkeypatch.undo()
    monkeypatch.setattr(cache_mod, "_module_digest", lambda cls: "another version of the metric family's file")
    scores()
    assert len(computed) == len(changed) + 3
    monkeypatch.undo()
    scores(root=None)
    scores(src=None)  # no cache, or a side without a feature-cache key: always computed
    assert len(computed) == len(changed) + 5


def _writer(root: str, key: str, barrier) -> None:
    fs = _features()
    barrier.wait()
    FeatureCache(root).put(key, fs, {})


def test_two_processes_filling_one_entry(tmp_path):
    ctx = mp.get_context("spawn")
    key = "ef" * 32
    for _ in range(3):
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_writer, args=(str(tmp_path), key, barrier)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs)
        c = FeatureCache(tmp_path)
        assert _same(c.get(key), _features())
        entries = [p for p in c.path(key).parent.iterdir()]
        assert entries == [c.path(key)]  # one entry, no leftovers
        c._discard(c.path(key))


def test_runs_reuse_features_and_unit_ratio_sweeps_reuse_sources(compose_cfg, tmp_path, monkeypatch):
    import idsim.experiment as exp
    import idsim.features

    calls, scored = [], []
    real = idsim.features.extract
    monkeypatch.setattr(idsim.features, "extract", lambda model, *a, **k: calls.append(model.name) or real(model, *a, **k))
    real_scores = exp.cached_scores

    def spy(metric, *a, **k):  # counts the scores actually computed (the cache's misses)
        *rest, compute = a
        return real_scores(metric, *rest, lambda: scored.append(metric.name) or compute(), **k)

    monkeypatch.setattr(exp, "cached_scores", spy)
    cache = [f"cache.dir={tmp_path / 'cache'}"]
    base = ["target=alexnet", "sources=[alexnet,resnet18]", "target.layers=[features.4,classifier.2]",
            "sources.resnet18.layers=[layer1,layer4]", *TINY, *cache]
    cold = exp.run_experiment(compose_cfg(base), tmp_path / "cold")
    assert sorted(calls) == ["alexnet", "alexnet", "resnet18"] and scored == ["cka", "cka"]
    calls.clear(), scored.clear()
    warm = exp.run_experiment(compose_cfg(base), tmp_path / "warm")
    assert calls == [] and scored == []  # everything cached: no extraction, no scoring
    np.testing.assert_array_equal(cold.scores.score, warm.scores.score)
    pd.testing.assert_frame_equal(cold.identifiability, warm.identifiability)
    exp.run_experiment(compose_cfg([*base, "metric=cka_debiased"]), tmp_path / "debiased")
    assert calls == [] and scored == ["cka_debiased"] * 2  # same reductions: nothing extracted; new scores
    scored.clear()
    exp.run_experiment(compose_cfg([*base, "stats.bootstrap=7"]), tmp_path / "boot7")
    assert calls == [] and scored == ["cka"] * 2  # other resamples: other bootstrap scores
    scored.clear()
    exp.run_experiment(compose_cfg([*base, "unit_ratio=0.5"]), tmp_path / "half")
    assert calls == ["alexnet"]  # only the target: the sources' reductions do not depend on unit_ratio
    assert scored == ["cka"] * 2  # the target's features changed: so do the scores
    calls.clear(), scored.clear()
    exp.run_experiment(compose_cfg([*base, "cache.enabled=false"]), tmp_path / "off")
    assert sorted(calls) == ["alexnet", "alexnet", "resnet18"] and scored == ["cka"] * 2


def test_projected_grams_stay_close_to_exact_on_a_real_network():
    """Layers beyond the exact budget get CKA from a sparse random projection; the error is small."""
    from idsim import build_model, extract, load_probe_set
    from idsim.metrics import cka_matrix

    probe = load_probe_set({"name": "shapes", "n_images": 24})
    layers = ["features.1", "features.7", "classifier.2"]
    t, s = build_model("alexnet", seed=0), build_model("alexnet", seed=1)
    kw = dict(layers=layers, batch_size=12, progress=False)
    exact = [extract(m, probe, Plan(), exact_budget=None, **kw) for m in (t, s)]
    approx = [extract(m, probe, Plan(), exact_budget=1, **kw) for m in (t, s)]
    assert all(d.approximate for d in approx[0].layers.values())
    assert not any(d.approximate for d in exact[0].layers.values())
    for debiased, bound in ((False, 0.02), (True, 0.05)):
        E = cka_matrix([exact[1][n].gram for n in layers], [exact[0][n].gram for n in layers], debiased=debiased)
        A = cka_matrix([approx[1][n].gram for n in layers], [approx[0][n].gram for n in layers], debiased=debiased)
        assert np.max(np.abs(A - E)) < bound, (debiased, np.abs(A - E))


def test_the_floor_counts_the_gram_columns_extraction_uses():
    """benchmarks/floor_bench.py's Gram floor classifies layers with the extraction's own rule: with a budget
    between two layers' sizes (at a unit ratio, so sampled units count, not all of them), the layers it calls
    projected are the ones extraction projects, and each Gram is formed from the columns it counts."""
    import importlib.util

    from idsim import build_model, extract, load_probe_set
    from idsim.features import gram_columns
    from idsim.reduce import n_sampled

    spec = importlib.util.spec_from_file_location("floor_bench", Path(__file__).parents[1] / "benchmarks" / "floor_bench.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    probe = load_probe_set({"name": "shapes", "n_images": 6})
    layers = ["features.1", "features.4", "features.7"]  # 193,600, 139,968 and 64,896 units per image
    budget = 6 * 4 * 80_000  # half of features.1 (96,800 units) is above it; half of features.4 (69,984) is not
    m = build_model("alexnet", seed=0)
    feats = extract(m, probe, Plan(grams=("column",), unit_ratio=0.5), layers=layers, batch_size=6, progress=False,
                    exact_budget=budget, gram_dim=40)
    widths = {lay: feats[lay].n_units for lay in layers}
    assert list(widths.values()) == [193_600, 139_968, 64_896]
    assert [feats[lay].approximate for lay in layers] == [True, False, False]
    assert [not gram_columns(6, n_sampled(widths[lay], 0.5), budget, 40)[1] for lay in layers] == [True, False, False]
    assert floor.gram_floor_columns(widths, 6, 0.5, budget, 40) == 40 + 69_984 + 32_448
    assert floor.gram_floor_columns(widths, 6, 1.0, None, 40) == sum(widths.values())  # no budget: all exact


def test_spilled_layers_give_the_same_reductions_as_in_ram(tmp_path):
    """With no RAM budget every exact layer is written to scratch; the Grams and units are unchanged. The run's
    one scratch file (reused by each extraction on the same probe set) goes with the probe set."""
    import gc

    from idsim import build_model, extract, load_probe_set

    probe = load_probe_set({"name": "shapes", "n_images": 10})
    model = build_model("alexnet", seed=0)
    kw = dict(layers=["features.4", "classifier.2"], batch_size=5, progress=False)
    for plan in (Plan(grams=("column", "row", "raw")), Plan(grams=("row",), drop_constant=True),
                 Plan(grams=(), units=True, max_units=50, drop_constant=True)):
        ram = extract(model, probe, plan, **kw)
        disk = extract(model, probe, plan, ram_budget=0, scratch=tmp_path, **kw)
        assert _same(ram, disk)
    folders = list(tmp_path.glob("idsim-scratch-*"))  # this process's scratch folder (removed at exit) ...
    assert len(folders) == 1 and len(list(folders[0].iterdir())) == 1  # ... holds the run's one spill file ...
    del probe
    gc.collect()
    assert not any(folders[0].iterdir())  # ... until the run's probe set goes


def test_spill_space_is_allocated_before_it_is_written(tmp_path, monkeypatch):
    """Spilled values go through memory mappings: a page of a sparse file written on a full disk is a SIGBUS. So the
    run's spill file (as it grows), a store's own scratch file and the shared pixels' file have their blocks
    allocated when they are made (a sparse file, from a truncate or a fresh memmap, has none)."""
    import idsim.features as features
    from idsim.reduce import UnitStore

    def allocated(path) -> int:
        return os.stat(path).st_blocks * 512

    arena = features.Arena()
    path, start = arena.spill(3 * 2**20, tmp_path)
    assert allocated(path) >= start + 3 * 2**20
    path, start = arena.spill(5 * 2**20, tmp_path)  # the file grows past what was allocated
    assert start >= 3 * 2**20 and allocated(path) >= start + 5 * 2**20
    store = UnitStore(40, np.arange(20_000), scratch=tmp_path / "own", ram_budget=0)
    assert store.spilled and allocated(store.path) >= 40 * 20_000 * 4
    store.close()

    from PIL import Image

    class Blank:  # just past the 256 MB beyond which the shared pixels live in a scratch file
        name = "blank"

        def __len__(self):
            return 256 * 2**20 // (3 * 224 * 224) + 1

        def image(self, i):
            return Image.new("RGB", (224, 224))

    before_after = []
    real = features.reserve

    def spy(path, *args):
        before_after.append(allocated(path))
        real(path, *args)
        before_after.append(allocated(path))

    monkeypatch.setattr(features, "reserve", spy)
    pixels = features.shared_pixels(Blank(), scratch=tmp_path)
    assert isinstance(pixels, np.memmap) and pixels.nbytes > 256 * 2**20
    assert before_after[0] < 2**20 and before_after[1] >= pixels.nbytes  # sparse when made, allocated after


@pytest.mark.parametrize("code", ["EOPNOTSUPP", "EINVAL"])
def test_spill_works_where_the_filesystem_refuses_allocation(tmp_path, monkeypatch, code):
    """Some filesystems (and C libraries without glibc's emulation) refuse ``posix_fallocate`` as unsupported: the spill
    file is then grown as a sparse file, and spilled values read back as written, rather than the run failing."""
    import errno

    import torch

    import idsim.features as features
    from idsim.reduce import UnitStore

    def unsupported(fd, offset, length):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    arena = features.Arena()
    path, start = arena.spill(3 * 2**20, tmp_path)
    path, start = arena.spill(5 * 2**20, tmp_path)
    assert os.path.getsize(path) >= start + 5 * 2**20
    store = UnitStore(4, np.arange(1_000), scratch=tmp_path / "own", ram_budget=0)
    values = np.random.default_rng(0).standard_normal((4, 1_000)).astype(np.float32)
    store.update(torch.from_numpy(values), slice(0, 4))
    assert store.spilled and np.array_equal(np.asarray(store.data), values)
    store.close()


def test_projections_are_seeded_by_model_identity():
    """Two models with identical activations but different identities (seeds) get independent projection matrices,
    so the target's and a same-architecture source's approximation errors do not correlate; the same model, the same."""
    import dataclasses

    from idsim import build_model, extract, load_probe_set

    probe = load_probe_set({"name": "shapes", "n_images": 8})
    a = build_model("alexnet", seed=0)
    b = dataclasses.replace(a, seed=1)  # the same network (same weights), another identity
    kw = dict(layers=["features.4"], batch_size=8, progress=False, exact_budget=1, gram_dim=64)
    ga, ga2, gb = (extract(m, probe, Plan(), **kw)["features.4"].gram for m in (a, a, b))
    assert np.array_equal(ga, ga2)
    assert not np.allclose(ga, gb)
    exact = extract(a, probe, Plan(), layers=["features.4"], batch_size=8, progress=False)["features.4"].gram
    assert np.abs(gb - exact).max() < 0.5 * np.abs(exact).max()  # both are approximations of the same Gram


def test_unit_store_selects_a_prefix_of_units_when_it_is_not_the_whole_layer():
    """Sampled units 0..k-1 of a wider layer are a selection, not "all units" (the old shortcut compared only the ends)."""
    import torch

    from idsim.reduce import UnitStore

    acts = torch.arange(20, dtype=torch.float32).reshape(2, 10)
    prefix = UnitStore(2, np.arange(3), n_features=10)
    prefix.update(acts, slice(0, 2))
    np.testing.assert_array_equal(prefix.data, acts[:, :3].numpy())
    whole = UnitStore(2, np.arange(10), n_features=10)
    whole.update(acts, slice(0, 2))
    np.testing.assert_array_equal(whole.data, acts.numpy())


def test_unit_stats_find_constant_units_across_batches():
    """Constancy is over every image, not per batch: a unit constant within each batch but not between them, or
    one that differs on a single image of the last batch, is not constant; only units with one value on every
    image are (on sampled units too). Checking one batch, or mixing up minima and maxima, would miss these."""
    import torch

    from idsim.reduce import UnitStats

    acts = np.zeros((7, 6), dtype=np.float32)
    acts[:, 0] = 2.5                    # constant everywhere
    acts[:4, 1], acts[4:, 1] = 1.0, 3.0  # constant within each batch of 4, not across
    acts[:, 2] = np.arange(7)           # varies everywhere
    acts[6, 3] = -1.0                   # one image of the last batch differs
    acts[:, 5] = -4.0                   # constant and negative
    for units in (np.arange(6), np.array([0, 1, 3, 5])):
        stats = UnitStats(units)
        for rows in (slice(0, 4), slice(4, 7)):  # every unit of the layer: the stats select their own
            stats.update(torch.from_numpy(acts[rows]), rows)
        expected = np.array([True, False, False, False, True, True])[units]
        np.testing.assert_array_equal(stats.constant(), expected)


@pytest.mark.parametrize("n_rows", [1, 16, 23, 32])
def test_compiled_projection_equals_scipys_product_bit_for_bit(n_rows):
    """The CPU projection (a compiled loop, no transposed copy of the batch) gives SciPy's compressed-column
    product exactly: the same float32 sums in the same order, for full and ragged groups of 16 rows, a selection
    of units, and row-centred patterns. An order or grouping mistake would move the last bits."""
    import torch

    from idsim.reduce import SparseProjection

    rng = np.random.default_rng(3)
    width = 5000  # more than one block of 1,024 features
    acts = torch.from_numpy(np.maximum(rng.standard_normal((n_rows, width)), 0).astype(np.float32))
    units = np.sort(rng.choice(width, 3000, replace=False))
    for kw in ({}, {"units": units}, {"units": units, "row_centre": True}):
        proj = SparseProjection(n_rows, width, 97, seed=0, layer="l", **kw)
        proj.update(acts, slice(0, n_rows))
        x = acts.index_select(1, torch.as_tensor(units)) if "units" in kw else acts
        if kw.get("row_centre"):
            x = x - x.mean(1, keepdim=True)
        ref = (proj._t.tocsc() @ x.numpy().T).T  # components x features, by feature
        assert ref.dtype == np.float32 and np.array_equal(proj.data, ref)


@pytest.mark.parametrize("n_features, n_components, seed", [(3000, 2000, 0), (200_000, 300, 5), (1000, 40, 2), (999, 30, 1)])
def test_projection_matrix_is_the_seeded_draw(n_features, n_components, seed):
    """The projection matrix is one fixed draw per seed (the feature cache and every projected score rest on it):
    the same matrix as the plain construction (draw rows, sort all keys, redraw collisions, sort again), with rows
    sorted and distinct in every column, and +-1/sqrt(density * components) entries. 3,000 features over 2,000
    columns give ~1,000 collisions, so the redraw rounds run; a faster sort that put a key in the wrong column, or
    a redraw that moved the stream, gives another matrix."""
    import math

    from idsim.reduce import sparse_projection_matrix

    m = sparse_projection_matrix(n_features, n_components, seed)
    density = 1 / math.sqrt(n_features)
    rng = np.random.default_rng([seed, n_features, n_components])
    counts = rng.binomial(n_features, density, size=n_components)
    if n_features < 1000:
        rows = np.concatenate([np.sort(rng.choice(n_features, size=c, replace=False)) for c in counts])
    else:
        key = np.repeat(np.arange(n_components), counts) * n_features + rng.integers(0, n_features, size=counts.sum())
        rounds = 0
        while True:
            key = np.sort(key)
            dup = np.flatnonzero(key[1:] == key[:-1]) + 1
            if not dup.size:
                break
            rounds += 1
            key[dup] = key[dup] // n_features * n_features + rng.integers(0, n_features, size=dup.size)
        assert rounds > 0 or n_features > 10_000  # the narrow cases exercise the redraws
        rows = key % n_features
    scale = 1 / math.sqrt(density * n_components)
    signs = np.where(rng.random(rows.size) < 0.5, -1.0, 1.0)
    assert m.shape == (n_features, n_components) and m.dtype == np.float32
    np.testing.assert_array_equal(m.indptr, np.concatenate([[0], np.cumsum(counts)]))
    np.testing.assert_array_equal(m.indices, rows)
    np.testing.assert_array_equal(m.data, (signs * scale).astype(np.float32))
    for c in range(n_components):  # sorted and distinct within each column
        assert np.all(np.diff(m.indices[m.indptr[c]:m.indptr[c + 1]]) > 0)


@pytest.mark.slow
def test_same_command_same_bytes_whatever_ran_before(compose_cfg, tmp_path):
    """Batch size changes the last bits of the features, so it is part of the key: a run with batch 6
    gives the same scores.csv whether a batch-4 run filled the cache before it or not."""
    import idsim.experiment as exp

    base = ["target=resnet18", "sources=[resnet18]", "target.layers=[layer1,layer2]",
            "sources.resnet18.layers=[layer1.0,layer2.1]", *TINY, "dataset.n_images=8"]  # the last value wins
    commands = {b: [*base, f"extraction.batch_size={b}"] for b in (6, 4)}
    out = {}
    for order in ((6, 4), (4, 6)):
        cache = f"cache.dir={tmp_path / ('cache-' + '-'.join(map(str, order)))}"
        for b in order:
            folder = tmp_path / f"{'-'.join(map(str, order))}-batch{b}"
            exp.run_experiment(compose_cfg([*commands[b], cache]), folder)
            out[order, b] = (folder / "scores.csv").read_bytes()
    assert out[(6, 4), 6] == out[(4, 6), 6] and out[(6, 4), 4] == out[(4, 6), 4]


@pytest.mark.slow
def test_concurrent_jobs_extract_each_entry_once(tmp_path):
    """Four jobs started at once (hydra/launcher=local) need 12 feature sets among 4 distinct entries: each entry
    is extracted by one job while the others wait on its lock and read it."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "run.py", "-m", "hydra/launcher=local", "target=alexnet,resnet18", "metric=cka,cka_debiased",
           "sources=[alexnet,resnet18]", "sources.alexnet.layers=[features.4]",
           "sources.resnet18.layers=[layer1]", "dataset.n_images=8", "extraction.batch_size=8", "logger=none",
           "plots=false", "extraction.progress=false", "stats.bootstrap=0", f"cache.dir={tmp_path / 'cache'}",
           f"hydra.sweep.dir={sweep}"]
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "WANDB_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [p.read_text() for p in sweep.glob("*/run.log")]
    assert len(logs) == 4
    extracted = sum(log.count("features extracted") for log in logs)
    read = sum(log.count("features from the cache") for log in logs)
    assert (extracted, read) == (4, 8), (extracted, read)
