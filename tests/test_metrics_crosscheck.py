"""The metric engine against the reference libraries (scipy, scikit-learn, rsatoolbox) and brute force.

Cases include large mean offsets and rank-deficient features, where naive implementations lose
precision or break.
"""
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import StratifiedKFold

from idsim.errors import IdsimError
from idsim.metrics import (centred_gram, cka_matrix, compare_rdms, fit_predict_cv, linear_cka, neural_regression,
                           pearson_columns, rdm, rsa, rsa_matrix)
from idsim.metrics.cka import cka_from_grams


def _cases():
    rng = np.random.default_rng(7)
    n = 30
    offset = rng.standard_normal((n, 80)) + 100.0                  # activations with a large mean
    low = rng.standard_normal((n, 3)) @ rng.standard_normal((3, 60))  # rank 3
    dup = np.repeat(rng.standard_normal((n, 5)), 4, axis=1)        # duplicated columns (rank 5, p < n)
    relu = np.maximum(rng.standard_normal((n, 200)), 0)            # sparse, non-negative
    return {"offset": offset, "rank3": low, "duplicated": dup, "relu": relu}


CASES = _cases()
PAIRS = [(a, b) for a in CASES for b in CASES if a < b]


def _feature_space_debiased(X, Y):
    """Kornblith et al. (2019) debiased CKA in feature space (no n x n matrix)."""
    n = X.shape[0]
    X, Y = X - X.mean(0), Y - Y.mean(0)

    def hsic(A, B):
        ra, rb = (A**2).sum(1), (B**2).sum(1)
        return (np.linalg.norm(B.T @ A) ** 2 - n / (n - 2) * ra @ rb + ra.sum() * rb.sum() / ((n - 1) * (n - 2)))

    return hsic(X, Y) / np.sqrt(hsic(X, X) * hsic(Y, Y))


def _song_debiased(X, Y):
    """Song et al. (2012) unbiased HSIC written out term by term on Gram matrices."""
    def hsic(K, L):
        n = K.shape[0]
        K, L = K.copy(), L.copy()
        np.fill_diagonal(K, 0)
        np.fill_diagonal(L, 0)
        one = np.ones(n)
        return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))
    X, Y = X - X.mean(0), Y - Y.mean(0)  # the U-statistic is location invariant; centring first keeps it precise
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def _biased_feature_space(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))


@pytest.mark.parametrize("a,b", PAIRS)
def test_cka_gram_and_feature_space_forms_agree(a, b):
    X, Y = CASES[a], CASES[b]
    assert linear_cka(X, Y) == pytest.approx(_biased_feature_space(X, Y), rel=1e-9, abs=1e-12)
    assert cka_from_grams(X @ X.T, Y @ Y.T) == pytest.approx(linear_cka(X, Y), rel=1e-6, abs=1e-9)  # uncentred Grams


@pytest.mark.parametrize("a,b", PAIRS)
def test_three_debiased_forms_agree(a, b):
    X, Y = CASES[a], CASES[b]
    ours = linear_cka(X, Y, debiased=True)
    assert ours == pytest.approx(_feature_space_debiased(X, Y), rel=1e-8, abs=1e-10)
    assert ours == pytest.approx(_song_debiased(X, Y), rel=1e-8, abs=1e-10)


def test_debiased_near_zero_where_biased_is_inflated():
    rng = np.random.default_rng(3)
    biased, debiased = [], []
    for _ in range(8):
        X, Y = rng.standard_normal((50, 100)), rng.standard_normal((50, 100))
        biased.append(linear_cka(X, Y))
        debiased.append(linear_cka(X, Y, debiased=True))
    assert 0.55 < np.mean(biased) < 0.8          # anchors: ~0.67 at n=50, p=100
    assert abs(np.mean(debiased)) < 0.03


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariances(debiased):
    rng = np.random.default_rng(4)
    X, Y = CASES["offset"], CASES["relu"][:, :50] @ rng.standard_normal((50, 50))
    base = linear_cka(X, Y, debiased=debiased)
    Q, _ = np.linalg.qr(rng.standard_normal((X.shape[1], X.shape[1])))
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, rel=1e-8)      # orthogonal transform
    assert linear_cka(0.01 * X - 5, Y, debiased=debiased) == pytest.approx(base, rel=1e-8)  # isotropic scale, shift
    A = np.diag(np.geomspace(0.01, 100, X.shape[1]))                                       # general invertible map
    assert abs(linear_cka(X @ A, Y, debiased=debiased) - base) > 1e-2


def test_cka_matrix_all_pairs_mixed_cases():
    mats = list(CASES.values())
    grams = [centred_gram(M) for M in mats]
    for debiased in (False, True):
        M = cka_matrix(grams, grams, debiased=debiased)
        for i, A in enumerate(mats):
            for j, B in enumerate(mats):
                assert M[i, j] == pytest.approx(linear_cka(A, B, debiased=debiased), rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------------------- RSA
@pytest.mark.parametrize("method", ["correlation", "euclidean", "cosine"])
@pytest.mark.parametrize("case", list(CASES))
def test_rdm_equals_scipy_pdist(method, case):
    np.testing.assert_allclose(rdm(CASES[case], method), pdist(CASES[case], method), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("a,b", PAIRS)
def test_rsa_equals_scipy_pearson_and_spearman(a, b):
    X, Y = CASES[a], CASES[b]
    dx, dy = pdist(X, "correlation"), pdist(Y, "correlation")
    assert rsa(X, Y) == pytest.approx(pearsonr(dx, dy)[0], abs=1e-10)
    assert rsa(X, Y, compare="spearman") == pytest.approx(spearmanr(dx, dy)[0], abs=1e-10)
    for method in ("euclidean", "cosine"):
        assert rsa(X, Y, rdm=method) == pytest.approx(pearsonr(pdist(X, method), pdist(Y, method))[0], abs=1e-9)


@pytest.mark.parametrize("a,b", PAIRS[:3])
def test_rsa_equals_rsatoolbox(a, b):
    import rsatoolbox  # a test dependency: a missing install must fail, not skip
    X, Y = CASES[a], CASES[b]
    rx = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X), method="correlation")
    ry = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(Y), method="correlation")
    np.testing.assert_allclose(rx.get_vectors()[0], rdm(X), atol=1e-10)
    assert rsatoolbox.rdm.compare(rx, ry, method="corr")[0, 0] == pytest.approx(rsa(X, Y), abs=1e-10)
    assert rsatoolbox.rdm.compare(rx, ry, method="spearman")[0, 0] == pytest.approx(rsa(X, Y, compare="spearman"), abs=1e-10)
    # rsatoolbox's "euclidean" RDM is squared and divided by the channel count (anchors): same ranks, so Spearman agrees
    ex = rsatoolbox.rdm.calc_rdm(rsatoolbox.data.Dataset(X), method="euclidean")
    np.testing.assert_allclose(ex.get_vectors()[0], rdm(X, "euclidean") ** 2 / X.shape[1], rtol=1e-9)


def test_rsa_matrix_and_errors():
    mats = list(CASES.values())
    rdms = [rdm(M) for M in mats]
    for compare in ("pearson", "spearman"):
        M = rsa_matrix(rdms, rdms, compare=compare)
        for i, A in enumerate(mats):
            for j, B in enumerate(mats):
                assert M[i, j] == pytest.approx(rsa(A, B, compare=compare), abs=1e-12)
    assert np.isnan(compare_rdms(np.ones(10), np.arange(10.0)))  # a constant RDM has no correlation
    with pytest.raises(IdsimError, match="rdm='mahalanobis'; valid: correlation, euclidean, cosine"):
        rsa(mats[0], mats[1], rdm="mahalanobis")
    with pytest.raises(IdsimError, match="compare='kendall'; valid: pearson, spearman"):
        rsa(mats[0], mats[1], compare="kendall")
    with pytest.raises(IdsimError, match="same stimuli"):
        rsa(mats[0], mats[1][:-1])


# ------------------------------------------------------------------------------------ regression
@pytest.mark.parametrize("case", ["offset", "rank3", "duplicated"])
def test_loo_with_alpha_grid_equals_sklearn_ridgecv(case):
    rng = np.random.default_rng(5)
    X = CASES[case]
    Y = X[:, :4] @ rng.standard_normal((4, 6)) + rng.standard_normal((X.shape[0], 6)) + 20.0
    alphas = [1e-3, 1e-1, 1.0, 10.0, 1e3]
    res = fit_predict_cv(X, Y, cv="loo", alphas=alphas)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True, scoring="r2").fit(X, Y)
    np.testing.assert_array_equal(res.alpha, ref.alpha_)
    # stored leave-one-out predictions of each unit at its chosen alpha
    pred = np.take_along_axis(ref.cv_results_, np.searchsorted(alphas, ref.alpha_)[None, :, None], 2)[:, :, 0]
    np.testing.assert_allclose(res.r, pearson_columns(pred, Y), atol=1e-8)


@pytest.mark.parametrize("case", ["offset", "duplicated"])
def test_gcv_is_golub_heath_wahba(case):
    """GCV(alpha) = n ||(I - H) y||^2 / tr(I - H)^2 with the intercept in H, from an explicit hat matrix."""
    rng = np.random.default_rng(6)
    X = CASES[case]
    n = X.shape[0]
    y = X[:, :3] @ rng.standard_normal(3) + rng.standard_normal(n)
    alphas = [1e-2, 1.0, 1e2, 1e4]
    Xc = X - X.mean(0)
    gcv = []
    for a in alphas:
        H = Xc @ np.linalg.solve(Xc.T @ Xc + a * np.eye(X.shape[1]), Xc.T) + 1.0 / n
        r = y - H @ y
        gcv.append(n * (r @ r) / np.trace(np.eye(n) - H) ** 2)
    res = fit_predict_cv(X, y[:, None], cv="gcv", alphas=alphas)
    assert res.alpha[0] == alphas[int(np.argmin(gcv))]
    loo_pick = fit_predict_cv(X, y[:, None], cv="loo", alphas=[res.alpha[0]])  # predictions: LOO at the GCV alpha
    assert res.r[0] == pytest.approx(loo_pick.r[0], abs=1e-12)


@pytest.mark.parametrize("alpha", [1e-8, 1e-4])
def test_tiny_alpha_stable_on_rank_deficient_features(alpha):
    X = CASES["duplicated"]  # p=20 < n=30 but rank 5: the primal matrix is singular without alpha
    rng = np.random.default_rng(8)
    Y = X[:, :2] @ rng.standard_normal((2, 3)) + 0.1 * rng.standard_normal((X.shape[0], 3))
    res = fit_predict_cv(X, Y, cv="loo", alphas=[alpha])
    pred = np.array([Ridge(alpha=alpha, solver="svd").fit(np.delete(X, i, 0), np.delete(Y, i, 0)).predict(X[i:i + 1])[0]
                     for i in range(len(X))])
    np.testing.assert_allclose(res.r, pearson_columns(pred, Y), atol=1e-6)
    assert np.all(res.r > 0.9)


def test_sklearn_splitter_with_labels_equals_ridge_on_same_splits():
    X, rng = CASES["relu"], np.random.default_rng(9)
    Y = X[:, :10] @ rng.standard_normal((10, 4)) + rng.standard_normal((X.shape[0], 4))
    labels = np.repeat([0, 1, 2], 10)
    splitter = StratifiedKFold(5, shuffle=True, random_state=0)
    res = neural_regression(X, Y, cv=splitter, alphas=[3.0], standardize=False, labels=labels)
    rs = [pearson_columns(Ridge(alpha=3.0).fit(X[tr], Y[tr]).predict(X[te]), Y[te])
          for tr, te in splitter.split(X, labels)]
    np.testing.assert_allclose(res.r, np.mean(rs, 0), atol=1e-9)


def test_srp_skips_layers_narrower_than_the_projection():
    X, rng = CASES["relu"], np.random.default_rng(10)
    Y = X[:, :10] @ rng.standard_normal((10, 3)) + rng.standard_normal((X.shape[0], 3))
    a = neural_regression(X, Y, cv=5, alphas=[1.0], srp_dim="auto")  # 200 columns < JL bound for 30 stimuli
    b = neural_regression(X, Y, cv=5, alphas=[1.0], srp_dim=None)
    np.testing.assert_array_equal(a.r, b.r)
    d = neural_regression(X, Y, cv=5, alphas=[1.0], srp_dim=50, seed=1)
    assert d.r.shape == (3,) and not np.allclose(d.r, b.r)


@pytest.mark.parametrize("case", ["relu", "offset"])
def test_standardize_uses_training_fold_statistics_like_a_sklearn_pipeline(case):
    """Held-out means held-out: idsim equals make_pipeline(StandardScaler(), Ridge) fitted per fold, on the same
    splits, and differs from scaling with all images (which lets held-out images shape the features)."""
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, rng = CASES[case], np.random.default_rng(10)
    X = X * rng.uniform(0.1, 10, size=X.shape[1])  # columns on very different scales
    Y = X[:, :10] @ rng.standard_normal((10, 3)) + rng.standard_normal((X.shape[0], 3)) * X[:, :10].std()
    folds = KFold(5, shuffle=True, random_state=0)
    ours = neural_regression(X, Y, cv=5, alphas=[1.0], seed=0)  # cv=5: KFold(5, shuffle=True, random_state=seed)
    per_fold = [pearson_columns(make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X[tr], Y[tr]).predict(X[te]), Y[te])
                for tr, te in folds.split(X)]
    np.testing.assert_allclose(ours.r, np.mean(per_fold, 0), atol=1e-8)
    leaky = neural_regression(StandardScaler().fit_transform(X), Y, cv=5, alphas=[1.0], standardize=False)
    assert np.abs(leaky.r - ours.r).max() > 1e-6
    # leave-one-out's closed form needs one design: features are standardised with all images there
    loo = neural_regression(X, Y, cv="loo", alphas=[1.0])
    np.testing.assert_allclose(loo.r, neural_regression(StandardScaler().fit_transform(X), Y, cv="loo", alphas=[1.0],
                                                        standardize=False).r, atol=1e-10)


def test_float32_engine_accuracy():
    rng = np.random.default_rng(11)
    X = np.maximum(rng.standard_normal((80, 400)), 0) + 3.0
    Y = X[:, :20] @ rng.standard_normal((20, 50)) + rng.standard_normal((80, 50))
    for cv in ("loo", 5):
        r64 = neural_regression(X, Y, cv=cv, alphas=[1.0, 100.0])
        r32 = neural_regression(X, Y, cv=cv, alphas=[1.0, 100.0], precision="float32")
        assert np.max(np.abs(r64.r - r32.r)) < 1e-4
    with pytest.raises(IdsimError, match="precision='float16'; valid: float64, float32"):
        neural_regression(X, Y, precision="float16")


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA device here")
def test_cuda_engine_matches_cpu():
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((60, 300)), rng.standard_normal((60, 40))
    cpu = fit_predict_cv(X, Y, cv="loo", alphas=[0.1, 10.0])
    for precision, tol in (("float64", 1e-9), ("float32", 1e-4)):
        gpu = fit_predict_cv(X, Y, cv="loo", alphas=[0.1, 10.0], device="cuda", precision=precision)
        np.testing.assert_allclose(gpu.r, cpu.r, atol=tol)
