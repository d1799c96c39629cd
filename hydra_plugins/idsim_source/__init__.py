"""idsim's Hydra config source (``idsim://`` in ``hydra.searchpath``): one config per model name, on demand.

``target=vgg11`` and ``sources=[alexnet,deit_small_patch16_224]`` accept any of the ~1,450
torchvision and timm model names (and the other system kinds of :mod:`idsim.systems`).
Registering each of them with Hydra's ConfigStore would cost seconds at every start; this source
answers Hydra's questions about ``target/<name>`` and ``sources/<name>`` from idsim's cheap name
list instead, and builds a name's structured config only when Hydra loads it.

``list()`` names no models (Hydra would print all of them in ``--help`` and errors); list them
with ``python -m idsim.models list``.
"""
from __future__ import annotations

from typing import List, Optional

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import OmegaConf

GROUPS = {"target": "target", "sources": "source"}  # config group -> role


class IdsimConfigSource(ConfigSource):
    @staticmethod
    def scheme() -> str:
        return "idsim"

    def _split(self, config_path: str) -> tuple[str, str] | None:
        path = config_path.strip("/")
        if path.endswith(".yaml"):
            path = path[: -len(".yaml")]
        group, _, name = path.partition("/")
        if group not in GROUPS or not name or "/" in name:
            return None
        return group, name

    def _class(self, config_path: str):
        split = self._split(config_path)
        if split is None:
            return None, None, None
        from idsim.systems import config_class

        group, name = split
        return group, name, config_class(name, GROUPS[group])

    def load_config(self, config_path: str) -> ConfigResult:
        group, name, cls = self._class(config_path)
        if cls is None:
            raise ConfigLoadError(f"idsim: no config {config_path}")
        node = OmegaConf.structured(cls(name=name))
        if group == "sources":
            node = OmegaConf.create({name: node})
        return ConfigResult(config=node, path=f"{self.scheme()}://{self.path}", provider=self.provider,
                            header={"package": None})

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in GROUPS

    def is_config(self, config_path: str) -> bool:
        return self._class(config_path)[2] is not None

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        return []
