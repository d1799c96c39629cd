"""The probe sets' options: one dataclass per set (its defaults and checks), found by
``idsim.datasets.registry()``, and one YAML per set in ``conf/dataset`` that only extends it."""
from __future__ import annotations

import dataclasses
import inspect
import pathlib
import subprocess
import sys

import pytest
import yaml
from omegaconf import MISSING

import idsim.datasets as datasets
from idsim import schema
from idsim.datasets import load_probe_set, registry
from idsim.datasets.shapes import ShapesOptions, ShapesProbeSet
from idsim.errors import IdsimError

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "dataset"
NAMES = sorted(registry())

#: run-level keys a dataset YAML may interpolate (the only values it may set)
INTERPOLATED = {"seed": "${seed}", "cache_dir": "${cache.dir}"}


def test_registry_finds_every_probe_set_module():
    assert NAMES == ["allen_scenes", "folder", "freeman_ziemba", "hvm", "imagenet", "natural", "shapes",
                     "synthetic_objects", "texture_noise"]
    for name, cls in registry().items():
        assert issubclass(cls, schema.ProbeSetOptions) and dataclasses.is_dataclass(cls)
        assert cls().name == name
        module = cls.__module__.split(".")
        assert module[:2] == ["idsim", "datasets"] and module[-1] not in ("base", "__main__")
    assert registry() is registry()  # discovered once


def test_every_options_class_has_a_yaml_and_every_yaml_a_class():
    """Each probe set has its YAML of the same name; other YAMLs are presets of a registered set."""
    stems = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert set(NAMES) <= set(stems)
    for stem in set(stems) - set(NAMES):
        defaults = yaml.safe_load((CONF / f"{stem}.yaml").read_text())["defaults"]
        assert defaults[0].startswith("base_") and defaults[0][len("base_"):] in NAMES, stem


@pytest.mark.parametrize("name", NAMES)
def test_yaml_extends_its_schema_and_restates_no_default(name):
    data = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert data.pop("defaults") == [f"base_{name}", "_self_"]
    fields = {f.name for f in dataclasses.fields(registry()[name])}
    for key, value in data.items():  # only interpolations of run-level keys
        assert key in fields, f"{name}.yaml sets {key!r}, which is no option of {registry()[name].__name__}"
        assert isinstance(value, str) and value.startswith("${"), f"{name}.yaml restates the default of {key!r}"


@pytest.mark.parametrize("name", NAMES)
def test_every_option_has_a_valid_concrete_default(name):
    cls = registry()[name]
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert default is not dataclasses.MISSING and default != MISSING, (name, f.name)
        assert not (isinstance(default, str) and "${" in default), (name, f.name)  # interpolations live in YAML
        if f.metadata.get("check") is not None:
            assert f.metadata.get("valid"), f"{name}.{f.name} has a check but no words saying what is valid"
    cls().validate("dataset")


def test_generated_sets_follow_the_run_seed_and_cache(compose_cfg, tmp_path):
    """What the YAML files interpolate, and that the rest of a composed node is the dataclass defaults."""
    for name in NAMES:
        cfg = compose_cfg([f"dataset={name}", "seed=3", f"cache.dir={tmp_path}"])
        opts = datasets.options(cfg.dataset)
        assert type(opts) is registry()[name]
        expected = {}
        if "seed" in vars(opts):
            expected["seed"] = 3
        if name == "texture_noise":
            expected["cache_dir"] = str(tmp_path)
        if name == "allen_scenes":
            expected["cache_dir"] = f"{tmp_path}/allen_brain_observatory"
        assert opts == dataclasses.replace(registry()[name](), **expected), name
    assert {n for n in NAMES if "seed" in {f.name for f in dataclasses.fields(registry()[n])}} == {
        "natural", "shapes", "synthetic_objects", "texture_noise"}


def test_cache_dir_defaults_follow_the_environment(monkeypatch, tmp_path):
    from idsim.datasets.allen import AllenScenesOptions
    from idsim.datasets.texture_noise import TextureNoiseOptions

    monkeypatch.setenv("IDSIM_CACHE_DIR", str(tmp_path))
    assert TextureNoiseOptions().cache_dir == str(tmp_path)
    assert AllenScenesOptions().cache_dir == str(tmp_path / "allen_brain_observatory")


def test_probe_set_constructors_repeat_no_option_default():
    """Defaults of config keys are written once, in the options classes: the sets' constructors take them all."""
    from idsim.datasets.natural import NaturalProbeSet
    from idsim.datasets.synthetic_objects import SyntheticObjectsProbeSet
    from idsim.datasets.texture_noise import TextureNoiseProbeSet

    for cls, opts in ((ShapesProbeSet, "shapes"), (NaturalProbeSet, "natural"),
                      (SyntheticObjectsProbeSet, "synthetic_objects"), (TextureNoiseProbeSet, "texture_noise")):
        params = inspect.signature(cls.__init__).parameters
        fields = {f.name for f in dataclasses.fields(registry()[opts])}
        for p in list(params.values())[1:]:
            assert p.name in fields and p.default is inspect.Parameter.empty, (cls.__name__, p.name)


def test_options_objects_and_mappings_load_alike():
    a = load_probe_set(ShapesOptions(n_images=3, size=32, seed=2))
    b = load_probe_set({"name": "shapes", "n_images": 3, "size": 32, "seed": 2})
    assert isinstance(a, ShapesProbeSet) and a.identity() == b.identity()


@pytest.mark.parametrize("cfg, expected", [
    ({"name": "shapez"}, "unknown dataset 'shapez' (did you mean shapes?); valid: allen_scenes, folder,"),
    ({"name": "imagenet2"}, "unknown dataset 'imagenet2' (did you mean imagenet?); valid: allen_scenes,"),
    ({"n_images": 3}, "unknown dataset null; valid: allen_scenes,"),
    ({"name": "shapes", "sise": 64}, "unknown config key 'dataset.sise' (did you mean dataset.size?); valid keys of"
                                     " dataset: name, n_images, seed, size"),
    ({"name": "shapes", "seed": "${seed}"}, "dataset.seed=${seed} cannot be resolved"),  # a run key, without a run
    ("shapes", "dataset must be a config mapping"),
])
def test_unknown_names_and_keys_are_one_line_errors(cfg, expected):
    with pytest.raises(IdsimError) as e:
        load_probe_set(cfg)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_command_line_values_are_checked_by_the_same_fields():
    """The command-line pre-check (schema.check_value) judges dataset.<key>=value with these checks."""
    with pytest.raises(IdsimError, match=r"^dataset\.size=8; valid: an integer >= 32"):
        schema.check_value(ShapesOptions, "dataset.size", "size", 8)
    with pytest.raises(IdsimError, match=r"^unknown config key 'dataset.colour'"):
        schema.check_value(ShapesOptions, "dataset.colour", "colour", 1)
    schema.check_value(ShapesOptions, "dataset.size", "size", 64)


def test_registering_imports_no_heavy_library():
    """The command line imports every probe-set module at start-up: none may import torch and the like."""
    code = ("import sys, idsim.datasets\n"
            "idsim.datasets.registry()\n"
            "heavy = ('torch', 'torchvision', 'timm', 'scipy', 'skimage', 'plenoptic', 'pandas', 'h5py', 'hydra')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_new_module_with_an_options_class_is_a_new_probe_set(tmp_path, monkeypatch):
    """Adding a probe set is one module of the package (plus its YAML): the registry finds it."""
    (tmp_path / "probe_test.py").write_text(
        "from dataclasses import dataclass\n"
        "from idsim.schema import ProbeSetOptions\n"
        "from idsim.datasets.shapes import ShapesOptions\n"  # an imported class is not this module's set
        "@dataclass\n"
        "class ProbeTestOptions(ProbeSetOptions):\n"
        "    name: str = 'probe_test'\n"
        "    def build(self):\n"
        "        return ShapesOptions(n_images=2, size=32).build()\n")
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(tmp_path)])  # the package's folder, extended
    monkeypatch.delitem(sys.modules, "idsim.datasets.probe_test", raising=False)
    registry.cache_clear()
    try:
        found = registry()
        assert found["probe_test"].__name__ == "ProbeTestOptions" and found["shapes"] is ShapesOptions
        assert len(load_probe_set({"name": "probe_test"})) == 2
    finally:
        registry.cache_clear()
        sys.modules.pop("idsim.datasets.probe_test", None)
    monkeypatch.undo()
    assert "probe_test" not in registry()
