"""The same commands give the same scores: a fixed small job per metric against scores.csv files
written by idsim 0.1.0 (tests/data/golden_scores, before the configuration and metric refactor).

The models' float32 forward passes differ between CPU families (oneDNN and MKL choose different
kernels, and so sum in different orders): 1e-7 on CKA, up to 4e-5 on ridge scores. So each family
has its own set of the previous version's scores, and a job must equal one set to 1e-10: the
original set (recorded on the machine of idsim 0.1.0) and ``amd-epyc-avx512/`` (written by the
code of 7f448d3, which equalled the original set to 1e-10 there, on an AMD EPYC with AVX-512).
Sets are 1e-7 to 4e-5 apart, so a change of idsim's own arithmetic beyond 1e-10 matches none.

The jobs avoid what later changes were meant to change: layers stay exact (no projections), the
k-fold regression does not standardise its features (held-out standardisation now uses training
folds only), and images go through each model's own transform (``preprocess=model``).
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from idsim.experiment import run_experiment

GOLDEN = Path(__file__).parent / "data" / "golden_scores"
JOBS = {
    "cka": ["metric=cka"],
    "cka_debiased": ["metric=cka_debiased"],
    "rsa": ["metric=rsa"],
    "rsa_euclidean_spearman": ["metric=rsa", "metric.rdm=euclidean", "metric.compare=spearman"],
    "rsa_cosine": ["metric=rsa", "metric.rdm=cosine"],
    "regression": ["metric=regression", "metric.cv=3", "metric.alphas=[0.1,10.0,1000.0]", "metric.standardize=false",
                   "metric.srp_dim=70000", "metric.max_units=200"],
    "regression_loo": ["metric=regression_loo", "metric.srp_dim=70000", "metric.max_units=200"],
}
COMMON = ["target=alexnet", "sources=[alexnet,resnet18]", "target.layers=[features.4,features.11,classifier.5]",
          "sources.alexnet.layers=[features.7,features.9,classifier.2]", "sources.resnet18.layers=[layer3.1,layer4.1,avgpool]",
          "dataset.n_images=12", "unit_ratio=0.5", "extraction.batch_size=6", "extraction.progress=false", "logger=none",
          "plots=false", "preprocess=model"]
KEY = ["source", "source_layer", "target_layer"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("golden-cache")


@pytest.mark.parametrize("name", list(JOBS))
def test_scores_equal_those_of_the_previous_version(compose_cfg, tmp_path, cache_dir, name):
    cfg = compose_cfg([*COMMON, *JOBS[name], f"cache.dir={cache_dir}"])
    new = run_experiment(cfg, tmp_path).scores
    sets = sorted(GOLDEN.glob(f"**/{name}.csv"))
    assert len(sets) >= 2
    merged = min((pd.read_csv(path).merge(new, on=KEY, suffixes=("_old", "_new"), validate="one_to_one") for path in sets),
                 key=lambda m: float((m["score_new"] - m["score_old"]).abs().max()))
    assert len(new) == len(merged) == 2 * 3 * 3
    # 1e-10: the bound issue 14 keeps for exact layers (leave-one-out with one alpha now applies one residual map
    # to the responses instead of two products through their eigen-coordinates: 5e-12 apart on these scores)
    np.testing.assert_allclose(merged["score_new"], merged["score_old"], rtol=0, atol=1e-10)
    if "median_alpha_old" in merged:
        np.testing.assert_allclose(merged["median_alpha_new"], merged["median_alpha_old"], rtol=1e-12)
    for col in ("metric", "same_architecture", "dataset", "n_images", "unit_ratio", "source_layer_index",
                "target_layer_index"):
        assert (merged[f"{col}_new"].astype(str) == merged[f"{col}_old"].astype(str)).all(), col
