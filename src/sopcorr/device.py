"""The one place a configured device name (``backbone.device``, ``flow.device``,
``siamese.device``: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:<index>``) becomes a ``torch.device``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the caller's first device resolution, not here
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``'auto'`` (or None) -> cuda when a GPU is visible, else cpu; ``'cpu'`` -> cpu;
    ``'cuda'`` / ``'cuda:<i>'`` -> that GPU. A ``torch.device`` is returned unchanged.

    Raises ConfigError with one line when a GPU is asked for and none is visible (or the index
    is out of range), or when the name is not a device at all."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"config error: device '{name}' is not a device (use auto, cpu or cuda)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"config error: device '{name}' requested but CUDA is not available "
                              "(use device: auto or cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"config error: device '{name}': only {torch.cuda.device_count()} "
                              "CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ConfigError(f"config error: device '{name}' is not supported (use auto, cpu or cuda)")
    return dev
