"""Recording-like model targets: a network's layers sampled, repeated and made noisy, as a recording."""
import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from idsim.errors import IdsimError
from idsim.metrics import linear_cka
from idsim.identifiability import identifiability_index
from idsim.recordings import simulate_trials, split_half_reliability

TARGET = ["target=alexnet", "target.layers=[features.4,features.10]"]
SOURCES = ["sources=[alexnet,pixels]", "sources.alexnet.seed=0", "sources.alexnet.layers=[features.4,features.10]"]


def test_noise_models():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 30))
    none = simulate_trials(x, 3, "none")
    assert none.shape == (3, 200, 30) and (none == x.astype(np.float32)).all()
    counts = simulate_trials(x, 40, "poisson", rate=5.0, seed=1, layer="l")
    assert (counts >= 0).all() and (counts == np.round(counts)).all()
    np.testing.assert_allclose(counts.mean((0, 1)), 5.0, rtol=0.1)   # a mean count of `rate` per trial
    assert (counts[:, x[:, 0] <= 0, 0] == 0).all()                    # rectified: no spikes where a <= 0
    g = simulate_trials(x, 400, "gaussian", snr=0.5, seed=1, layer="l")
    np.testing.assert_allclose((g - x).var(0).mean(0), x.var(0) / 0.5, rtol=0.1)
    np.testing.assert_array_equal(g, simulate_trials(x, 400, "gaussian", snr=0.5, seed=1, layer="l"))
    assert not np.array_equal(g, simulate_trials(x, 400, "gaussian", snr=0.5, seed=2, layer="l"))
    r_hi = np.nanmedian(split_half_reliability(simulate_trials(x, 8, "gaussian", snr=4.0, seed=0)))
    r_lo = np.nanmedian(split_half_reliability(simulate_trials(x, 8, "gaussian", snr=0.05, seed=0)))
    assert r_hi > 0.9 > 0.5 > r_lo


def test_identifiability_falls_as_noise_rises_across_seeds():
    """Planted: the target's own features vs a related other system; biased CKA of a noisier recording."""
    rng = np.random.default_rng(0)
    n = 60
    target = np.maximum(rng.standard_normal((n, 40)) @ rng.standard_normal((40, 200)), 0)
    other = np.tanh(target @ rng.standard_normal((200, 150)) / 10) + 0.5 * rng.standard_normal((n, 150))
    for seed in range(3):
        index = []
        for snr in (10.0, 1.0, 0.1, 0.01):
            rec = simulate_trials(target, 4, "gaussian", snr=snr, seed=seed, layer="t").mean(0)
            index.append(identifiability_index(linear_cka(target, rec), [linear_cka(other, rec)]))
        assert np.all(np.diff(index) < 0), (seed, index)


def test_ideal_recording_is_the_network_itself(compose_cfg):
    from idsim import schema, systems
    from idsim.systems.network import NetworkSystem
    from idsim.systems.recording import SimulatedRecordingSystem

    run = schema.load(compose_cfg(["target=resnet18", *TINY]))
    assert isinstance(systems.build_all(run)[0], NetworkSystem)
    run = schema.load(compose_cfg(["target=resnet18", "target.recording.trials=2", *TINY]))
    target = systems.build_all(run)[0]
    assert isinstance(target, SimulatedRecordingSystem) and target.architecture == "torchvision:resnet18"
    with pytest.raises(IdsimError, match="needs split-half reliabilities"):
        schema.load(compose_cfg(["target=resnet18", "target.recording.min_reliability=0.5", *TINY]))


@pytest.fixture(scope="module")
def network_scores(compose_cfg, tmp_path_factory):
    from idsim.experiment import run_experiment

    cfg = compose_cfg([*TARGET, *SOURCES, "metric=cka", *TINY])
    return run_experiment(cfg, tmp_path_factory.mktemp("network"))


def test_simulated_recording_file_recovers_the_model_target_scores(network_scores, compose_cfg, tmp_path):
    """noise none, every unit: `simulate` writes a file that, as target=recording, scores as the network did."""
    from idsim.experiment import run_experiment
    from idsim.recordings import load
    from idsim.recordings.__main__ import main

    out = tmp_path / "sim.nc"
    assert main(["simulate", *TARGET, "target.recording.trials=2", *TINY[:1],
                 "--out", str(out)]) == 0
    rec = load(out)
    assert rec.region_names() == ["features.4", "features.10"] and rec.n_repetitions == 2
    assert rec.attrs["architecture"] == "torchvision:alexnet" and (tmp_path / "sim_stimuli").is_dir()
    cfg = compose_cfg(["target=recording", f"target.path={out}", "target.min_reliability=0.9", *SOURCES, *TINY])
    res = run_experiment(cfg, tmp_path / "run")
    key = ["source", "source_layer", "target_layer"]
    a = network_scores.scores.set_index(key).score.sort_index()
    b = res.scores.set_index(key).score.sort_index()
    pd.testing.assert_index_equal(a.index, b.index)
    np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), atol=1e-6)
    c = pd.read_csv(tmp_path / "run" / "ceilings.csv")       # noise-free: every unit perfectly reliable
    assert (c.n_kept == c.n_neuroids).all() and np.allclose(c.median_reliability, 1.0)
    assert (res.identifiability.correct == network_scores.identifiability.correct).all()
    np.testing.assert_allclose(res.identifiability.identifiability_index,
                               network_scores.identifiability.identifiability_index, atol=1e-6)


def test_simulated_target_in_a_run(compose_cfg, tmp_path):
    from idsim.experiment import run_experiment

    cfg = compose_cfg([*TARGET, "sources=[alexnet,pixels]", "metric=cka", "target.recording.neurons=40",
                       "target.recording.trials=4", "target.recording.noise=poisson", "target.recording.rate=2",
                       "target.recording.min_reliability=0.2", *TINY])
    res = run_experiment(cfg, tmp_path)
    assert (res.units.n_units <= 40).all()
    c = pd.read_csv(tmp_path / "ceilings.csv")
    assert list(c.target_layer) == ["features.4", "features.10"] and (c.n_neuroids == 40).all()
    assert res.identifiability.identifiability_index.notna().all()  # the network's architecture is still known
    assert (res.scores.same_architecture == (res.scores.source == "alexnet")).all()


@pytest.mark.slow
def test_sweep_identifiability_falls_as_noise_rises(compose_cfg, tmp_path):
    """Full runs (biased CKA, resnet18 vs alexnet, the target's own weights): the mean index falls with the SNR."""
    from idsim.experiment import run_experiment

    base = ["target=resnet18", "sources=[alexnet,resnet18]", "identical_weights=true", "metric=cka",
            "target.layers=[layer3.1,layer4.1]", "target.recording.noise=gaussian", "target.recording.trials=2",
            "target.recording.neurons=200", "dataset.n_images=24", "extraction.batch_size=12", "logger=none",
            "plots=false", "extraction.progress=false"]
    for seed in range(3):
        means = []
        for snr in (10, 1, 0.1, 0.01):
            cfg = compose_cfg([*base, f"target.recording.seed={seed}", f"target.recording.snr={snr}"])
            res = run_experiment(cfg, tmp_path / f"{seed}-{snr}")
            means.append(res.identifiability.identifiability_index.mean())
        assert np.all(np.diff(means) < 0), (seed, means)   # e.g. +0.13, +0.09, +0.02, -0.01
