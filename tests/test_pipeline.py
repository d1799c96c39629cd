"""End-to-end runs on tiny inputs with planted answers."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY
from idsim import build_model, extract, load_metric, load_probe_set, score_layers
from idsim.experiment import run_experiment
from idsim.reduce import sample_units


@pytest.fixture(scope="module")
def planted_cka(compose_cfg, tmp_path_factory):
    cfg = compose_cfg(["target=resnet18", "sources=[alexnet,resnet18]", "identical_weights=true", "metric=cka", *TINY])
    out = tmp_path_factory.mktemp("planted")
    return run_experiment(cfg, out), out


def test_identical_source_gives_cka_one_and_wins_everywhere(planted_cka):
    res, out = planted_cka
    s = res.scores
    diag = s[(s.source == "resnet18") & (s.source_layer == s.target_layer)]
    assert len(diag) == 9
    np.testing.assert_allclose(diag.score, 1.0, atol=1e-9)
    ident = res.identifiability
    assert ident.correct.all() and (ident.best_source == "resnet18").all()
    assert (ident.best_source_layer == ident.target_layer).all()
    assert (ident.identifiability_index > 0).all()
    assert "identified at 9/9" in res.verdict


def test_outputs_written(planted_cka):
    res, out = planted_cka
    for name in ("scores.csv", "identifiability.csv", "best_scores.csv", "target_units.csv", "config.yaml"):
        assert (out / name).is_file(), name
    scores = pd.read_csv(out / "scores.csv")
    assert {"source", "source_layer", "target", "target_layer", "metric", "score"} <= set(scores.columns)
    assert len(scores) == (7 + 9) * 9  # alexnet 7 layers, resnet18 9, x 9 target layers
    ident = pd.read_csv(out / "identifiability.csv")
    assert {"target_layer", "best_source", "best_source_layer", "correct", "identifiability_index"} <= set(ident.columns)


def test_other_seed_is_not_identical(compose_cfg, tmp_path):
    cfg = compose_cfg(["target=resnet18", "sources=[resnet18]", "target.layers=[layer1.0]",
                       "sources.resnet18.layers=[layer1.0]", *TINY])
    res = run_experiment(cfg, tmp_path)
    assert res.scores.source_seed.iloc[0] == 1
    assert 0.2 < res.scores.score.iloc[0] < 0.999


def test_regression_identical_narrow_layer_near_one(compose_cfg, tmp_path):
    cfg = compose_cfg(["target=resnet18", "sources=[alexnet,resnet18]", "identical_weights=true", "metric=regression",
                       "target.layers=[avgpool]", "sources.resnet18.layers=[layer4.1,avgpool]",
                       "sources.alexnet.layers=[classifier.5]", "metric.max_units=64", "metric.cv=5",
                       "dataset.n_images=40", "extraction.batch_size=20", "logger=none", "plots=false",
                       "extraction.progress=false"])
    res = run_experiment(cfg, tmp_path)
    s = res.scores.set_index(["source", "source_layer"]).score
    assert s["resnet18", "avgpool"] > 0.9
    assert res.identifiability.correct.all()


def test_unit_ratio_is_honoured(compose_cfg, tmp_path):
    cfg = compose_cfg(["target=alexnet", "sources=[alexnet]", "unit_ratio=0.01", *TINY])
    res = run_experiment(cfg, tmp_path)
    u = res.units
    np.testing.assert_array_equal(u.n_sampled, np.maximum(1, np.round(0.01 * u.n_units)).astype(int))
    assert (u.n_kept == u.n_sampled - u.n_constant).all()
    assert (res.scores.unit_ratio == 0.01).all()


def test_sample_units_without_replacement_and_seeded():
    a = sample_units(10_000, 0.05, seed=3, layer="x")
    assert a.size == 500 and np.unique(a).size == 500 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, sample_units(10_000, 0.05, seed=3, layer="x"))
    assert not np.array_equal(a, sample_units(10_000, 0.05, seed=4, layer="x"))
    np.testing.assert_array_equal(sample_units(7, 1.0, 0, "x"), np.arange(7))


def test_inplace_addition_does_not_corrupt_captured_layer():
    """ResNet's block adds the identity into bn2's output in place; the recorded bn2 output must not see it."""
    model = build_model("resnet18", seed=0)
    probe = load_probe_set({"name": "shapes", "n_images": 6})
    got = extract(model, probe, load_metric("cka").plan("source"), ["layer1.0.bn2"], batch_size=6, progress=False)
    m = model.module
    x = torch.stack([model.transform(probe.image(i)) for i in range(6)])
    with torch.inference_mode():
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        b = m.layer1[0]
        raw = b.bn2(b.conv2(b.relu(b.bn1(b.conv1(h))))).flatten(1).double().numpy()
    ref = raw - raw.mean(0)
    np.testing.assert_allclose(got["layer1.0.bn2"].gram, ref @ ref.T, rtol=1e-5)
    naive = {}  # what a hook keeping the tensor itself would have recorded
    handle = b.bn2.register_forward_hook(lambda mod, i, o: naive.setdefault("o", o))
    with torch.inference_mode():
        m(x)
    handle.remove()
    corrupted = naive["o"].flatten(1).double().numpy()
    assert np.abs(corrupted - raw).max() > 1e-3  # the test can tell a corrupted capture apart


def test_python_api_scores_a_pair():
    probe = load_probe_set({"name": "shapes", "n_images": 8})
    metric = load_metric("cka_debiased")
    t = extract(build_model("alexnet", seed=0), probe, metric.plan("target"), batch_size=8, progress=False)
    s = extract(build_model("alexnet", seed=0), probe, metric.plan("source"), batch_size=8, progress=False)
    df = score_layers(s, t, metric)
    assert len(df) == 49
    same = df[df.source_layer == df.target_layer]
    np.testing.assert_allclose(same.score, 1.0, atol=1e-9)


@pytest.mark.parametrize("sources", [["sources=[alexnet]"],
                                     # no source of the target's architecture: the tables hold missing values (NA)
                                     ["sources=[resnet18]", "sources.resnet18.layers=[layer4.1]"]])
def test_wandb_offline_run_lands_in_output_folder(compose_cfg, tmp_path, monkeypatch, sources):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_cfg(["target=alexnet", *sources, "dataset.n_images=6", "extraction.batch_size=6",
                       "logger=wandb", "plots=true", "extraction.progress=false", "target.layers=[features.1,classifier.5]"])
    run_experiment(cfg, tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert (tmp_path / "figures" / "best_scores.png").is_file()


def test_wandb_child_process_errors_come_back_in_one_line(tmp_path, caplog):
    """The W&B run lives in a child process: what it refuses is an IdsimError here, in its own words, and the
    child is gone; a failed job's finish reports a dead child as a warning (the job's own error is the one raised)."""
    from idsim.errors import IdsimError
    from idsim.tracking import WandbProcess

    with pytest.raises(IdsimError, match=r"^wandb.mode='live'; valid: offline, online, disabled$"):
        WandbProcess(tmp_path, {}, mode="live")
    tracker = WandbProcess(tmp_path, {"a": 1}, mode="disabled")  # a run that writes nothing
    tracker._proc.kill()
    tracker._proc.wait()
    with pytest.raises(IdsimError, match="the W&B process ended"):
        tracker.summary({"x": 1})
    tracker.finish(failed=True)
    assert "the W&B process ended" in caplog.text


@pytest.mark.parametrize("rdm,compare", [("correlation", "pearson"), ("euclidean", "spearman")])
def test_rsa_through_the_pipeline_equals_rsa_on_raw_features(rdm, compare):
    """The pipeline's streamed RDMs (with target unit sampling) give the scores rsa() gives on the raw activations."""
    from idsim.features import Plan
    from idsim.metrics import rsa

    probe = load_probe_set({"name": "shapes", "n_images": 10})
    metric = load_metric({"kind": "rsa", "rdm": rdm, "compare": compare})
    layers = ["features.4", "classifier.2"]
    t_model, s_model = build_model("alexnet", seed=0), build_model("alexnet", seed=1)
    t = extract(t_model, probe, metric.plan("target", unit_ratio=0.5, seed=3), layers=layers, batch_size=5, progress=False)
    s = extract(s_model, probe, metric.plan("source"), layers=layers, batch_size=5, progress=False)
    df = score_layers(s, t, metric)
    raw_t = extract(t_model, probe, Plan(grams=(), units=True), layers=layers, batch_size=10, progress=False)
    raw_s = extract(s_model, probe, Plan(grams=(), units=True), layers=layers, batch_size=10, progress=False)
    for _, row in df.iterrows():
        kept = sample_units(raw_t[row.target_layer].n_units, 0.5, 3, row.target_layer)
        T = raw_t[row.target_layer].units[:, kept]
        expected = rsa(raw_s[row.source_layer].units, T, rdm=rdm, compare=compare)
        assert row.score == pytest.approx(expected, abs=1e-6)
    with pytest.raises(Exception, match="metric.rdm='nope'"):
        load_metric({"kind": "rsa", "rdm": "nope"})


def test_half_precision_forward_passes_are_reduced_in_float32_and_keyed_apart(compose_cfg, tmp_path):
    """extraction.precision=bfloat16 runs the forward passes in bfloat16 (the code path of a GPU run, here on the CPU);
    scores stay close to float32's and the feature cache keeps the two apart."""
    cache = tmp_path / "cache"
    base = ["target=alexnet", "sources=[alexnet]", "target.layers=[features.4,classifier.2]",
            "sources.alexnet.layers=[features.4,classifier.2]", *TINY, f"cache.dir={cache}", "stats.bootstrap=0"]
    full = run_experiment(compose_cfg(base), tmp_path / "f32").scores
    half = run_experiment(compose_cfg([*base, "extraction.precision=bfloat16"]), tmp_path / "bf16").scores
    assert np.abs(full.score.to_numpy() - half.score.to_numpy()).max() < 0.02
    assert not np.array_equal(full.score.to_numpy(), half.score.to_numpy())
    assert len(list((cache / "features").glob("*/*/meta.json"))) == 4  # target and source, in each precision


def test_tracker_logging_runs_in_the_background_and_its_errors_are_not_lost(tmp_path, monkeypatch):
    """Tables are logged on the writer's background thread (a warm job does not wait for W&B to start); a
    logging error still fails the run when the writer closes, and the tracker is finished as failed."""
    import threading

    import pandas as pd

    import idsim.tracking as tracking
    from idsim.outputs import RunWriter

    calls, gate = [], threading.Event()

    class Slow(tracking.NullTracker):
        def log_table(self, key, df):
            gate.wait(5)
            calls.append((key, threading.current_thread().name))
            if key == "scores":
                raise RuntimeError("tracker refused the table")

        def finish(self, failed=False):
            calls.append(("finish", failed))

    import idsim.report

    monkeypatch.setattr(tracking, "make_tracker", lambda *a, **k: Slow())
    monkeypatch.setattr(idsim.report, "print_summary", lambda *a, **k: None)
    table = pd.DataFrame({"a": [1]})
    with pytest.raises(RuntimeError, match="refused"):
        with RunWriter(tmp_path, {}, None, name="t", plots=False) as w:
            w.target_units(table)   # returns before the tracker has logged anything
            assert calls == []
            gate.set()
            w.finish(pd.DataFrame({"identifiability_index": [0.1], "correct": [True]}), table, "verdict")
    assert [c[0] for c in calls] == ["target_units", "scores", "identifiability", "best_scores", "finish"]
    assert all(name.startswith("idsim-figures") for _, name in calls[:-1]) and calls[-1] == ("finish", True)
    assert (tmp_path / "target_units.csv").is_file() and (tmp_path / "best_scores.csv").is_file()


def test_results_files_hold_each_source_as_it_is_scored_and_equal_one_write_of_all(tmp_path):
    """scores.csv and bootstrap.csv gain each source's rows when it is scored (appended, not rewritten); the
    files equal the whole table written at once, also when a later source brings a column or a type the
    earlier ones lacked (then the file is rewritten whole, not appended out of line)."""
    from idsim.outputs import RunWriter

    parts = [pd.DataFrame({"source": ["a", "a"], "score": [0.5, 0.25], "k": [1, 2]}),
             pd.DataFrame({"source": ["b"], "score": [0.125], "k": [3]}),
             pd.DataFrame({"source": ["c"], "score": [0.75], "k": [np.nan]}),              # int -> float column
             pd.DataFrame({"source": ["d"], "score": [0.0625], "k": [4.0], "extra": ["x"]}),  # a new column
             pd.DataFrame({"source": ["e"], "score": [1.0], "k": [5.0], "extra": ["y"]})]
    with RunWriter(tmp_path, {}, None, name="t", plots=False) as w:
        for i, part in enumerate(parts):
            w.add_scores(part)
            w.add_bootstrap(part)
            expected = pd.concat(parts[:i + 1], ignore_index=True).to_csv(index=False)
            assert (tmp_path / "scores.csv").read_text() == expected
            assert (tmp_path / "bootstrap.csv").read_text() == expected
