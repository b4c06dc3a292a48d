"""The training loop the estimators share: a skorch ``NeuralNet`` on device data.

:class:`Trainer` is a skorch ``NeuralNet`` whose batches are index tensors
into data that already lives on the device (:mod:`skiic._data`), whose loss is
an :class:`Objective`, and which synchronises with the device once per epoch.
:func:`train` runs it; :func:`check_trajectory` reads the losses it logged
for divergence; :func:`infer` applies a trained network to host arrays.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, PrintLog, ProgressBar
from skorch.history import History
from torch import Tensor, nn

from ._data import DeviceBatches, StreamedData, map_samples
from ._device import autocast, autocast_dtype, fast_layout
from ._validation import user_stacklevel
from .exceptions import ConvergenceWarning, TrainingError

__all__ = [
    "Objective",
    "Trainer",
    "check_trajectory",
    "infer",
    "log",
    "lr_advice",
    "train",
]

# Divergence: a batch loss this many times (at least 1 in absolute terms)
# above the untrained network's, the first batch's.
_DIVERGENCE_FACTOR = 1e3


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


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class _PrintLog(PrintLog):
    """skorch's per-epoch table, its colours left out where they would show
    as escape codes (a log file or a pipe): see :func:`_colours`; its epochs
    numbered from ``first_epoch``, the fit's count, as ``history_`` numbers
    them (a continued training or a self-labelling stage would start at 1)."""

    def __init__(self, first_epoch: int = 1) -> None:
        super().__init__()
        self.first_epoch = first_epoch

    def format_row(self, row, key, color):
        if key == "epoch":
            row = dict(row, epoch=row["epoch"] + self.first_epoch - 1)
        text = super().format_row(row, key, color)
        if isinstance(text, str) and not _colours(sys.stdout):
            text = _ANSI_ESCAPE.sub("", text)
        return text


def _colours(stream) -> bool:
    """Whether to colour text for ``stream``: ``NO_COLOR`` or ``FORCE_COLOR``
    (https://no-color.org) decide when set, else terminals and Jupyter
    notebooks (whose output renders the codes) get colours."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return _interactive(stream)


def _interactive(stream) -> bool:
    """Whether ``stream`` is a terminal or a Jupyter notebook's output, where
    a progress bar redraws in place (in a log file or a pipe every redraw
    would stay, as a line of carriage returns)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


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
        reference: float | None = None,
        first_epoch: int = 1,
        lr_label: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(module, criterion=objective, train_split=None, **kwargs)
        self.n_samples = n_samples
        self.amp_dtype = amp_dtype
        self.parallel = parallel
        self.reference = reference
        self.first_epoch = first_epoch
        self.lr_label = lr_label

    @property
    def _default_callbacks(self):
        return [
            (name, _PrintLog(self.first_epoch) if name == "print_log" else callback)
            for name, callback in super()._default_callbacks
        ]

    # data: indices on the device instead of a Dataset / DataLoader
    def get_split_datasets(self, X, y=None, **fit_params):
        return X, None

    def get_iterator(self, dataset, training=False):
        device = torch.device(self.device)
        return self.criterion_.batches(self.n_samples, self.batch_size, device)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            # skorch's EarlyStopping stops training by raising it, and skorch's
            # partial_fit swallows it; any other one is the user's, which
            # train() raises again once skorch has cleaned up.
            self.interrupted_ = not self._stopped_early()
            raise

    def _stopped_early(self) -> bool:
        return any(
            isinstance(callback, EarlyStopping)
            and callback.misses_ >= callback.patience
            for _, callback in self.callbacks_
        )

    def initialize(self):
        super().initialize()
        self.interrupted_ = False
        self.first_loss_ = self.reference
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
            # Averaged while still scaled (the scale is the same everywhere):
            # then every process sees the same overflow and skips the same steps.
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
        if self.first_loss_ is None:
            self.first_loss_ = values[0]  # the untrained network's loss
        _check_divergence(
            self.first_loss_,
            values,
            len(self.history) + self.first_epoch - 1,
            self.lr_label,
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
    reference: float | None = None,
    first_epoch: int = 1,
    lr_label: str | None = None,
) -> tuple[nn.Module, History]:
    """Train ``module`` on ``objective`` and return it (on the CPU) with its history.

    The caller seeds torch (:func:`forked_rng`) and has put the objective's data
    on ``device``. ``verbose`` adds a per-epoch log table, and a per-batch
    progress bar where standard error is a terminal or a notebook.
    With a ``parallel`` context (:mod:`skiic._distributed`), gradients are
    averaged over the processes before every step.

    Divergence is measured against ``reference``, the loss where training on
    this objective started; without it, against this training's first batch
    (the untrained network's loss). A training that continues another one on
    the same objective passes where that one started (IIC: its first epoch's
    mean loss), since its own first batch may already be far gone. After
    the last step the weights must still be finite (no loss has seen it).
    The error messages number this training's epochs from ``first_epoch``
    (the fit's count) and name the learning rate as ``lr_label`` says
    (default ``"lr=<lr>"``).
    """
    callbacks = list(callbacks or [])
    lr_label = lr_label or f"lr={lr:g}"
    if verbose and _interactive(sys.stderr):
        batches = max(1, n_samples // batch_size)
        callbacks.append(
            ("progress", ProgressBar(batches_per_epoch=batches, postfix_keys=[]))
        )
    if parallel is None or not parallel.active:
        module = fast_layout(module, device)
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
        reference=reference,
        first_epoch=first_epoch,
        lr_label=lr_label,
    )
    trainer.fit(torch.arange(n_samples, device=device))
    if trainer.interrupted_:
        raise KeyboardInterrupt(
            f"Training was interrupted in epoch {len(trainer.history)} of {max_epochs}."
        )
    _check_weights(trainer.module_, len(trainer.history) + first_epoch - 1, lr_label)
    history = History(
        {key: value for key, value in epoch.items() if key != "batches"}
        for epoch in trainer.history
    )
    trained = trainer.module_.to("cpu").eval()
    return trained, history


def join_histories(first: History, then: History) -> History:
    """One history of a training continued by another: the second's epochs are
    numbered on from the first's."""
    offset = len(first)
    joined = [dict(epoch) for epoch in first]
    for epoch in then:
        epoch = dict(epoch)
        epoch["epoch"] = epoch.get("epoch", 0) + offset
        joined.append(epoch)
    return History(joined)


def log(verbose, message: str) -> None:
    """Say what a fit is doing, when ``verbose``: one line on stdout, at once."""
    if verbose:
        print(f"[skiic] {message}", flush=True)


def lr_advice(lr: str) -> str:
    """The advice that ends a divergence message; ``lr`` names the learning
    rate (``"lr=0.001"``)."""
    return (
        f"The learning rate {lr} is likely too large; if a smaller one does not "
        "help, check the input's scale."
    )


def _check_weights(module: nn.Module, epoch: int, lr: str) -> None:
    """Raise when a weight (or a normalisation layer's running statistic) of
    ``module`` is NaN or infinite after training. Other buffers may hold
    infinities on purpose (a mask, a bound) and are left alone."""
    tensors = [*module.parameters()]
    for part in module.modules():
        for name in ("running_mean", "running_var"):
            if isinstance(getattr(part, name, None), Tensor):
                tensors.append(getattr(part, name))
    if all(bool(torch.isfinite(t).all()) for t in tensors):
        return
    raise TrainingError(
        f"Training diverged: the network's weights became infinite or NaN in the "
        f"last steps of epoch {epoch}. {lr_advice(lr)}"
    )


def _check_divergence(reference: float, losses, epoch: int, lr: str) -> None:
    """Raise when an epoch's batch ``losses`` are not finite or ran far above
    ``reference``, the untrained network's loss (the first batch's); the
    message names the learning rate as ``lr`` says (``"lr=0.001"``).

    No objective of skiic climbs more than ``1e3`` times that loss's magnitude
    while it learns; past that, or at NaN or inf, training diverged.
    """
    if not math.isfinite(reference) and epoch == 1:
        raise TrainingError(
            f"The untrained network's loss is already {reference}, before any "
            "optimiser step: the learning rate is not the cause; check the input, "
            "a custom module or augmentation."
        )
    if not math.isfinite(reference):  # at the start of a later stage
        raise TrainingError(
            f"Training diverged: the loss is already {reference} in the first "
            f"batch of epoch {epoch}, before that stage's first step. The learning "
            f"rate {lr} may be too large; else check a custom module or "
            "augmentation."
        )
    bound = reference + _DIVERGENCE_FACTOR * max(abs(reference), 1.0)
    bad = next((v for v in losses if not math.isfinite(v) or v > bound), None)
    if bad is None:
        return
    grew = f"became {bad}" if not math.isfinite(bad) else f"grew to {bad:.4g}"
    raise TrainingError(
        f"Training diverged: the loss {grew} in epoch {epoch}, from {reference:.4g} "
        f"at the start. {lr_advice(lr)}"
    )


def check_trajectory(history: History, *, lr: float, key: str = "train_loss") -> None:
    """Warn when the per-epoch loss ``key`` of ``history`` never improved.

    Divergence is caught while training (:class:`Trainer` checks every
    epoch); a loss that over three or more epochs never fell below the first
    epoch's means the network learned nothing, usually from too large a
    learning rate.
    """
    losses = [epoch[key] for epoch in history if key in epoch]
    if len(losses) >= 3 and min(losses[1:]) >= losses[0]:
        warnings.warn(
            f"The loss never fell below its first epoch's value ({losses[0]:.4g}) "
            f"in {len(losses)} epochs: the network learned nothing. Try a smaller "
            f"lr (now {lr:g}) or more epochs.",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )


@torch.no_grad()
def infer(
    module: nn.Module,
    X: np.ndarray,
    fn: Callable[[nn.Module, Tensor], Tensor],
    *,
    device: torch.device,
    shape=None,
    scaling=None,
) -> Tensor:
    """Apply ``fn(module, batch)`` to the host array ``X`` on ``device``.

    ``X`` is read chunk by chunk (:func:`skiic._data.map_samples`), scaled on
    the device by ``scaling=(offset, scale, projection or None)`` and
    reshaped to ``shape``; the module runs in eval mode under autocast.
    Returns float32 on the CPU.
    """
    offset, scale, projection = scaling or (np.float32(0), np.float32(1), None)
    data = StreamedData(
        X,
        offset=offset,
        scale=scale,
        shape=shape,
        device=device,
        projection=projection,
    )
    module.eval()
    return map_samples(lambda x: fn(module, x).float(), data, device).cpu()
