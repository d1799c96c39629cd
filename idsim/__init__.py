"""idsim: system identification of neural systems with a known ground truth.

The steps of a run, usable from Python::

    import idsim
    target = idsim.build_model("resnet18", weights="random", seed=0)
    source = idsim.build_model("resnet18", weights="random", seed=1)
    probe = idsim.load_probe_set({"name": "shapes", "n_images": 64})
    metric = idsim.Metric.from_config("cka")
    t = idsim.extract(target, probe, metric.plan("target"))
    s = idsim.extract(source, probe, metric.plan("source"))
    scores = idsim.score_layers(s, t, metric)      # tidy layer x layer table
"""
from .datasets import ProbeSet, load_probe_set
from .errors import IdsimError
from .features import FeatureSet, LayerData, Plan, extract
from .models import Model, build_model
from .scoring import Metric, score_layers

__version__ = "0.1.0"

__all__ = ["build_model", "Model", "load_probe_set", "ProbeSet", "extract", "Plan", "FeatureSet", "LayerData", "Metric",
           "score_layers", "IdsimError", "run_experiment", "__version__"]


def run_experiment(cfg, out_dir=None):
    """Run a whole experiment from a composed config (see :mod:`idsim.experiment`)."""
    from .experiment import run_experiment as _run

    return _run(cfg, out_dir)
