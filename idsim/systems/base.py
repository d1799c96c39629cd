"""The interface of whatever yields responses on the probe images: the target and every source.

A :class:`System` is built from its config by :func:`idsim.systems.build` (one factory for every
kind: a network today; a recording or a non-neural baseline are other kinds). The run loop only
calls what is declared here, so it never knows which kind it holds: a recording brings its own
stimuli (:meth:`System.stimuli`) and noise ceilings (:meth:`System.ceilings`), a network neither.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..featureset import FeatureSet, Plan
from ..schema import ExtractionConfig, SystemConfig

TARGET, SOURCE = "target", "source"


class System(ABC):
    """A target or source: named layers whose responses to the probe images can be extracted."""

    def __init__(self, config: SystemConfig, label: str, role: str):
        self.config, self.label, self.role = config, label, role

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def architecture(self) -> str:
        """What makes two systems "the same architecture" (a source that matches the target)."""
        return f"{self.config.kind}:{self.name}"

    def describe(self) -> str:
        """A short description for logs, e.g. ``vgg11 [torchvision, random(seed=1)]``."""
        return self.label

    def prepare(self) -> None:
        """Every check that needs no forward pass (names, layers, weights); runs before any extraction."""

    @abstractmethod
    def layers(self) -> list[str]:
        """The layers (or regions) whose responses are compared, in order."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that determines the responses, for the feature cache's key (JSON-serialisable)."""

    @abstractmethod
    def extract(self, probe, plan: Plan, settings: ExtractionConfig) -> FeatureSet:
        """Responses on ``probe`` reduced as ``plan`` says."""

    def stimuli(self):
        """The probe images this system brings (a recording's stimuli), or None: the run's ``dataset``."""
        return None

    def ceilings(self, metric, plan: Plan, features: FeatureSet, probe, settings: ExtractionConfig):
        """Per-layer noise ceilings for ``metric``, or None (networks: no noise).

        A DataFrame with one row per layer of ``features``: ``target_layer``, ``ceiling`` and what
        documents it (neuroid counts, reliabilities, the convention); written to ``ceilings.csv``,
        and ``ceiling`` and ``normalized_score`` join ``scores.csv``.
        """
        return None

    def columns(self) -> dict[str, Any]:
        """Columns this system adds to ``scores.csv`` rows (as a source), e.g. its weights and seed."""
        return {}
