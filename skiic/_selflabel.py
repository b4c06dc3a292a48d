"""Self-labelling: a clustering network trained on its own confident predictions.

After the main training, each cluster's most confident samples (by the
margin between the two largest logits of the predicting head, on the clean
samples) become targets, and the network (backbone and that head) is trained
with cross-entropy on augmented views of them, as in SCAN's self-labelling
step (Van Gansbeke et al., 2020). The targets are chosen again at the start
of every epoch, from a share of each cluster that grows as training goes on.
Against collapse, every epoch draws the targets with equal weight per cluster
(SCAN weighs the cross-entropy by the inverse cluster frequency instead).
Labels are never used.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _data, _distributed, _engine

__all__ = [
    "SelfLabelObjective",
    "confident_samples",
    "self_label_epochs",
    "stage_wanted",
]

# Share of each cluster's samples taken as targets, first and last epoch.
START, END = 0.5, 0.9
# Self-labelling epochs, as a fraction of the main training's epochs; a step
# here is one augmented pass with gradients, against two (or, with
# adversarial views, three) in an IIC step.
STEP_FRACTION = 0.4
# Learning rate of the stage, as a fraction of the estimator's ``lr``.
LR_FACTOR = 0.1


def stage_wanted(self_labelling, *, auto: bool) -> bool:
    """Whether the ``self_labelling`` parameter asks for the stage; ``auto``
    is what ``"auto"`` means for this fit. Any truth value counts as a bool
    (numpy's, from a grid built with ``np.array([True, False])``, too)."""
    if isinstance(self_labelling, str):
        return auto
    return bool(self_labelling)


def self_label_epochs(main_epochs: int) -> int:
    """Epochs of self-labelling after ``main_epochs`` of main training (at least 1)."""
    return max(1, round(STEP_FRACTION * main_epochs))


class SelfLabelObjective(_engine.Objective):
    """Cross-entropy on augmented views of each cluster's most confident samples.

    At the start of every epoch the network labels every (clean) sample; in
    each cluster, the samples with the largest margin between the two top
    logits become targets, a share of the cluster that grows linearly from
    ``start`` in the first epoch to ``end`` in the last. The
    epoch's batches draw these samples with equal weight per cluster (the
    class-balance safeguard against collapse), as many batches as an epoch
    over all samples.

    Parameters
    ----------
    data : ResidentData or StreamedData
        The scaled samples on the device.
    logits : callable
        ``logits(module, x)``: the predicting head's logits, shape
        ``(n, n_clusters)``.
    augment : callable
        ``augment(module, x, idx, shard)``: this process's ``shard`` of the
        augmented views of the (global) batch ``x`` of samples ``idx``.
    n_clusters : int
        Number of clusters of the predicting head.
    epochs : int
        Epochs of the stage (for the schedule of the confident share).
    start, end : float
        Confident share of each cluster in the first and the last epoch.
    parallel : Parallel or None
        Data-parallel context: each process trains on its shard of a batch.

    Its history records ``confident``, each epoch's share of targets.
    """

    def __init__(
        self,
        data,
        logits: Callable[[nn.Module, Tensor], Tensor],
        augment: Callable[..., Tensor],
        *,
        n_clusters: int,
        epochs: int,
        start: float = START,
        end: float = END,
        parallel=None,
    ) -> None:
        super().__init__()
        self.data = data
        self.logits = logits
        self.augment = augment
        self.n_clusters = n_clusters
        self.epochs = epochs
        self.start = start
        self.end = end
        self.parallel = parallel or _distributed.Parallel()
        self._chosen = self._targets = None
        self._epoch = 0

    def on_epoch_begin(self, trainer):
        module = trainer.module_
        device = torch.device(trainer.device)
        module.eval()
        with torch.no_grad():
            logits = _data.map_samples(
                lambda x: self.logits(module, x).float(), self.data, device
            )
        module.train()
        share = self.start + (self.end - self.start) * (
            self._epoch / max(1, self.epochs - 1)
        )
        self._epoch += 1
        self._chosen, self._targets = confident_samples(logits, share)
        self._chosen = self._chosen.to(self.data.index_device)
        self._share = float(self._chosen.numel()) / self.data.n_samples

    def on_epoch_end(self, trainer):
        trainer.history.record("confident", self._share)

    def batches(self, n_samples, batch_size, device):
        n_batches = max(1, n_samples // batch_size)

        def plans():
            targets = self._targets[self._chosen.to(self._targets.device)]
            counts = torch.bincount(targets, minlength=self.n_clusters).float()
            weight = (1.0 / counts.clamp(min=1))[targets]
            draws = torch.multinomial(weight, n_batches * batch_size, replacement=True)
            picked = self._chosen[draws.to(self._chosen.device)]
            return ((idx,) for idx in picked.split(batch_size))

        return _data.Epochs(lambda: self.data.load(plans()))

    def forward(self, module: nn.Module, batch) -> Tensor:
        (idx,), (x,) = batch
        shard = self.parallel.shard
        targets = shard(self._targets[idx.to(self._targets.device)].to(x.device))
        views = self.augment(module, x, idx, shard)
        logits = self.logits(module, views).float()
        # Mean over the global batch: this shard's sum, summed over processes.
        total = F.cross_entropy(logits, targets, reduction="sum")
        return self.parallel.all_reduce(total) / x.shape[0]


def confident_samples(logits: Tensor, share: float) -> tuple[Tensor, Tensor]:
    """Each cluster's ``share`` of samples with the largest top-two logit margin.

    Returns the chosen samples' indices and every sample's cluster (the
    argmax of ``logits``).
    """
    top = logits.topk(2, dim=1).values if logits.shape[1] > 1 else None
    margin = top[:, 0] - top[:, 1] if top is not None else logits[:, 0]
    targets = logits.argmax(dim=1)
    chosen = []
    for cluster in torch.unique(targets):
        members = torch.nonzero(targets == cluster).squeeze(1)
        keep = max(1, math.ceil(share * members.numel()))
        order = margin[members].argsort(descending=True)
        chosen.append(members[order[:keep]])
    return torch.cat(chosen).sort().values, targets
