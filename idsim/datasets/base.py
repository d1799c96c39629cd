"""The probe-set interface shared by every image source.

A probe set is an indexable, deterministic collection of RGB images. Image ``i`` must depend
only on the set's parameters and ``i`` (never on how many images were asked for), so that
``n_images`` caps a set without changing the images it keeps.
"""
from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from typing import Any

from PIL import Image


class ProbeSet(ABC):
    """Base class for probe image sets."""

    #: short name used in configs and output files
    name: str = "probe"

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def image(self, i: int) -> Image.Image:
        """Return image ``i`` as an RGB PIL image."""

    def stimulus_id(self, i: int) -> str:
        """A stable identifier of image ``i`` (used in tidy outputs)."""
        return f"{self.name}-{i:05d}"

    def label(self, i: int) -> str | None:
        """Category label of image ``i`` where the set has one (for stratified splits)."""
        return None

    @property
    def unreadable(self) -> list[str]:
        """Image files skipped because they could not be decoded (``dataset.skip_unreadable``); none by default."""
        return []

    @property
    def labels(self) -> list[str] | None:
        labs = [self.label(i) for i in range(len(self))]
        return None if all(lab is None for lab in labs) else labs  # type: ignore[return-value]

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Everything that determines the pixels (generator parameters, file list digest...).

        Used to key caches: two sets with equal identity must produce identical images.
        """

    def _index(self, i: int) -> int:
        """``i`` as a valid image index (a clear TypeError/IndexError otherwise)."""
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"image index must be an integer, got {type(i).__name__}") from None
        if not 0 <= i < len(self):
            raise IndexError(f"image index {i} out of range for {len(self)} images")
        return i

    def __getitem__(self, i: int) -> Image.Image:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.image(i)

    def __iter__(self):
        for i in range(len(self)):
            yield self.image(i)
