"""The bootstrap over probe images, checked against brute-force recomputation from resampled activations,
and the statistics drawn from it (P(correct), intervals, paired p-values, aggregation over seeds)."""
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr

from idsim.gram import centred_gram, pattern_gram
from idsim.metrics import linear_cka, rdm, rdm_from_gram
from idsim.metrics._ridge import bootstrap_r, fit_predict_cv, pearson_columns
from idsim.metrics.cka import cka_bootstrap, u_centre
from idsim.metrics.rsa import rsa_bootstrap
from idsim.stats import add_intervals, over_seeds, resamples

N = 14


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = np.maximum(rng.standard_normal((N, 40)), 0) + 2.0
    Y = X[:, :15] @ rng.standard_normal((15, 25)) + rng.standard_normal((N, 25))
    Z = rng.standard_normal((N, 30))
    return {"X": X, "Y": Y, "Z": Z, "R": resamples(N, 25, seed=1)}


def test_resamples_are_seeded_draws_with_replacement():
    a, b = resamples(10, 50, seed=0), resamples(10, 50, seed=0)
    assert a.shape == (50, 10) and np.array_equal(a, b) and not np.array_equal(a, resamples(10, 50, seed=1))
    assert any(len(set(r)) < 10 for r in a)  # with replacement
    assert resamples(10, 0, seed=0) is None


def test_biased_cka_bootstrap_is_cka_of_the_resampled_activations(data):
    X, Y, Z, R = data["X"], data["Y"], data["Z"], data["R"]
    boot = cka_bootstrap([centred_gram(X), centred_gram(Z)], [centred_gram(Y)], R)
    assert boot.shape == (len(R), 2, 1)
    brute = np.array([[linear_cka(X[i], Y[i]), linear_cka(Z[i], Y[i])] for i in R])
    np.testing.assert_allclose(boot[:, :, 0], brute, atol=1e-10)


def test_debiased_cka_bootstrap_leaves_out_pairs_of_an_image_with_its_copy(data):
    X, Y, R = data["X"], data["Y"], data["R"]
    boot = cka_bootstrap([centred_gram(X)], [centred_gram(Y)], R, debiased=True)[:, 0, 0]
    brute = []
    for idx in R:  # features centred by their full-sample mean, resampled; copies' pairs treated like the diagonal
        copies = idx[:, None] == idx[None, :]
        Xc, Yc = (X - X.mean(0))[idx], (Y - Y.mean(0))[idx]
        K, L = u_centre(Xc @ Xc.T, copies), u_centre(Yc @ Yc.T, copies)
        brute.append((K * L).sum() / np.sqrt((K * K).sum() * (L * L).sum()))
    np.testing.assert_allclose(boot, brute, atol=1e-10)


def test_debiased_bootstrap_is_not_inflated_on_independent_data():
    """Counting copies as distinct stimuli would put the resamples near the biased form (~0.6 here)."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((50, 100)), rng.standard_normal((50, 100))
    R = resamples(50, 200, seed=0)
    boot = cka_bootstrap([centred_gram(X)], [centred_gram(Y)], R, debiased=True)[:, 0, 0]
    textbook = np.mean([linear_cka(X[i], Y[i], debiased=True) for i in R[:50]])
    assert textbook > 0.4
    assert abs(boot.mean() - linear_cka(X, Y, debiased=True)) < 0.05


@pytest.mark.parametrize("kind, compare", [("correlation", "pearson"), ("correlation", "spearman"),
                                           ("euclidean", "pearson"), ("cosine", "spearman")])
def test_rsa_bootstrap_equals_rsa_of_the_resampled_activations_without_self_pairs(data, kind, compare):
    from idsim.metrics.rsa import gram_kind

    X, Y, R = data["X"], data["Y"], data["R"]
    rdms = [rdm_from_gram(pattern_gram(M, gram_kind(kind)), kind) for M in (X, Y)]
    boot = rsa_bootstrap([rdms[0]], [rdms[1]], R, compare=compare)[:, 0, 0]
    I, J = np.triu_indices(N, k=1)
    corr = pearsonr if compare == "pearson" else spearmanr
    for b, idx in enumerate(R):
        keep = idx[I] != idx[J]  # pairs of a resampled image with its own copy are left out
        dx, dy = pdist(X[idx], kind)[keep], pdist(Y[idx], kind)[keep]
        assert boot[b] == pytest.approx(corr(dx, dy)[0], abs=1e-9)
    assert np.allclose(rdms[0], rdm(X, kind))


@pytest.mark.parametrize("cv", ["loo", 3])
def test_regression_bootstrap_reweights_held_out_predictions(data, cv):
    X, Y, R = data["X"], data["Y"][:, :6], data["R"]
    res = fit_predict_cv(X, Y, cv=cv, alphas=[1.0], keep_predictions=True)
    counts = np.stack([np.bincount(r, minlength=N) for r in R])
    boot = bootstrap_r(res.predictions, Y, res.folds, counts)
    if cv == "loo":  # the point estimate is r over all images, and its resamples are r over the resampled rows
        np.testing.assert_allclose(res.r, pearson_columns(res.predictions, Y), atol=1e-12)
    for b, idx in enumerate(R):
        per_fold = []
        for k in np.unique(res.folds):
            rows = idx[res.folds[idx] == k]  # the fold's images as the resample draws them (with repeats)
            per_fold.append(pearson_columns(res.predictions[rows], Y[rows]) if rows.size >= 2 else np.full(6, np.nan))
        with np.errstate(all="ignore"):
            expected = np.nanmean(np.vstack(per_fold), 0)
        np.testing.assert_allclose(boot[b], expected, atol=1e-9)


def test_bootstrap_of_layers_together_equals_each_alone(data):
    """Source layers scored together share the responses' weighted sums; each layer's resampled r must be
    the one it gets alone, bit for bit (the same sums in the same order), whatever the layers next to it.
    A kernel that mixed up the layers' rows, or reused one layer's sums for the next, would differ."""
    X, Y, R = data["X"], data["Y"][:, :7], data["R"]
    counts = np.stack([np.bincount(r, minlength=N) for r in R])
    preds = []
    for cols in (slice(0, 5), slice(3, 9), slice(None)):
        res = fit_predict_cv(X[:, cols], Y, cv=3, alphas=[1.0], keep_predictions=True)
        preds.append(res.predictions)
    preds.append(np.tile(preds[0][:, :1], (1, 7)))  # a layer whose predictions are one column, repeated
    together = bootstrap_r(preds, Y, res.folds, counts)
    assert together.shape == (4, len(R), 7)
    for g, pred in enumerate(preds):
        np.testing.assert_array_equal(together[g], bootstrap_r(pred, Y, res.folds, counts))
    assert not np.allclose(together[0], together[1], equal_nan=True)


def _boots():
    """Two target layers; the target architecture wins layer 0 in 90 of 100 resamples and loses layer 1 always."""
    rng = np.random.default_rng(0)
    same = np.zeros((100, 2, 2))     # (B, source layers, target layers)
    same[:, 0, 0] = 0.6
    same[:, 1, 0] = 0.1
    same[:, :, 1] = 0.2
    other = np.zeros((100, 1, 2))
    other[:, 0, 0] = np.where(np.arange(100) < 90, 0.5, 0.7)
    other[:, 0, 1] = 0.4 + rng.uniform(0, 0.01, 100)
    return {"net": same, "other": other}


def test_add_intervals_computes_p_correct_p_values_and_intervals():
    ident = pd.DataFrame({"target_layer": ["a", "b"], "identifiability_index": [0.1, -0.3]})
    best = pd.DataFrame({"source": ["net", "other", "net", "other"], "target_layer": ["a", "a", "b", "b"]})
    ident, best = add_intervals(ident, best, _boots(), {"net": True, "other": False}, ["a", "b"], ci=0.9)
    a, b = ident.set_index("target_layer").loc["a"], ident.set_index("target_layer").loc["b"]
    assert a.p_correct == pytest.approx(0.9) and b.p_correct == 0.0
    assert a.p_value == pytest.approx((1 + 10) / 101) and b.p_value == pytest.approx(1.0)
    idx_win, idx_lose = (0.6 - 0.5) / 1.1, (0.6 - 0.7) / 1.3
    assert a.index_ci_low == pytest.approx(np.percentile([idx_lose] * 10 + [idx_win] * 90, 5))
    assert a.index_ci_high == pytest.approx(idx_win) and a.index_boot_defined == 1.0
    row = best.set_index(["source", "target_layer"]).loc[("other", "a")]
    assert row.ci_low == pytest.approx(0.5) and row.ci_high == pytest.approx(0.7)
    assert (ident.n_bootstrap == 100).all()


def test_over_seeds_aggregates_a_seed_sweep():
    ident = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "target": "net", "metric": "cka", "target_layer": ["a"] * 3 + ["b"] * 3,
                          "target_layer_index": [0] * 3 + [1] * 3, "identifiability_index": [0.1, 0.3, 0.2, -0.1, np.nan, 0.1],
                          "correct": [True, True, False, False, False, True]})
    agg = over_seeds(ident, ["seed"]).set_index("target_layer")
    assert agg.loc["a", "n_seeds"] == 3 and agg.loc["a", "mean_index"] == pytest.approx(0.2)
    assert agg.loc["a", "sd_index"] == pytest.approx(0.1) and agg.loc["a", "fraction_identified"] == pytest.approx(2 / 3)
    assert agg.loc["b", "mean_index"] == pytest.approx(0.0)  # the undefined index is left out
    assert over_seeds(ident, ["unit_ratio"]) is None


def test_a_run_reports_how_sure_each_verdict_is(compose_cfg, tmp_path):
    from conftest import TINY
    from idsim.experiment import run_experiment

    base = ["target=alexnet", "sources=[alexnet,resnet18]", "target.layers=[features.4,classifier.2]",
            "sources.alexnet.layers=[features.4,classifier.2]", "sources.resnet18.layers=[layer2,avgpool]", *TINY]
    planted = run_experiment(compose_cfg([*base, "identical_weights=true", "stats.bootstrap=200"]), tmp_path / "a")
    ident = planted.identifiability
    assert (ident.p_correct == 1.0).all() and np.allclose(ident.p_value, 1 / 201)
    assert (ident.index_ci_low < ident.index_ci_high).all() and (ident.index_ci_low > 0).all()
    best = pd.read_csv(tmp_path / "a" / "best_scores.csv")
    assert {"ci_low", "ci_high"} <= set(best.columns) and (best.ci_low <= best.ci_high).all()
    off = run_experiment(compose_cfg([*base, "stats.bootstrap=0"]), tmp_path / "b")
    assert "p_correct" not in off.identifiability and "ci_low" not in off.best


def test_summarize_aggregates_a_sweep_over_seeds(tmp_path, capsys):
    """python -m idsim.sweep summarize writes summary/seeds.csv and prints mean +- SD across seeds."""
    from idsim.jobs import write_status
    from idsim.sweep import main

    (tmp_path / "multirun.yaml").write_text("hydra:\n  overrides:\n    task: ['seed=0,1,2']\nlogger:\n  kind: none\n")
    for seed, index in ((0, 0.1), (1, 0.3), (2, 0.2)):
        job = tmp_path / f"seed={seed}"
        job.mkdir()
        write_status(job, {"state": "done", "overrides": [f"seed={seed}"], "result": {}})
        pd.DataFrame({"target": ["net"], "metric": ["cka"], "target_layer": ["a"], "target_layer_index": [0],
                      "identifiability_index": [index], "correct": [seed != 2]}).to_csv(job / "identifiability.csv",
                                                                                      index=False)
        pd.DataFrame({"source": ["net"], "score": [0.5]}).to_csv(job / "scores.csv", index=False)
    assert main(["summarize", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    seeds = pd.read_csv(tmp_path / "summary" / "seeds.csv")
    assert seeds.loc[0, "n_seeds"] == 3 and seeds.loc[0, "mean_index"] == pytest.approx(0.2)
    assert seeds.loc[0, "fraction_identified"] == pytest.approx(2 / 3)
    assert "index +0.200 +- 0.100" in out and "67% of seeds" in out


def test_over_seeds_with_a_swept_metric_groups_by_it_once():
    ident = pd.DataFrame({"seed": [1, 2, 1, 2], "metric": ["rsa", "rsa", "cka", "cka"], "target": "net",
                          "target_layer": "a", "target_layer_index": 0, "identifiability_index": [0.1, 0.3, 0.2, 0.4],
                          "correct": [True, False, True, True]})
    agg = over_seeds(ident, ["seed", "metric"]).set_index("metric")
    assert agg.loc["rsa", "mean_index"] == pytest.approx(0.2) and agg.loc["cka", "fraction_identified"] == 1.0


def test_nanmedian_rows_equals_numpy_with_and_without_gaps():
    from idsim.metrics._ridge import nanmedian_rows

    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 8, 301):
        R = rng.standard_normal((40, m))
        R[::7, ::3] = np.nan   # some rows with gaps (partial sort path vs full sort path)
        R[5] = np.nan          # an all-NaN row
        R[1, :m // 2] = np.nan  # rows with other numbers of values (other middle positions), one an odd number
        R[2, :1] = np.nan
        R[3, 1:] = np.nan      # a single value
        R[4, ::2] = np.inf     # infinite values are values
        R[4, 1:3] = np.nan
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
            expected = np.nanmedian(R, axis=1)
        np.testing.assert_array_equal(nanmedian_rows(R), expected)
