"""Similarity metrics between representations (rows: stimuli, columns: units)."""
from .cka import centred_gram, cka_from_grams, cka_matrix, linear_cka, u_centre
from .identifiability import best_per_source, identifiability, identifiability_index, verdict
from .rsa import compare_rdms, rdm, rsa, rsa_matrix
from .regression import DEFAULT_ALPHAS, RegressionResult, fit_predict_cv, neural_regression, pearson_columns

__all__ = [
    "linear_cka", "cka_from_grams", "cka_matrix", "centred_gram", "u_centre",
    "rsa", "rdm", "compare_rdms", "rsa_matrix",
    "neural_regression", "fit_predict_cv", "RegressionResult", "pearson_columns", "DEFAULT_ALPHAS",
    "identifiability_index", "identifiability", "best_per_source", "verdict",
]
