"""The torch side that the estimators share.

* device choice (``"auto"`` picks CUDA when present) and mixed precision
  (bf16 autocast on CUDA where supported, else fp16 with a gradient scaler);
* seeding inside ``torch.random.fork_rng`` so the caller's RNG is untouched;
* :class:`Trainer`, a skorch ``NeuralNet`` whose batches are index tensors
  into data that already lives on the device, whose loss is an
  :class:`Objective`, and which synchronises with the device once per epoch;
* batched inference that returns NumPy arrays on the host.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, ProgressBar
from skorch.history import History
from torch import Tensor, nn

from .exceptions import TrainingError

__all__ = [
    "DeviceBatches",
    "ResidentData",
    "StreamedData",
    "Objective",
    "Trainer",
    "autocast",
    "autocast_dtype",
    "forked_rng",
    "infer",
    "parse_memory",
    "place_data",
    "resolve_device",
    "scale_on_device",
    "scaling_tensors",
    "to_device",
]

# Samples pushed through the network at a time when predicting.
INFERENCE_BATCH = 4096


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


def to_device(X: np.ndarray, device: torch.device, shape=None) -> Tensor:
    """Copy a host array to the device once, optionally reshaped (images).

    On the CPU the tensor shares the array's memory; skiic only ever reads it,
    so read-only arrays (e.g. from pandas) are fine and not copied.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not")
        tensor = torch.from_numpy(np.ascontiguousarray(X))
    if shape is not None:
        tensor = tensor.reshape(tensor.shape[0], *shape)
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def parse_memory(value) -> int:
    """Bytes from an int or a string such as ``"512MB"`` or ``"2 GiB"``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    match = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*", str(value).lower()
    )
    if match is None:
        raise ValueError(
            f"A memory size must be a number of bytes or a string such as '512MB' "
            f"or '2GB'; got {value!r}."
        )
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " kmgt".index(unit or " "))


def scale_on_device(x: Tensor, offset: Tensor, scale: Tensor, shape=None) -> Tensor:
    """``(x - offset) / scale`` as float32, reshaped to images when ``shape`` is set.

    The one place where the estimators' input scaling is applied to tensors,
    so that resident, streamed and predicted batches agree to the last bit.
    """
    x = torch.div(torch.sub(x.float(), offset), scale)
    if shape is not None:
        x = x.reshape(x.shape[0], *shape)
    return x


def scaling_tensors(offset, scale, device: torch.device) -> tuple[Tensor, Tensor]:
    """The estimator's scaling constants as float32 tensors on ``device``."""
    return (
        torch.as_tensor(np.asarray(offset, dtype=np.float32), device=device),
        torch.as_tensor(np.asarray(scale, dtype=np.float32), device=device),
    )


class ResidentData:
    """Scaled float32 samples held on the device as one tensor.

    ``take(idx)`` is plain indexing; ``load(plans)`` yields each plan (a tuple
    of index tensors) with the matching sample tensors.
    """

    streamed = False

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor
        self.device = tensor.device
        self.n_samples = int(tensor.shape[0])

    @property
    def index_device(self) -> torch.device:
        """Where index tensors for :meth:`take` should live."""
        return self.device

    def take(self, idx: Tensor) -> Tensor:
        return self.tensor[idx]

    def load(self, plans: Iterable[tuple[Tensor, ...]]):
        for plan in plans:
            yield plan, tuple(self.take(idx) for idx in plan)


class StreamedData:
    """Samples left in host memory (or an ``np.memmap``), sent to the device per batch.

    Rows are gathered on the host in their stored dtype (uint8 images travel
    four times lighter than float32), pinned, copied with ``non_blocking=True``
    and scaled on the device. :meth:`load` prefetches: while the device works
    on one batch, a background thread gathers and pins the next.

    Parameters
    ----------
    array : ndarray or np.memmap of shape (n_samples, n_features)
        Unscaled samples, any real dtype.
    offset, scale : ndarray or float
        The estimator's input scaling: samples become ``(x - offset) / scale``.
    shape : tuple of int or None
        ``(C, H, W)`` of image samples, ``None`` for vectors.
    device : torch.device
        Where batches go.
    """

    streamed = True
    index_device = torch.device("cpu")

    def __init__(self, array, *, offset, scale, shape, device: torch.device) -> None:
        self.array = array
        self.device = device
        self.n_samples = int(array.shape[0])
        self.shape = shape
        self.offset, self.scale = scaling_tensors(offset, scale, device)
        self.max_rows = 0  # largest number of rows held on the device by one take

    def _gather(self, idx: Tensor) -> Tensor:
        positions = idx.cpu().numpy()
        order = np.argsort(positions, kind="stable")
        rows = np.empty((len(positions), self.array.shape[1]), dtype=self.array.dtype)
        rows[order] = self.array[positions[order]]  # sorted reads suit a memmap
        host = torch.from_numpy(rows)
        return host.pin_memory() if self.device.type == "cuda" else host

    def _to_device(self, host: Tensor) -> Tensor:
        self.max_rows = max(self.max_rows, int(host.shape[0]))
        x = host.to(self.device, non_blocking=True)
        return scale_on_device(x, self.offset, self.scale, self.shape)

    def take(self, idx: Tensor) -> Tensor:
        return self._to_device(self._gather(idx))

    def load(self, plans: Iterable[tuple[Tensor, ...]]):
        with ThreadPoolExecutor(max_workers=1) as pool:

            def submit(plan):
                return plan, [pool.submit(self._gather, idx) for idx in plan]

            pending = None
            for plan in plans:
                upcoming = submit(plan)
                if pending is not None:
                    yield self._finish(pending)
                pending = upcoming
            if pending is not None:
                yield self._finish(pending)

    def _finish(self, pending):
        plan, futures = pending
        return plan, tuple(self._to_device(f.result()) for f in futures)


def place_data(X, *, offset, scale, shape, device: torch.device, limit):
    """Put samples on the device when they fit in ``limit`` bytes, else stream them.

    ``limit`` is a number of bytes or ``"auto"``: on CUDA, half of the free
    device memory; elsewhere everything in host memory stays resident, and an
    ``np.memmap`` is streamed (it is on disk for a reason).
    """
    n_bytes = X.shape[0] * X.shape[1] * 4
    if limit == "auto":
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = n_bytes <= free // 2
        else:
            fits = not isinstance(X, np.memmap)
    else:
        fits = n_bytes <= parse_memory(limit)
    if fits:
        tensor = to_device(np.asarray(X, dtype=np.float32), device)
        offset, scale = scaling_tensors(offset, scale, device)
        return ResidentData(scale_on_device(tensor, offset, scale, shape))
    return StreamedData(X, offset=offset, scale=scale, shape=shape, device=device)


class DeviceBatches:
    """Shuffled batches of sample indices, drawn on the device each epoch.

    The number of batches is ``max(1, n_samples // batch_size)`` and the
    permutation is split into nearly equal parts, so every batch holds at least
    ``min(batch_size, n_samples)`` samples (BatchNorm and the IIC joint
    distribution both dislike tiny batches) and no sample is dropped.

    Parameters
    ----------
    n_samples : int
        Samples in the data set.
    batch_size : int
        Target size of a batch.
    device : torch.device
        Where the indices live.
    """

    def __init__(self, n_samples: int, batch_size: int, device: torch.device) -> None:
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.device = device

    def __len__(self) -> int:
        return max(1, self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        perm = torch.randperm(self.n_samples, device=self.device)
        yield from torch.tensor_split(perm, len(self))


class Epochs:
    """Batches an objective can return: each ``iter`` starts a new epoch from
    ``make()``, e.g. a generator fetching the batches through a data source."""

    def __init__(self, make: Callable[[], Iterable]) -> None:
        self.make = make

    def __iter__(self):
        return iter(self.make())


class Objective(nn.Module):
    """What an estimator trains: the loss of a batch of sample indices.

    Subclasses hold the device-resident data (and anything derived from it,
    such as neighbour lists) and implement :meth:`forward`; the epoch hooks
    let them re-cluster (DeepCluster) or log per-head losses (IIC).
    """

    def forward(self, module: nn.Module, idx: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def batches(self, n_samples: int, batch_size: int, device: torch.device):
        """The iterable of index batches; iterated once per epoch.

        The default shuffles all samples (:class:`DeviceBatches`); an objective
        that samples differently (e.g. balanced over pseudo-classes) overrides
        it and may read its own state at the start of each epoch.
        """
        return DeviceBatches(n_samples, batch_size, device)

    def on_epoch_begin(self, trainer: Trainer) -> None:
        """Called before each epoch's batches."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """Called after each epoch's batches, before the callbacks log the epoch."""


class Trainer(NeuralNet):
    """skorch ``NeuralNet`` that trains an :class:`Objective` on device-resident data.

    ``fit`` is called with the number of samples; each batch is a tensor of
    indices (:class:`DeviceBatches`) that the objective uses to slice its data.
    Loss values stay on the device until the end of the epoch, where they are
    copied to the history in one transfer and checked for divergence.
    """

    def __init__(
        self,
        module: nn.Module,
        objective: Objective,
        *,
        n_samples: int,
        amp_dtype: torch.dtype | None = None,
        parallel=None,
        **kwargs,
    ) -> None:
        super().__init__(module, criterion=objective, train_split=None, **kwargs)
        self.n_samples = n_samples
        self.amp_dtype = amp_dtype
        self.parallel = parallel

    # data: indices on the device instead of a Dataset / DataLoader
    def get_split_datasets(self, X, y=None, **fit_params):
        return X, None

    def get_iterator(self, dataset, training=False):
        device = torch.device(self.device)
        return self.criterion_.batches(self.n_samples, self.batch_size, device)

    def initialize(self):
        super().initialize()
        use_scaler = self.amp_dtype == torch.float16
        self.grad_scaler_ = torch.amp.GradScaler("cuda") if use_scaler else None
        return self

    # training step: autocast, optional gradient scaling, no host sync
    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        device = torch.device(self.device)
        with autocast(device, self.amp_dtype):
            loss = self.criterion_(self.module_, batch)
        if self.grad_scaler_ is not None:
            self.grad_scaler_.scale(loss).backward()
        else:
            loss.backward()
        return {"loss": loss.detach(), "y_pred": None}

    def train_step(self, batch, **fit_params):
        self._zero_grad_optimizer(set_to_none=True)
        step = self.train_step_single(batch, **fit_params)
        self.notify(
            "on_grad_computed",
            named_parameters=list(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        if self.parallel is not None:
            if self.grad_scaler_ is not None:
                self.grad_scaler_.unscale_(self.optimizer_)
            self.parallel.average_gradients(self.module_.parameters())
        if self.grad_scaler_ is not None:
            self.grad_scaler_.step(self.optimizer_)
            self.grad_scaler_.update()
        else:
            self.optimizer_.step()
        return step

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        losses, sizes = [], []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"])
            sizes.append(_batch_length(batch))
            self.notify("on_batch_end", batch=batch, training=training, **step)
        if not losses:
            raise TrainingError("The objective produced no batch in this epoch.")
        values = torch.stack(losses).float().cpu().tolist()  # one sync per epoch
        for row, value, size in zip(self.history[-1]["batches"], values, sizes):
            row[prefix + "_loss"] = value
            row[prefix + "_batch_size"] = size
        self.history.record(prefix + "_batch_count", len(values))
        if not all(math.isfinite(v) for v in values):
            raise TrainingError(
                f"Training diverged: the loss became {values[-1]} in epoch "
                f"{len(self.history)}. Try a smaller lr or check the input scale."
            )

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)
        self.criterion_.on_epoch_begin(self)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_end(net, dataset_train, dataset_valid, **kwargs)
        self.criterion_.on_epoch_end(self)


def _batch_length(batch) -> int:
    """Samples in a batch: a tensor, or nested tuples whose first leaf is one."""
    while isinstance(batch, (tuple, list)):
        batch = batch[0]
    return int(batch.shape[0])


def train(
    module: nn.Module,
    objective: Objective,
    *,
    n_samples: int,
    max_epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    verbose: int = 0,
    optimizer=torch.optim.Adam,
    callbacks: list[tuple[str, Callback]] | None = None,
    parallel=None,
) -> tuple[nn.Module, History]:
    """Train ``module`` on ``objective`` and return it (on the CPU) with its history.

    The caller seeds torch (:func:`forked_rng`) and has put the objective's data
    on ``device``. ``verbose`` adds a progress bar and a per-epoch log table.
    With a ``parallel`` context (:mod:`skiic._distributed`), gradients are
    averaged over the processes before every step.
    """
    callbacks = list(callbacks or [])
    if verbose:
        batches = max(1, n_samples // batch_size)
        callbacks.append(
            ("progress", ProgressBar(batches_per_epoch=batches, postfix_keys=[]))
        )
    trainer = Trainer(
        module,
        objective,
        n_samples=n_samples,
        amp_dtype=autocast_dtype(device),
        optimizer=optimizer,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        device=str(device),
        callbacks=callbacks,
        verbose=verbose,
        parallel=parallel if parallel is not None and parallel.active else None,
    )
    trainer.fit(torch.arange(n_samples, device=device))
    history = History(
        {key: value for key, value in epoch.items() if key != "batches"}
        for epoch in trainer.history
    )
    trained = trainer.module_.to("cpu").eval()
    return trained, history


@torch.no_grad()
def map_samples(
    fn: Callable[[Tensor], Tensor], data, device: torch.device, indices=None
) -> Tensor:
    """Apply ``fn(batch)`` to the samples of a data source, chunk by chunk.

    ``data`` is a :class:`ResidentData` or :class:`StreamedData`; chunks of
    ``INFERENCE_BATCH`` samples (of ``indices``, on ``data.index_device``,
    default all samples in order) are read through its ``load``, so a streamed
    source prefetches the next chunk while ``fn`` runs. ``fn`` runs under
    autocast on ``device``; the results are concatenated there. The caller
    sets the module's mode.
    """
    if indices is None:
        indices = torch.arange(data.n_samples, device=data.index_device)
    amp_dtype = autocast_dtype(device)
    plans = ((chunk,) for chunk in indices.split(INFERENCE_BATCH))
    outputs = []
    for _, (x,) in data.load(plans):
        with autocast(device, amp_dtype):
            outputs.append(fn(x))
    return torch.cat(outputs)


@torch.no_grad()
def infer(
    module: nn.Module,
    X: np.ndarray | Tensor,
    fn: Callable[[nn.Module, Tensor], Tensor | tuple[Tensor, ...]],
    *,
    device: torch.device,
    shape=None,
    scaling=None,
    batch_size: int = INFERENCE_BATCH,
) -> Tensor | tuple[Tensor, ...]:
    """Apply ``fn(module, batch)`` to ``X`` in batches on ``device``.

    Results come back on the CPU.

    ``X`` may be a host array (copied batch by batch) or a tensor already on
    ``device``. ``scaling=(offset, scale)`` scales host batches on the device
    (:func:`scale_on_device`). The module runs in eval mode under autocast;
    outputs are cast back to float32.
    """
    module.eval()
    amp_dtype = autocast_dtype(device)
    if scaling is not None:
        offset, scale = scaling_tensors(*scaling, device)
    outputs: list = []
    for start in range(0, X.shape[0], batch_size):
        chunk = X[start : start + batch_size]
        if isinstance(chunk, np.ndarray):
            chunk = to_device(chunk, device)
            if scaling is not None:
                chunk = scale_on_device(chunk, offset, scale, shape)
            elif shape is not None:
                chunk = chunk.reshape(chunk.shape[0], *shape)
        with autocast(device, amp_dtype):
            out = fn(module, chunk)
        outputs.append(out)
    if isinstance(outputs[0], tuple):
        return tuple(
            torch.cat([o[i].float().cpu() for o in outputs])
            for i in range(len(outputs[0]))
        )
    return torch.cat([o.float().cpu() for o in outputs])
