"""Which device a run computes on: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.

:func:`resolve_device` gives the torch device (and refuses a CUDA device that is not there);
:func:`device_type` gives only its type, without importing torch on a machine that has no GPU
driver, so a job whose features and scores are all cached never imports torch.
"""
from __future__ import annotations

import os
import sys

from .errors import IdsimError

#: device files of GPU drivers torch can use (NVIDIA, AMD ROCm, WSL); without any, torch finds no CUDA device
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def resolve_device(device: str = "auto"):
    """``auto`` picks CUDA when present; otherwise ``cpu``, ``cuda``, ``cuda:1``... (a ``torch.device``)."""
    import torch

    device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise IdsimError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise IdsimError(f"extraction.device={device} asked for but CUDA is not available here; use extraction.device=auto"
                         f" or extraction.device=cpu")
    return dev


def device_type(device: str = "auto") -> str:
    """``resolve_device(device).type``, checked the same way, without importing torch where no GPU can be used."""
    device = str(device)
    if device == "cpu" or (device == "auto" and sys.platform == "linux"
                           and not any(os.path.exists(p) for p in GPU_DEVICE_FILES)):
        return "cpu"
    return resolve_device(device).type
