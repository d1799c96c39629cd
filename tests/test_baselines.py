"""Hand-made baselines as sources, and in-memory arrays through the network path's own reducers."""
import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from idsim import baselines as B
from idsim import build_model, extract, load_probe_set
from idsim.arrays import reduce_arrays, reduce_batches
from idsim.featureset import Plan


def test_arrays_reduce_exactly_as_a_network_layer():
    """A layer's exact values fed as arrays give the network path's Grams, units and projections."""
    probe = load_probe_set({"name": "shapes", "n_images": 8})
    model = build_model("resnet18", seed=0)
    layers = ["layer3.1", "avgpool"]
    raw = extract(model, probe, Plan(grams=(), units=True, seed=0), layers, batch_size=4, progress=False)
    values = {lay: raw[lay].units for lay in layers}  # every unit, in order (no constant dropped)
    assert all(raw[lay].unit_index.size == raw[lay].n_units for lay in layers)
    plans = [Plan(grams=("column",), unit_ratio=0.5, drop_constant=True, seed=3),      # CKA's target
             Plan(grams=("row", "raw"), seed=3),                                      # RSA's RDMs
             Plan(grams=(), features=True, project=256, seed=3),                      # regression's source
             Plan(grams=(), units=True, max_units=100, unit_ratio=0.5, drop_constant=True, seed=3)]  # its target
    for plan in plans:
        net = extract(model, probe, plan, layers, batch_size=4, progress=False)
        arr = reduce_arrays(values, plan, batch_size=4, name=model.identity)  # the same identity: the same projections
        for lay in layers:
            a, b = net[lay], arr[lay]
            assert (a.n_units, a.n_sampled, a.n_constant) == (b.n_units, b.n_sampled, b.n_constant)
            for kind in a.grams:  # equal up to float32 rounding of the streamed column sums (the mean)
                np.testing.assert_allclose(b.grams[kind], a.grams[kind], rtol=1e-6,
                                           atol=1e-6 * np.abs(a.grams[kind]).max())
            for attr in ("features", "units", "unit_index"):
                if getattr(a, attr) is not None:
                    np.testing.assert_array_equal(getattr(b, attr), getattr(a, attr))


def test_reduce_batches_checks_rows():
    from idsim.errors import IdsimError

    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    with pytest.raises(IdsimError, match="got 3 rows, expected 5"):
        reduce_batches([{"a": x[:3]}], 5, ["a"])
    with pytest.raises(IdsimError, match="lacks layer"):
        reduce_batches([{"b": x}], 5, ["a"])


def test_prepare_geometry_and_grayscale():
    img = Image.fromarray((np.random.default_rng(0).random((20, 40, 3)) * 255).astype(np.uint8))
    x = B.prepare(img, 16)
    assert x.shape == (16, 16) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert B.prepare(img, 16, gray=False).shape == (16, 16, 3)
    np.testing.assert_allclose(B.grid_means(np.arange(16.0).reshape(4, 4), 2), [[2.5, 4.5], [10.5, 12.5]])


def test_gabor_prefers_its_orientation():
    bank = B.gabor_bank(orientations=4, frequencies=[0.1])
    yy, xx = np.mgrid[0:64, 0:64]
    vertical = np.cos(2 * np.pi * 0.1 * xx)          # varies along x: the theta = 0 filter's orientation
    f = B.gabor_features(vertical, bank, grid=2).reshape(4, 4)
    assert f.mean(1).argmax() == 0 and f.shape == (4, 4)


def test_rff_and_pca():
    x = np.random.default_rng(0).standard_normal((30, 10))
    w, b = B.rff_weights(10, 256, bandwidth=B.median_distance(x), seed=0)
    z = B.random_fourier_features(x, w, b)
    assert z.shape == (30, 256)
    k = z @ z.T                                         # approximates an RBF kernel: k(x, x) ~ 1
    np.testing.assert_allclose(np.diag(k), 1.0, atol=0.2)
    assert not np.allclose(B.rff_weights(10, 256, 1.0, seed=1)[0], w)
    p = B.pca(x, 50)
    assert p.shape == (30, 10) and np.allclose(p.T @ p - np.diag(np.diag(p.T @ p)), 0, atol=1e-3)


def test_baselines_as_sources_are_seeded_and_cached(compose_cfg, tmp_path, caplog):
    from idsim.experiment import run_experiment

    overrides = ["target=alexnet", "target.layers=[features.1]", "sources=[gabor,gist,rff,pixels]",
                 "sources.gabor.size=32", "sources.gist.size=32", "sources.rff.dim=64", "metric=cka", *TINY]
    res = run_experiment(compose_cfg(overrides), tmp_path / "a")
    s = res.scores
    assert list(s.source) == ["gabor", "gist", "rff", "pixels"] and list(s.source_layer) == list(s.source)
    assert (s.source_weights == "baseline").all() and s.loc[s.source == "rff", "source_seed"].item() == 1
    assert s.score.between(0, 1).all()
    caplog.set_level("INFO", logger="idsim")
    again = run_experiment(compose_cfg(overrides), tmp_path / "b")
    assert sum("features from the cache" in r.message for r in caplog.records) == 5  # target + 4 baselines
    np.testing.assert_array_equal(again.scores.score, s.score)
