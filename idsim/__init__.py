"""idsim: system identification of neural systems with a known ground truth.

The steps of a run, usable from Python::

    import idsim
    target = idsim.build_model("resnet18", weights="random", seed=0)
    source = idsim.build_model("resnet18", weights="random", seed=1)
    probe = idsim.load_probe_set({"name": "shapes", "n_images": 64})
    metric = idsim.load_metric("cka")                # a preset of conf/metric, or {"kind": "cka", ...}
    t = idsim.extract(target, probe, metric.plan("target"))
    s = idsim.extract(source, probe, metric.plan("source"))
    scores = idsim.score_layers(s, t, metric)      # tidy layer x layer table
"""
import importlib

# Public names are imported on first use (PEP 562): importing idsim stays cheap, and
# `python -m idsim.models` does not find its own module already imported.
_EXPORTS = {
    "build_model": "models", "Model": "models", "load_probe_set": "datasets", "ProbeSet": "datasets",
    "extract": "features", "Plan": "featureset", "FeatureSet": "featureset", "LayerData": "featureset",
    "load_metric": "config", "compose": "config", "Metric": "metrics.base", "score_layers": "scoring",
    "IdsimError": "errors", "run_experiment": "experiment",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'idsim' has no attribute {name!r}")


__version__ = "0.2.0"

__all__ = [*_EXPORTS, "__version__"]
