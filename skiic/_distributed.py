"""Data-parallel training over several processes with ``torch.distributed``.

Every process holds the same data and draws the same random numbers (same
seed), so every process plans the same global batch and the same views; each
one then runs the network on its contiguous shard of the batch. Quantities
that are sums over samples are all-reduced with gradients flowing back through
the reduction:

* the IIC joint distribution (the loss is then computed once from the total,
  identically in every process);
* the BatchNorm statistics (:class:`SyncBatchNorm`), so normalisation uses the
  whole global batch as in a single process.

Gradients are then averaged over processes before each optimiser step, which
makes a run on ``W`` processes train exactly like one process on the same
global batch, up to floating-point summation order.

Processes are started by :func:`spawn` (one per entry of ``devices``; gloo for
CPUs, NCCL for GPUs; forked from a server that has imported skiic once where
every device is a CPU) or already exist (``torchrun``, any launcher that
initialises the default process group).
"""

from __future__ import annotations

import datetime
import mmap
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MemmapFile",
    "Parallel",
    "SyncBatchNorm",
    "convert_batchnorm",
    "revert_batchnorm",
    "spawn",
    "start_method",
]

# How long a process waits for the others in a collective before giving up.
_TIMEOUT = datetime.timedelta(minutes=10)
# What the fork server of CPU processes imports once, before any fit forks it.
_PRELOAD = ["skiic._iic", "skiic._deepcluster", "skiic._autoencoder"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward pass sums the gradients too."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class Parallel:
    """This process's place in a data-parallel run.

    ``Parallel()`` (one process) makes every method a no-op, so the training
    code is the same with and without ``torch.distributed``.

    Parameters
    ----------
    rank : int, default=0
        Index of this process.
    world_size : int, default=1
        Number of processes.
    """

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        self.rank = rank
        self.world_size = world_size

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tensor: Tensor) -> Tensor:
        """This process's contiguous part of a global batch."""
        if not self.active:
            return tensor
        return torch.tensor_split(tensor, self.world_size)[self.rank]

    def all_reduce(self, tensor: Tensor) -> Tensor:
        """Sum over processes; differentiable (gradients are summed back)."""
        if not self.active:
            return tensor
        return _AllReduceSum.apply(tensor)

    def all_gather(self, tensor: Tensor) -> Tensor:
        """Concatenate, in rank order, every process's :meth:`shard` of a tensor.

        The inverse of :meth:`shard` (shards may differ in length by one row);
        not differentiable.
        """
        if not self.active:
            return tensor
        size = torch.tensor([tensor.shape[0]], device=tensor.device)
        sizes = [torch.empty_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        longest = int(max(sizes).item())
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[: int(n)] for part, n in zip(parts, sizes)])

    def average_gradients(self, parameters) -> None:
        """Average the gradients over processes, in place, before a step.

        Every process's gradients are ``world_size`` times its share of the
        true gradient (each backward pass sums through the all-reduces), so
        the average is exactly the gradient of the global batch.
        """
        if not self.active:
            return
        for param in parameters:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            dist.all_reduce(param.grad)
            param.grad.div_(self.world_size)


class SyncBatchNorm(nn.Module):
    """BatchNorm whose training statistics span the global batch of all processes.

    torch's own ``nn.SyncBatchNorm`` runs on GPUs only; this one also runs on
    CPUs (gloo), which is what the tests use. Outside training, or with one
    process, it is an ordinary BatchNorm.
    """

    def __init__(self, batchnorm: nn.modules.batchnorm._BatchNorm, parallel: Parallel):
        super().__init__()
        self.kind = type(batchnorm)
        self.num_features = batchnorm.num_features
        self.eps = batchnorm.eps
        self.momentum = batchnorm.momentum
        self.weight = batchnorm.weight
        self.bias = batchnorm.bias
        self.register_buffer("running_mean", batchnorm.running_mean)
        self.register_buffer("running_var", batchnorm.running_var)
        self.register_buffer("num_batches_tracked", batchnorm.num_batches_tracked)
        self.parallel = parallel

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.parallel.active):
            return F.batch_norm(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                self.training,
                self.momentum if self.momentum is not None else 0.0,
                self.eps,
            )
        dims = [0, *range(2, x.dim())]
        count = torch.tensor(
            [x.numel() / x.shape[1]], device=x.device, dtype=torch.float32
        )
        local = torch.cat([x.float().sum(dims), (x.float() ** 2).sum(dims), count])
        total = self.parallel.all_reduce(local)
        channels = self.num_features
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels : 2 * channels] / n - mean**2
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
            self.running_mean.mul_(1 - factor).add_(factor * mean)
            self.running_var.mul_(1 - factor).add_(factor * var * n / (n - 1))
        shape = [1, channels] + [1] * (x.dim() - 2)
        out = (x - mean.view(shape).to(x.dtype)) * torch.rsqrt(
            var.view(shape) + self.eps
        ).to(x.dtype)
        if self.weight is not None:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_batchnorm(
    module: nn.Module, parallel: Parallel, device: torch.device | None = None
) -> nn.Module:
    """Make every BatchNorm layer of ``module`` synchronise over the processes.

    On CUDA, torch's own ``nn.SyncBatchNorm`` (fused kernels, NCCL); elsewhere
    :class:`SyncBatchNorm`, since torch's refuses to run on CPU process groups.
    """
    on_cuda = device is not None and device.type == "cuda"
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(
                module,
                name,
                (_torch_sync if on_cuda else SyncBatchNorm)(child, parallel),
            )
        else:
            convert_batchnorm(child, parallel, device)
    return module


def _torch_sync(batchnorm: nn.modules.batchnorm._BatchNorm, parallel) -> nn.Module:
    """torch's ``nn.SyncBatchNorm`` sharing ``batchnorm``'s parameters and state."""
    sync = nn.SyncBatchNorm(
        batchnorm.num_features,
        eps=batchnorm.eps,
        momentum=batchnorm.momentum,
        affine=batchnorm.affine,
    )
    sync.weight, sync.bias = batchnorm.weight, batchnorm.bias
    sync.running_mean = batchnorm.running_mean
    sync.running_var = batchnorm.running_var
    sync.num_batches_tracked = batchnorm.num_batches_tracked
    sync.kind = type(batchnorm)  # what revert_batchnorm turns it back into
    return sync.to(batchnorm.running_mean.device)


def revert_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_batchnorm`: plain BatchNorm layers with the learned state."""
    for name, child in module.named_children():
        if isinstance(child, (SyncBatchNorm, nn.SyncBatchNorm)):
            plain = child.kind(
                child.num_features, eps=child.eps, momentum=child.momentum
            )
            plain.weight, plain.bias = child.weight, child.bias
            plain.running_mean = child.running_mean
            plain.running_var = child.running_var
            plain.num_batches_tracked = child.num_batches_tracked
            setattr(module, name, plain)
        else:
            revert_batchnorm(child)
    return module


def process_group_parallel() -> Parallel:
    """The :class:`Parallel` of an existing default process group (torchrun)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "devices='process_group' needs an initialised default process group "
            "(start the script with torchrun, or call "
            "torch.distributed.init_process_group first)."
        )
    return Parallel(dist.get_rank(), dist.get_world_size())


def from_rank_zero(obj, device: torch.device):
    """``obj`` as rank 0 of the existing default process group has it.

    Every process of a torchrun job makes its own fit plan; sending rank 0's
    to the others keeps their seeds, views and input scaling in step even
    where ``random_state`` draws differently in each (``None``, or a
    ``RandomState`` that each process has used differently). The caller has
    checked that the group exists (:func:`process_group_parallel`).
    """
    objects = [obj]
    # NCCL moves the pickled bytes through this process's GPU.
    dist.broadcast_object_list(
        objects, src=0, device=device if device.type == "cuda" else None
    )
    return objects[0]


def check_devices(devices) -> list[torch.device]:
    """Validate the ``devices`` parameter: all CPUs (gloo) or distinct GPUs (NCCL)."""
    try:
        parsed = [torch.device(d) for d in devices]
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"devices={devices!r} holds a device torch does not know."
        ) from exc
    if not parsed:
        raise ValueError("devices must name at least one device.")
    kinds = {d.type for d in parsed}
    if kinds - {"cpu", "cuda"} or len(kinds) > 1:
        raise ValueError(
            "devices must be all 'cpu' (gloo) or all CUDA devices (NCCL); "
            f"got {devices!r}."
        )
    if kinds == {"cuda"}:
        if not torch.cuda.is_available():
            raise ValueError(
                f"devices={devices!r} names GPUs, but CUDA is not available."
            )
        indices = [d.index if d.index is not None else 0 for d in parsed]
        if len(set(indices)) != len(indices):
            raise ValueError(f"devices must name each GPU once; got {devices!r}.")
        missing = [i for i in indices if i >= torch.cuda.device_count()]
        if missing:
            raise ValueError(
                f"devices={devices!r} names GPU {missing[0]}, but this machine has "
                f"{torch.cuda.device_count()}."
            )
        parsed = [torch.device("cuda", i) for i in indices]
    return parsed


class MemmapFile(NamedTuple):
    """Where a C-contiguous memmap's rows lie in its file, to open it again in
    another process: pickling the memmap itself would copy all its rows."""

    filename: str  # or a path object, as np.memmap keeps it
    dtype: np.dtype
    shape: tuple
    offset: int  # bytes from the file's start to the first row

    @classmethod
    def of(cls, X):
        """The file behind ``X``, or ``X`` itself when it is not a file-backed,
        C-contiguous memmap (or a view of one) whose rows the file holds."""
        buffer = getattr(X, "_mmap", None)
        if not (
            isinstance(X, np.memmap)
            and isinstance(buffer, mmap.mmap)
            and X.filename
            and X.mode != "c"  # copy-on-write: its changes are not in the file
            and X.flags.c_contiguous
        ):
            return X
        # The mapping starts at the memmap's offset rounded down to the
        # allocation granularity; a view starts further in.
        mapped_at = X.offset - X.offset % mmap.ALLOCATIONGRANULARITY
        start = np.frombuffer(buffer, dtype=np.uint8).__array_interface__["data"][0]
        here = X.__array_interface__["data"][0]
        return cls(X.filename, X.dtype, tuple(X.shape), mapped_at + here - start)

    def open(self) -> np.memmap:
        """The same rows, read-only."""
        return np.memmap(
            self.filename, dtype=self.dtype, mode="r", shape=self.shape,
            offset=self.offset,
        )  # fmt: skip


def spawn(target, devices, args, *, threads=None):
    """Run ``target(*args, device=..., parallel=...)`` in one process per device.

    The processes on the CPU share ``threads`` torch threads (by default the
    machine's cores), each taking an equal part, at least one.
    Returns what the process of rank 0 returned, or raises what a process
    raised (rank 0's error, else another's; a ``RuntimeError`` with its
    traceback where the error cannot be read back). Processes still running
    when the caller is interrupted (``KeyboardInterrupt``) are stopped first.
    Each process imports the caller's main module again, whichever the start
    method (see :func:`start_method`), so a script that calls ``fit`` with
    ``devices`` must guard its top level with ``if __name__ == "__main__":``.
    """
    devices = check_devices(devices)
    method = start_method(devices)
    if method == "forkserver":
        # Taken by the server when it starts (the first such fit); afterwards
        # it changes nothing.
        multiprocessing.set_forkserver_preload(_PRELOAD)
    with tempfile.TemporaryDirectory(prefix="skiic-") as folder:
        context = torch.multiprocessing.start_processes(
            _run_rank,
            args=(target, devices, args, folder, threads),
            nprocs=len(devices),
            join=False,
            start_method=method,
        )
        try:
            while not context.join():
                pass
        except BaseException as failure:
            # torch stops the others when one fails; not when the caller is
            # interrupted (KeyboardInterrupt), which must not leave them training.
            _stop(context.processes)
            if not isinstance(failure, Exception):
                raise
            outcome = _read_outcome(folder)
            if outcome is not None and outcome[0] == "error":
                raise outcome[1] from None
            raise RuntimeError(f"A training process failed: {failure}") from failure
        status, value = _read_outcome(folder)
    if status == "error":
        raise value
    return value


def _stop(processes) -> None:
    """Terminate the processes still running, and wait for them."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()


def start_method(devices) -> str:
    """How :func:`spawn` starts the processes for ``devices``.

    ``"forkserver"`` where every device is a CPU and the platform has it
    (Linux, macOS): the processes fork from one server process that imported
    torch and skiic once, which saves each fit those imports (about 4 s on a
    2-core CPU); they see the environment variables the session had when the
    server started. ``"spawn"`` otherwise (GPUs, Windows): a fresh
    interpreter per process. Neither copies the caller's threads or CUDA
    state.

    Examples
    --------
    >>> import torch
    >>> from skiic._distributed import start_method
    >>> start_method([torch.device("cuda:0"), torch.device("cuda:1")])
    'spawn'
    """
    on_cpus = all(torch.device(d).type == "cpu" for d in devices)
    if on_cpus and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def _run_rank(rank, target, devices, args, folder, threads=None):
    world_size = len(devices)
    device = devices[rank]
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        on_cpu = sum(d.type == "cpu" for d in devices)
        torch.set_num_threads(max(1, (threads or os.cpu_count() or 1) // on_cpu))
    dist.init_process_group(
        backend,
        init_method=Path(folder, "rendezvous").as_uri(),
        rank=rank,
        world_size=world_size,
        timeout=_TIMEOUT,
    )
    try:
        result = target(*args, device=device, parallel=Parallel(rank, world_size))
        if rank == 0:
            torch.save(("ok", result), Path(folder, "outcome-0.pt"))
    except BaseException as exc:
        # Every rank keeps what it raised: the error of one rank alone (the
        # others are then stopped) is the one the caller should see.
        torch.save(("error", exc), Path(folder, f"outcome-{rank}.pt"))
        raise
    finally:
        dist.destroy_process_group()


def _read_outcome(folder):
    """Rank 0's outcome, else the first error another rank kept; None where
    none was kept or it cannot be read back (an exception class that does
    not unpickle: the caller then reports the process's failure itself)."""
    paths = sorted(
        Path(folder).glob("outcome-*.pt"),
        key=lambda path: int(path.stem.removeprefix("outcome-")),
    )
    for path in paths:
        try:
            return torch.load(path, weights_only=False)
        except Exception:
            continue
    return None
