"""Metric definitions, cross-checked against scikit-learn and brute force."""
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold

from idsim.errors import IdsimError
from idsim.metrics import (cka_matrix, centred_gram, fit_predict_cv, identifiability_index, linear_cka,
                           neural_regression, pearson_columns)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 120)) + 50.0  # large mean offset
    Y = X[:, :15] @ rng.standard_normal((15, 6)) + 0.5 * rng.standard_normal((40, 6))
    return X, Y


# CKA against its feature-space and U-statistic forms: tests/test_metrics_crosscheck.py


def test_biased_cka_inflated_debiased_not_on_independent_data():
    rng = np.random.default_rng(1)
    b, d = [], []
    for _ in range(5):
        X, Y = rng.standard_normal((50, 2000)), rng.standard_normal((50, 2000))
        b.append(linear_cka(X, Y))
        d.append(linear_cka(X, Y, debiased=True))
    assert np.mean(b) > 0.9  # anchors: ~0.975 at n=50, p=2000
    assert abs(np.mean(d)) < 0.02


def test_cka_invariances(data):
    X, Y = data
    rng = np.random.default_rng(2)
    Q, _ = np.linalg.qr(rng.standard_normal((X.shape[1], X.shape[1])))
    base = linear_cka(X, Y)
    assert linear_cka(X @ Q, Y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(3.7 * X + 2.0, Y) == pytest.approx(base, rel=1e-9)
    A = rng.standard_normal((X.shape[1], X.shape[1]))
    assert abs(linear_cka(X @ A, Y) - base) > 1e-3


def test_all_pairs_matrix_equals_pairwise(data):
    X, Y = data
    Z = X[:, 30:] ** 2
    grams = [centred_gram(M) for M in (X, Y, Z)]
    for debiased in (False, True):
        M = cka_matrix(grams[:2], grams, debiased=debiased)
        for i, A in enumerate((X, Y)):
            for j, B in enumerate((X, Y, Z)):
                assert M[i, j] == pytest.approx(linear_cka(A, B, debiased=debiased), rel=1e-9)


def test_cka_rejects_mismatched_rows(data):
    X, Y = data
    with pytest.raises(IdsimError, match="same stimuli"):
        linear_cka(X, Y[:-1])


@pytest.mark.parametrize("width", [120, 10])  # dual (p > n) and primal (p < n) paths
def test_kfold_ridge_equals_sklearn(data, width):
    X, Y = data
    X = X[:, :width]
    res = fit_predict_cv(X, Y, cv=5, alphas=[2.5], seed=3)
    rs = []
    for tr, te in KFold(5, shuffle=True, random_state=3).split(X):
        rs.append(pearson_columns(Ridge(alpha=2.5).fit(X[tr], Y[tr]).predict(X[te]), Y[te]))
    np.testing.assert_allclose(res.r, np.mean(rs, 0), atol=1e-9)


@pytest.mark.parametrize("n, k", [(150, 10), (151, 10), (159, 10), (40, 5), (7, 7), (10, 3), (3, 2)])
def test_kfold_splits_are_sklearns_index_for_index(n, k):
    """idsim's k folds without scikit-learn: the same shuffle (NumPy's legacy generator, not default_rng), the
    remainder in the first folds, every image held out once, sorted indices; seeds up to the schema's largest."""
    from idsim.metrics._ridge import kfold
    from idsim.schema import SEED_MAX

    for seed in (0, 1, 3, 12345, SEED_MAX):
        ours = kfold(n, k, seed)
        theirs = list(KFold(k, shuffle=True, random_state=seed).split(np.zeros(n)))
        assert len(ours) == len(theirs) == k
        for (tr, te), (tr_ref, te_ref) in zip(ours, theirs):
            np.testing.assert_array_equal(tr, tr_ref)
            np.testing.assert_array_equal(te, te_ref)
    held = lambda seed: np.concatenate([te for _, te in kfold(n, k, seed)])  # noqa: E731
    assert not np.array_equal(held(0), held(1))  # the seed shuffles: not one fixed split


@pytest.mark.parametrize("width", [120, 10])
def test_loo_equals_brute_force_and_sklearn_alpha_choice(data, width):
    X, Y = data
    X = X[:, :width]
    res = fit_predict_cv(X, Y, cv="loo", alphas=[1.0])
    pred = np.array([Ridge(alpha=1.0).fit(np.delete(X, i, 0), np.delete(Y, i, 0)).predict(X[i:i + 1])[0]
                     for i in range(len(X))])
    np.testing.assert_allclose(res.r, pearson_columns(pred, Y), atol=1e-9)
    alphas = [0.01, 0.1, 1.0, 10.0, 100.0]
    res = fit_predict_cv(X, Y, cv="loo", alphas=alphas)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    np.testing.assert_array_equal(res.alpha, ref.alpha_)


def test_neural_regression_projection_and_errors(data):
    X, Y = data
    wide = np.repeat(X, 100, axis=1)  # 12,000 columns > JL bound for 40 stimuli
    r = neural_regression(wide, Y, cv=5, srp_dim="auto", seed=0)
    assert r.r.shape == (Y.shape[1],) and np.isfinite(r.r).all()
    assert neural_regression(wide, Y, cv=5, srp_dim="auto", seed=0).r == pytest.approx(r.r)
    with pytest.raises(IdsimError, match="cv"):
        neural_regression(X, Y, cv="nope")
    with pytest.raises(IdsimError, match="alphas"):
        neural_regression(X, Y, alphas=[-1])


def test_pearson_nan_for_constant_columns():
    A = np.arange(10.0)[:, None].repeat(2, 1)
    B = np.c_[np.full(10, 0.1), np.arange(10.0)]
    r = pearson_columns(A, B)
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0)


def test_identifiability_index():
    assert identifiability_index(0.9, [0.3, 0.5]) == pytest.approx((0.9 - 0.4) / (0.9 + 0.4))
    assert identifiability_index(0.5, [0.2, 0.3]) == pytest.approx(1 / 3)
    assert np.isnan(identifiability_index(float("nan"), [0.3]))
    assert np.isnan(identifiability_index(0.5, []))


@pytest.mark.parametrize("same, others, note", [
    (0.1, [-0.1, -0.13], "mean score of the other sources <= 0"),   # the formula would give -14.3
    (0.10, [0.0, -0.23], "mean score of the other sources <= 0"),
    (-0.05, [0.2, 0.3], "target architecture's score <= 0"),       # the formula would give -1.22
    (0.0, [0.2], "target architecture's score <= 0"),
])
def test_identifiability_index_is_undefined_unless_both_scores_are_positive(same, others, note):
    from idsim.identifiability import index_note

    naive = (same - np.mean(others)) / (same + np.mean(others))
    assert not -1 < naive < 1 or same <= 0  # what the bare formula would have reported
    assert np.isnan(identifiability_index(same, others))
    assert index_note(same, others) == note


def test_defined_indices_lie_in_minus_one_to_one():
    rng = np.random.default_rng(0)
    for _ in range(200):
        same, others = rng.uniform(-1, 1), rng.uniform(-1, 1, size=4)
        v = identifiability_index(same, others)
        assert np.isnan(v) or -1 < v < 1


def _scores(rows):
    import pandas as pd

    cols = ["source", "source_layer", "source_layer_index", "target", "target_layer", "target_layer_index", "metric",
            "score", "same_architecture"]
    return pd.DataFrame(rows, columns=cols)


def test_identifiability_table_and_verdict():
    from idsim.metrics import identifiability, verdict

    rows = []
    for t, tl in enumerate(["l0", "l1"]):
        rows += [("net", f"s{i}", i, "net", tl, t, "cka", 0.5 + 0.4 * (i == t), True) for i in range(2)]
        rows += [("other", "o0", 0, "net", tl, t, "cka", 0.6 if t == 0 else 0.95, False)]
    ident = identifiability(_scores(rows))
    assert list(ident.correct) == [True, False]
    assert list(ident.best_source) == ["net", "other"]
    assert ident.identifiability_index[0] == pytest.approx((0.9 - 0.6) / 1.5)
    assert ident.best_source_layer[0] == "s0"
    assert list(ident["rank"]) == [1, 2] and ident.margin[1] == pytest.approx(0.95 - 0.9)
    line = verdict(ident, "net")
    assert "partly identified at 1/2" in line and "other (1)" in line and "mean rank 1.5 of 2" in line
    only_same = identifiability(_scores([r for r in rows if r[0] == "net"]))
    assert "no source of another architecture" in verdict(only_same, "net")
    no_same = identifiability(_scores([r for r in rows if r[0] == "other"]))
    assert "no source has the target's architecture" in verdict(no_same, "net")
    assert no_same["rank"].isna().all()


def test_verdict_averages_only_defined_indices_and_counts_the_rest():
    from idsim.metrics import identifiability, verdict

    rows = []  # layer l0: all positive (index 1/3); l1: the others average below 0 (index undefined); l1 still won
    rows += [("net", "s0", 0, "net", "l0", 0, "rsa", 0.5, True), ("a", "a0", 0, "net", "l0", 0, "rsa", 0.2, False),
             ("b", "b0", 0, "net", "l0", 0, "rsa", 0.3, False)]
    rows += [("net", "s0", 0, "net", "l1", 1, "rsa", 0.1, True), ("a", "a0", 0, "net", "l1", 1, "rsa", -0.1, False),
             ("b", "b0", 0, "net", "l1", 1, "rsa", -0.13, False)]
    ident = identifiability(_scores(rows))
    assert ident.identifiability_index[0] == pytest.approx(1 / 3) and np.isnan(ident.identifiability_index[1])
    assert ident.index_note[1] == "mean score of the other sources <= 0" and pd.isna(ident.index_note[0])
    assert list(ident["rank"]) == [1, 1] and ident.correct.all()
    line = verdict(ident, "net")
    assert "identified at 2/2" in line and "+0.333 over the 1 target layers where it is defined" in line
    assert "1 undefined" in line and "mean rank 1.0" in line
