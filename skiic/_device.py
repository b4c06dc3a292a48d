"""Device choice, mixed precision and seeding: the torch settings of a fit.

* ``device="auto"`` picks CUDA when present, else the CPU;
* mixed precision: bf16 autocast on CUDA where supported, else fp16 (with a
  gradient scaler in the trainer), none on the CPU;
* seeding inside ``torch.random.fork_rng`` so the caller's RNG is untouched;
* the CPU threads of a fit, chosen for the machine as it is now and restored
  afterwards.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

__all__ = [
    "autocast",
    "autocast_dtype",
    "fast_layout",
    "forked_rng",
    "resolve_device",
    "resolve_threads",
    "torch_threads",
]


def resolve_device(device: str, *, for_fit: bool = True) -> torch.device:
    """Turn the ``device`` parameter into a ``torch.device``.

    ``"auto"`` means CUDA when it is available, else the CPU. At prediction
    time (``for_fit=False``) a CUDA device that this machine lacks falls back,
    so that a model fitted on a GPU predicts anywhere: to the CPU without
    CUDA, to the first GPU where the numbered one (``"cuda:1"``) is missing.
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
    if resolved.type == "cuda" and resolved.index is not None:
        count = torch.cuda.device_count()
        if resolved.index >= count:
            if for_fit:
                has = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
                raise ValueError(
                    f"device={device!r} was requested, but this machine's CUDA "
                    f"devices are {has}."
                )
            return torch.device("cuda", 0)
    if resolved.type == "mps" and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    ):
        if for_fit:
            raise ValueError(
                f"device={device!r} was requested, but MPS is not available."
            )
        return torch.device("cpu")
    if resolved.type not in ("cpu", "cuda", "mps"):
        problem = _unusable(resolved)
        if problem is not None:
            if for_fit:
                raise ValueError(
                    f"device={device!r} was requested, but it cannot be used "
                    f"here: {problem}"
                )
            return torch.device("cpu")
    return resolved


def _unusable(device: torch.device) -> str | None:
    """Why torch cannot compute on ``device`` (an xpu, say), or None if it can."""
    if device.type == "meta":
        return "meta tensors hold no values."
    try:
        torch.zeros(1, device=device)
    except Exception as exc:  # AssertionError, RuntimeError: torch's choice
        return str(exc) or type(exc).__name__
    return None


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


def fast_layout(module: torch.nn.Module, device) -> torch.nn.Module:
    """Put the convolution weights of skiic's own networks in ``module`` in
    the layout ``device`` runs fastest.

    On the CPU, channels-last (NHWC) convolutions, with their BatchNorm and
    pooling, ran 1.3 to 2.5 times faster than the default NCHW for the default
    networks (one thread; MNIST-sized training steps of the compact network
    0.06 s against 0.10 s). The weights are converted in place, values
    unchanged; the output of the first convolution follows them, so the
    input needs no conversion. Only :class:`~skiic.networks.ConvBackbone`
    and :class:`~skiic.networks.ConvDecoder` are converted, wherever they sit
    in ``module``: a user's own layers keep their layout, as code such as
    ``x.view(len(x), -1)`` needs the default one. Other devices keep their
    layout. Returns ``module``.
    """
    from .networks import ConvBackbone, ConvDecoder

    if torch.device(device).type == "cpu":
        for part in module.modules():
            if isinstance(part, (ConvBackbone, ConvDecoder)):
                part.to(memory_format=torch.channels_last)
    return module


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


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the block with the CPU threads ``n_threads`` resolves to (see
    :func:`resolve_threads`); torch's previous setting is restored on exit."""
    previous = torch.get_num_threads()
    wanted = resolve_threads(n_threads, previous)
    if wanted == previous:
        yield wanted
        return
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(previous)


def resolve_threads(n_threads, current: int) -> int:
    """The number of torch CPU threads for a fit.

    ``None`` keeps ``current`` (torch's setting). An int is used as given.
    ``"auto"`` takes the cores this process may use (``current``, which
    follows ``OMP_NUM_THREADS`` and so the limits joblib and Dask set for
    their workers, capped by the CPU affinity and cgroup quota that
    ``joblib.cpu_count`` reads), at most the machine's cores that other
    processes leave free right now, and at least one: torch's threads wait
    for each other at every operation, so a thread that shares its core with
    another busy process slows all of them down by far more than the core it
    adds.
    """
    if n_threads is None:
        return current
    if n_threads != "auto":
        return int(n_threads)
    from joblib import cpu_count

    available = min(current, cpu_count())
    # the kernel's count covers the whole machine (often the host, in a
    # container): only the cores beyond this process's share can absorb it
    free = (os.cpu_count() or available) - _busy_elsewhere()
    return max(1, min(available, free))


# The last load reading, (time.monotonic(), cores), reused for a second so
# that many short predict calls do not each pay for three readings.
_LAST_READING: list = [float("-inf"), 0]


def _busy_elsewhere() -> int:
    """Cores kept busy by other processes now (0 where Linux's /proc is absent).

    The kernel's count of runnable threads (the fourth field of
    ``/proc/loadavg``), less this process's own running threads; the median
    of three readings, a few milliseconds apart, reused for a second.
    """
    now = time.monotonic()
    if now - _LAST_READING[0] < 1.0:
        return _LAST_READING[1]
    readings = []
    for attempt in range(3):
        try:
            with open("/proc/loadavg") as file:
                runnable = int(file.read().split()[3].split("/")[0])
            own = _own_running_threads()
        except (OSError, ValueError, IndexError):
            return 0
        readings.append(max(0, runnable - own))
        if attempt < 2:
            time.sleep(0.005)
    _LAST_READING[:] = [time.monotonic(), sorted(readings)[1]]
    return _LAST_READING[1]


def _own_running_threads() -> int:
    """This process's threads in the running state, at least 1 (the caller)."""
    running = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat") as file:
                # the state follows the command name, which is in parentheses
                state = file.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        running += state == "R"
    return max(1, running)
