"""Losses for deep clustering, as plain functions of tensors.

The functions take the device from their inputs and never import scikit-learn,
so they can be used on their own in any PyTorch training loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "IICLoss",
    "iic_loss",
    "iic_loss_from_joint",
    "joint_distribution",
    "mutual_information",
    "soft_assignments",
]

# Probabilities below this are clamped before the logarithm, as in the authors' code.
_EPS = torch.finfo(torch.float32).eps


def soft_assignments(logits: Tensor) -> Tensor:
    """Softmax over the last dimension (clusters), in float32.

    On the CPU it is written out (shift by the row maximum, exponentiate,
    normalise): torch's own CPU softmax is several times slower for the few
    clusters of a head (10 to 50), where IIC spends much of its time. On
    other devices it is ``torch.softmax``.

    Parameters
    ----------
    logits : Tensor of shape (..., n_clusters)
        Head outputs.

    Returns
    -------
    Tensor of shape (..., n_clusters)
        Probabilities; each row sums to one.

    Examples
    --------
    >>> import torch
    >>> from skiic.losses import soft_assignments
    >>> logits = torch.randn(5, 4, 10)
    >>> torch.allclose(soft_assignments(logits), logits.softmax(dim=-1), atol=1e-6)
    True
    """
    logits = logits.float()
    if logits.device.type != "cpu":
        return logits.softmax(dim=-1)
    # the shift only guards against overflow; softmax does not depend on it
    shifted = logits - logits.detach().amax(dim=-1, keepdim=True)
    exp = shifted.exp()
    return exp / exp.sum(dim=-1, keepdim=True)


def joint_distribution(p1: Tensor, p2: Tensor) -> Tensor:
    """Symmetric joint distribution of the cluster assignments of two views.

    Parameters
    ----------
    p1 : Tensor of shape (..., n_samples, n_clusters)
        Soft assignments (rows sum to one) of the first view of each sample;
        leading dimensions (e.g. sub-heads) are batched.
    p2 : Tensor of shape (..., n_samples, n_clusters)
        Soft assignments of the second view of the same samples.

    Returns
    -------
    P : Tensor of shape (..., n_clusters, n_clusters)
        ``P[i, j]`` estimates the probability that the first view falls in
        cluster ``i`` and the second in ``j``: the mean of the outer products
        ``p1[n] p2[n]^T``, made symmetric, summing to one.

    Examples
    --------
    >>> import torch
    >>> from skiic.losses import joint_distribution
    >>> p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> joint_distribution(p, p)
    tensor([[0.5000, 0.0000],
            [0.0000, 0.5000]])
    """
    _check_assignments(p1, p2)
    joint = p1.float().transpose(-1, -2) @ p2.float()
    joint = (joint + joint.transpose(-1, -2)) / 2
    return joint / joint.sum(dim=(-2, -1), keepdim=True)


def iic_loss(p1: Tensor, p2: Tensor, *, alpha: float = 1.0) -> Tensor:
    """Invariant Information Clustering loss with a weighted marginal entropy.

    The loss is ``-sum_ij P_ij (log P_ij - alpha log P_i - alpha log P_j)``
    where ``P`` is :func:`joint_distribution` of the two views and ``P_i``,
    ``P_j`` its marginals. With ``alpha=1`` it is minus the mutual information
    ``I(z, z')`` of the paper; larger ``alpha`` adds ``(alpha - 1)`` times the
    entropies of the marginals, which pushes the clusters towards equal sizes
    and away from degenerate solutions.

    Parameters
    ----------
    p1 : Tensor of shape (..., n_samples, n_clusters)
        Soft assignments (softmax outputs) of the first view; leading
        dimensions (e.g. sub-heads) are batched.
    p2 : Tensor of shape (..., n_samples, n_clusters)
        Soft assignments of the second view.
    alpha : float, default=1.0
        Weight of the marginal entropy terms; 1 gives the paper's loss.

    Returns
    -------
    loss : Tensor of shape (...)
        The loss to minimise, one per leading index (a scalar for 2-D input).
        For ``alpha >= 0.5`` it is at least ``-(2 alpha - 1) log(n_clusters)``;
        below 0.5 it is at least 0, reached with every sample in one cluster.

    References
    ----------
    X. Ji, J. F. Henriques and A. Vedaldi, "Invariant Information Clustering
    for Unsupervised Image Classification and Segmentation", ICCV 2019.

    Examples
    --------
    Two views that always agree, spread evenly over two clusters, share
    ``log 2`` nats:

    >>> import torch
    >>> from skiic.losses import iic_loss
    >>> p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> round(-iic_loss(p, p).item(), 4)
    0.6931
    """
    return iic_loss_from_joint(joint_distribution(p1, p2), alpha=alpha)


def iic_loss_from_joint(joint: Tensor, *, alpha: float = 1.0) -> Tensor:
    """:func:`iic_loss` from an already accumulated joint distribution.

    The joint distribution is a sum over samples, so it can be accumulated
    over chunks of a data set too large for one batch, or all-reduced across
    processes, and the loss computed once from the total.

    Parameters
    ----------
    joint : Tensor of shape (..., n_clusters, n_clusters)
        Non-negative, symmetric; it is normalised to sum to one here.
    alpha : float, default=1.0
        Weight of the marginal entropy terms; 1 gives the paper's loss.

    Returns
    -------
    loss : Tensor of shape (...)
        As :func:`iic_loss`.

    Examples
    --------
    >>> import torch
    >>> from skiic.losses import iic_loss, iic_loss_from_joint
    >>> generator = torch.Generator().manual_seed(0)
    >>> p1, p2 = torch.softmax(torch.randn(2, 6, 3, generator=generator), dim=-1)
    >>> chunks = p1[:3].T @ p2[:3] + p1[3:].T @ p2[3:]
    >>> joint = (chunks + chunks.T) / 2
    >>> loss = iic_loss_from_joint(joint, alpha=2.0)
    >>> bool(torch.isclose(loss, iic_loss(p1, p2, alpha=2.0), atol=1e-6))
    True
    """
    joint = joint.float()
    joint = joint / joint.sum(dim=(-2, -1), keepdim=True)
    joint = joint.clamp_min(_EPS)
    marginal_i = joint.sum(dim=-1, keepdim=True)
    marginal_j = joint.sum(dim=-2, keepdim=True)
    return -(
        joint * (joint.log() - alpha * marginal_i.log() - alpha * marginal_j.log())
    ).sum(dim=(-2, -1))


def mutual_information(p1: Tensor, p2: Tensor) -> Tensor:
    """Mutual information in nats between the cluster assignments of two views.

    Equal to ``-iic_loss(p1, p2, alpha=1.0)``; between 0 and
    ``log(n_clusters)``.

    Parameters
    ----------
    p1 : Tensor of shape (..., n_samples, n_clusters)
        Soft assignments of the first view.
    p2 : Tensor of shape (..., n_samples, n_clusters)
        Soft assignments of the second view.

    Returns
    -------
    mi : Tensor of shape (...)
        The mutual information.

    Examples
    --------
    Two independent fair coins share no information:

    >>> import torch
    >>> from skiic.losses import mutual_information
    >>> p = torch.full((4, 2), 0.5)
    >>> abs(mutual_information(p, p).item()) < 1e-6
    True
    """
    return -iic_loss(p1, p2, alpha=1.0)


class IICLoss(nn.Module):
    """Module form of :func:`iic_loss`.

    Parameters
    ----------
    alpha : float, default=1.0
        Weight of the marginal entropy terms; 1 gives the paper's loss.

    Examples
    --------
    >>> import torch
    >>> from skiic.losses import IICLoss
    >>> p = torch.softmax(torch.randn(8, 3), dim=1)
    >>> IICLoss(alpha=2.0)(p, p).shape
    torch.Size([])
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, p1: Tensor, p2: Tensor) -> Tensor:
        return iic_loss(p1, p2, alpha=self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def _check_assignments(p1: Tensor, p2: Tensor) -> None:
    if p1.ndim < 2 or p1.shape != p2.shape:
        raise ValueError(
            "p1 and p2 must both have shape (..., n_samples, n_clusters); got "
            f"{tuple(p1.shape)} and {tuple(p2.shape)}."
        )
    if p1.shape[-2] == 0:
        raise ValueError("p1 and p2 hold no samples.")
