"""Device choice, mixed precision and seeding: the torch settings of a fit.

* ``device="auto"`` picks CUDA when present, else the CPU;
* mixed precision: bf16 autocast on CUDA where supported, else fp16 (with a
  gradient scaler in the trainer), none on the CPU;
* seeding inside ``torch.random.fork_rng`` so the caller's RNG is untouched.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast", "autocast_dtype", "forked_rng", "resolve_device"]


def resolve_device(device: str, *, for_fit: bool = True) -> torch.device:
    """Turn the ``device`` parameter into a ``torch.device``.

    ``"auto"`` means CUDA when it is available, else the CPU. At prediction
    time (``for_fit=False``) a CUDA device that this machine lacks falls back
    to the CPU, so that a model fitted on a GPU predicts anywhere.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device torch knows: {exc}"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        if for_fit:
            raise ValueError(
                f"device={device!r} was requested, but CUDA is not available on this "
                "machine; use device='auto' or 'cpu'."
            )
        return torch.device("cpu")
    if resolved.type == "mps" and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    ):
        if for_fit:
            raise ValueError(
                f"device={device!r} was requested, but MPS is not available."
            )
        return torch.device("cpu")
    return resolved


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision type on ``device``: bf16 or fp16 on CUDA, none elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``device``, or a null context when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def forked_rng(seed: int, device: torch.device):
    """Seed torch inside ``fork_rng``; the caller's global RNG state is restored."""
    devices = []
    if device.type == "cuda":
        devices = [
            device.index if device.index is not None else torch.cuda.current_device()
        ]
    with torch.random.fork_rng(
        devices=devices, device_type=device.type if devices else "cuda"
    ):
        torch.manual_seed(seed)
        yield
