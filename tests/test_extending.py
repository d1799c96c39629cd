"""A new metric and a new probe set are each one module plus one YAML (ARCHITECTURE.md), nothing else.

The modules are written to a temporary folder added to the package's search path, the YAMLs to a
copy of conf/; then a run uses them from the command line's composition path and from Python.
"""
import shutil
import textwrap

import numpy as np
import pytest

METRIC = '''
from dataclasses import dataclass

import numpy as np

from idsim.featureset import Plan
from idsim.metrics.base import LayerScores, Metric
from idsim.schema import MetricOptions, opt


@dataclass
class Options(MetricOptions):
    name: str = "gramcorr"
    kind: str = "gramcorr"
    power: float = opt(1.0, "a positive number", lambda v: v > 0)


class GramCorr(Metric):
    """Pearson correlation of the off-diagonal Gram entries, raised to a power: a toy metric."""

    kind = "gramcorr"
    Options = Options

    def plan(self, role, unit_ratio=1.0, seed=0):
        return Plan(grams=("column",), unit_ratio=unit_ratio if role == "target" else 1.0, seed=seed)

    def score(self, source, target, seed=0, device=None, resamples=None):
        iu = np.triu_indices(source.n_images, 1)
        S = [source[n].gram[iu] for n in source.layer_names]
        T = [target[n].gram[iu] for n in target.layer_names]
        m = np.array([[np.corrcoef(s, t)[0, 1] ** self.options.power for t in T] for s in S])
        return LayerScores(m)
'''

PROBE_SET = '''
from dataclasses import dataclass

import numpy as np
from PIL import Image

from idsim.datasets import cap
from idsim.datasets.base import ProbeSet
from idsim.schema import ProbeSetOptions, int_at_least, opt


class Stripes(ProbeSet):
    name = "stripes"

    def __init__(self, *, n_images, period):
        self.n, self.period = n_images, period

    def __len__(self):
        return self.n

    def image(self, i):
        x = (np.arange(64)[None, :] + 3 * self._index(i)) % self.period < self.period / 2
        return Image.fromarray(np.repeat((x * 255).astype(np.uint8)[:, :, None], 3, 2).repeat(64, 0))

    def identity(self):
        return {"name": self.name, "n_images": self.n, "period": self.period}


@dataclass
class StripesOptions(ProbeSetOptions):
    name: str = "stripes"
    n_images: int = opt(10, "an integer >= 1", int_at_least(1))
    period: int = opt(8, "an integer >= 2 (pixels)", int_at_least(2))

    def build(self):
        return Stripes(n_images=self.n_images, period=self.period)
'''


@pytest.fixture
def extended(tmp_path, monkeypatch):
    import idsim.config
    import idsim.datasets
    import idsim.metrics
    from idsim import schema

    metrics_dir, datasets_dir = tmp_path / "metrics", tmp_path / "datasets"
    metrics_dir.mkdir(), datasets_dir.mkdir()
    (metrics_dir / "gramcorr.py").write_text(textwrap.dedent(METRIC))
    (datasets_dir / "stripes.py").write_text(textwrap.dedent(PROBE_SET))
    monkeypatch.setattr(idsim.metrics, "__path__", [*idsim.metrics.__path__, str(metrics_dir)])
    monkeypatch.setattr(idsim.datasets, "__path__", [*idsim.datasets.__path__, str(datasets_dir)])
    conf = tmp_path / "conf"
    shutil.copytree(idsim.config.CONF_DIR, conf)
    (conf / "metric" / "gramcorr.yaml").write_text("defaults:\n  - base_gramcorr\n  - _self_\n")
    (conf / "dataset" / "stripes.yaml").write_text("defaults:\n  - base_stripes\n  - _self_\n")
    monkeypatch.setattr(idsim.config, "CONF_DIR", conf)
    for cached in (idsim.metrics.families, idsim.datasets.registry):
        cached.cache_clear()
    monkeypatch.setattr(schema, "_registered", False)
    yield conf
    for cached in (idsim.metrics.families, idsim.datasets.registry):
        cached.cache_clear()
    schema._registered = False


def test_a_new_metric_and_probe_set_run_from_the_command_line_path(extended, tmp_path):
    from idsim.config import check_overrides, compose
    from idsim.experiment import run_experiment

    overrides = ["target=alexnet", "sources=[alexnet]", "metric=gramcorr", "metric.power=3", "dataset=stripes",
                 "dataset.n_images=6", "target.layers=[features.4]", "sources.alexnet.layers=[features.4]",
                 "logger=none", "plots=false", "extraction.progress=false", "stats.bootstrap=0"]
    with pytest.raises(Exception, match="metric.power=-1"):
        check_overrides([*overrides, "metric.power=-1"], conf_dir=extended)
    cfg = compose(overrides)
    res = run_experiment(cfg, tmp_path / "run")
    assert res.scores["metric"].tolist() == ["gramcorr"] and res.scores["dataset"].tolist() == ["stripes"]
    assert np.isfinite(res.scores["score"]).all() and res.scores["n_images"].tolist() == [6]
