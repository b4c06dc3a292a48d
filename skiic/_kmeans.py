"""k-means on torch tensors, on whatever device the data lives.

DeepCluster re-clusters the whole data set every epoch, so k-means is its cost
centre. This module runs it where the features already are (a CUDA device
during GPU training), with the same algorithm as scikit-learn's ``KMeans``
(``algorithm="lloyd"``):

* greedy k-means++ seeding with ``2 + log(k)`` local trials per centre, drawn
  from torch's generator, so a seeded run repeats;
* Lloyd iterations whose point-to-centre distances are computed in chunks of
  rows by one matrix product each (memory ``chunk_size * n_clusters``);
* empty clusters relocated to the points farthest from their centres, as
  scikit-learn does, so every cluster keeps a member while the data has
  enough distinct points;
* stop when the labels no longer change or the total squared centre shift
  falls below ``tol`` times the mean feature variance; a last assignment step
  makes the labels match the returned centres;
* the best of ``n_init`` runs by inertia.

Distances are computed in float32 through ``|x|^2 - 2 x.c + |c|^2``; sums that
decide convergence and inertia are accumulated in float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["KMeansResult", "kmeans", "kmeans_plusplus", "assign"]

# Rows of the distance matrix computed at a time.
_CHUNK = 8192


class KMeansResult(NamedTuple):
    """Output of :func:`kmeans`."""

    centers: Tensor  # (n_clusters, n_features), float32
    labels: Tensor  # (n_samples,), int64
    inertia: float  # sum of squared distances to the assigned centres
    n_iter: int  # Lloyd iterations of the kept run


@torch.no_grad()
def assign(X: Tensor, centers: Tensor, *, chunk_size: int = _CHUNK):
    """Nearest centre of each sample and the squared distance to it.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        The samples.
    centers : Tensor of shape (n_clusters, n_features)
        The centres, on ``X``'s device.
    chunk_size : int, default=8192
        Rows of the distance matrix computed at a time.

    Returns
    -------
    labels : Tensor of shape (n_samples,), int64
        Index of the nearest centre (the lowest index on ties).
    distances : Tensor of shape (n_samples,), float32
        Squared Euclidean distance to that centre, clipped at zero.

    Examples
    --------
    >>> import torch
    >>> from skiic._kmeans import assign
    >>> X = torch.tensor([[0.0, 0.0], [0.9, 0.0], [5.0, 5.0]])
    >>> labels, dist = assign(X, torch.tensor([[0.0, 0.0], [5.0, 4.0]]))
    >>> labels.tolist(), [round(d, 2) for d in dist.tolist()]
    ([0, 0, 1], [0.0, 0.81, 1.0])
    """
    X = X.float()
    centers = centers.float()
    c_sq = (centers * centers).sum(dim=1)
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    distances = torch.empty(X.shape[0], dtype=torch.float32, device=X.device)
    for start in range(0, X.shape[0], chunk_size):
        rows = X[start : start + chunk_size]
        dist = torch.addmm(c_sq, rows, centers.T, alpha=-2.0)
        dist.add_((rows * rows).sum(dim=1, keepdim=True))
        best, index = dist.min(dim=1)
        labels[start : start + rows.shape[0]] = index
        distances[start : start + rows.shape[0]] = best.clamp_(min=0)
    return labels, distances


@torch.no_grad()
def kmeans_plusplus(
    X: Tensor, n_clusters: int, *, n_local_trials: int | None = None
) -> Tensor:
    """Greedy k-means++ seeding (Arthur and Vassilvitskii, 2007).

    The first centre is a uniformly drawn sample; each next one is the best,
    by the resulting potential (sum of squared distances to the closest
    centre), of ``n_local_trials`` candidates drawn with probability
    proportional to that squared distance, as in scikit-learn's
    ``kmeans_plusplus``. Random numbers come from torch's generator on
    ``X``'s device.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        The samples.
    n_clusters : int
        Number of centres, at most ``n_samples``.
    n_local_trials : int, default=None
        Candidates per centre; ``None`` means ``2 + int(log(n_clusters))``.

    Returns
    -------
    centers : Tensor of shape (n_clusters, n_features), float32
        Initial centres, all of them samples of ``X``.

    Examples
    --------
    >>> import torch
    >>> from skiic._kmeans import kmeans_plusplus
    >>> X = torch.tensor([[0.0], [0.1], [10.0], [10.1]])
    >>> _ = torch.manual_seed(0)
    >>> centers = kmeans_plusplus(X, 2)
    >>> sorted(round(c) for c in centers.ravel().tolist())
    [0, 10]
    """
    X = X.float()
    n_samples = X.shape[0]
    if not 0 < n_clusters <= n_samples:
        raise ValueError(
            f"n_clusters must be between 1 and n_samples={n_samples}; got {n_clusters}."
        )
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    device = X.device
    x_sq = (X * X).sum(dim=1)
    centers = torch.empty(n_clusters, X.shape[1], device=device)
    first = torch.randint(n_samples, (1,), device=device)
    centers[0] = X[first[0]]
    closest = _sq_distances(X, x_sq, X[first]).squeeze(1)
    for c in range(1, n_clusters):
        cumulative = closest.double().cumsum(0)
        total = cumulative[-1]
        draws = torch.rand(n_local_trials, device=device, dtype=torch.float64) * total
        candidates = torch.searchsorted(cumulative, draws).clamp_(max=n_samples - 1)
        if total <= 0:  # every sample sits on a centre: any sample will do
            candidates = torch.randint(n_samples, (n_local_trials,), device=device)
        dist = _sq_distances(X, x_sq, X[candidates])  # (n_samples, n_local_trials)
        potentials = torch.minimum(dist, closest[:, None]).double().sum(dim=0)
        best = int(potentials.argmin())
        closest = torch.minimum(closest, dist[:, best])
        centers[c] = X[candidates[best]]
    return centers


@torch.no_grad()
def kmeans(
    X: Tensor,
    n_clusters: int,
    *,
    init: Tensor | str = "k-means++",
    n_init: int = 1,
    max_iter: int = 300,
    tol: float = 1e-4,
    chunk_size: int = _CHUNK,
) -> KMeansResult:
    """Lloyd's k-means on a tensor's device, with scikit-learn's semantics.

    Parameters
    ----------
    X : Tensor of shape (n_samples, n_features)
        The samples; float32 is used for the distances.
    n_clusters : int
        Number of clusters, at most ``n_samples``.
    init : "k-means++" or Tensor of shape (n_clusters, n_features), \
            default="k-means++"
        Greedy k-means++ seeding (:func:`kmeans_plusplus`), or given centres
        (then ``n_init`` must be 1).
    n_init : int, default=1
        Runs from different seeds; the one with the lowest inertia is kept.
    max_iter : int, default=300
        Most Lloyd iterations per run.
    tol : float, default=1e-4
        Stop when the total squared shift of the centres is at most ``tol``
        times the mean variance of the features (as scikit-learn does).
    chunk_size : int, default=8192
        Rows of the distance matrix computed at a time.

    Returns
    -------
    KMeansResult
        ``centers``, ``labels``, ``inertia`` and ``n_iter`` of the best run.

    Notes
    -----
    A cluster left empty by an assignment step takes the sample farthest
    from its own centre (the next farthest for the next empty cluster), which
    leaves its old cluster, as in scikit-learn. With fewer distinct samples
    than clusters some clusters stay empty; their centres are then kept.

    Examples
    --------
    >>> import torch
    >>> from skiic._kmeans import kmeans
    >>> X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
    >>> _ = torch.manual_seed(0)
    >>> result = kmeans(X, 2, n_init=3)
    >>> len(set(result.labels[:2].tolist()) | set(result.labels[2:].tolist()))
    2
    >>> result.inertia
    1.0
    """
    X = X.float()
    n_samples = X.shape[0]
    if not 0 < n_clusters <= n_samples:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
    given = isinstance(init, Tensor)
    if given:
        if tuple(init.shape) != (n_clusters, X.shape[1]):
            raise ValueError(
                f"init has shape {tuple(init.shape)}; expected "
                f"({n_clusters}, {X.shape[1]})."
            )
        if n_init != 1:
            raise ValueError("n_init must be 1 when init gives the centres.")
    elif init != "k-means++":
        raise ValueError(f"init must be 'k-means++' or a tensor; got {init!r}.")
    threshold = tol * float(X.double().var(dim=0).mean()) if n_samples > 1 else 0.0
    best = None
    for _ in range(n_init):
        start = init.to(X.device).float() if given else kmeans_plusplus(X, n_clusters)
        result = _lloyd(X, start, max_iter, threshold, chunk_size)
        if best is None or result.inertia < best.inertia:
            best = result
    return best


def _lloyd(X, centers, max_iter, threshold, chunk_size):
    """One run of Lloyd's algorithm from ``centers``."""
    n_clusters = centers.shape[0]
    labels = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        new_labels, distances = assign(X, centers, chunk_size=chunk_size)
        sums, counts = _cluster_sums(X, new_labels, n_clusters)
        _relocate_empty(X, new_labels, distances, sums, counts)
        new_centers = torch.where(
            counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centers
        ).float()
        if labels is not None and torch.equal(new_labels, labels):
            centers = new_centers  # same assignments: the centres cannot move any more
            break
        shift = float(((new_centers.double() - centers.double()) ** 2).sum())
        centers, labels = new_centers, new_labels
        if shift <= threshold:
            break
    # The last assignment: labels that match the returned centres, and their
    # inertia (a relocated sample may sit as close to its old centre).
    labels, distances = assign(X, centers, chunk_size=chunk_size)
    inertia = float(distances.double().sum())
    return KMeansResult(centers, labels, inertia, n_iter)


def _cluster_sums(X, labels, n_clusters):
    sums = torch.zeros(n_clusters, X.shape[1], dtype=torch.float64, device=X.device)
    sums.index_add_(0, labels, X.double())
    counts = torch.bincount(labels, minlength=n_clusters).double()
    return sums, counts


def _relocate_empty(X, labels, distances, sums, counts):
    """Give each empty cluster the sample farthest from its centre (``labels``,
    ``sums`` and ``counts`` change in place)."""
    empty = torch.nonzero(counts == 0).flatten()
    n_empty = int(empty.numel())
    if n_empty == 0:
        return
    far = distances.topk(min(n_empty, X.shape[0])).indices
    far = far[distances[far] > 0]  # a sample on its centre would only move it
    for cluster, sample in zip(empty.tolist(), far.tolist()):
        old = labels[sample]
        point = X[sample].double()
        sums[old] -= point
        counts[old] -= 1
        sums[cluster] = point
        counts[cluster] = 1
        labels[sample] = cluster


def _sq_distances(X, x_sq, centers):
    """Squared distances (n_samples, n_centers), clipped at zero."""
    c_sq = (centers * centers).sum(dim=1)
    dist = torch.addmm(c_sq, X, centers.T, alpha=-2.0).add_(x_sq[:, None])
    return dist.clamp_(min=0)
