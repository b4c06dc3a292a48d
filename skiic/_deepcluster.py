"""DeepCluster as a scikit-learn clusterer."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from numbers import Integral
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from . import _data, _distributed, _engine, _selflabel
from ._base import FitPlan, _BaseDeepClusterer, count, large_images, resolve_max_epochs
from ._device import forked_rng
from ._kmeans import _sq_distances, assign, kmeans
from ._validation import Interval, StrOptions
from .augment import (
    VirtualAdversarial,
    kl_divergence,
    sample_neighbors,
)
from .exceptions import TrainingError
from .networks import feature_width

# max_epochs="auto": about this many optimiser steps (fewer for images larger
# than 16x16 on a CPU), within these epoch bounds.
_AUTO_STEPS, _AUTO_STEPS_CPU, _AUTO_MIN_EPOCHS, _AUTO_MAX_EPOCHS = 750, 500, 10, 25
# Optimiser steps per epoch (per re-clustering) at least, on small data sets:
# the re-initialised head needs some steps to fit the new pseudo-labels.
_MIN_EPOCH_STEPS = 30
# n_pseudo_classes="auto": this many per cluster, and at least this many
# samples per pseudo-class on average.
_AUTO_PSEUDO_PER_CLUSTER, _AUTO_MIN_PSEUDO_SIZE = 10, 10
# k-means: Lloyd iterations of the per-epoch clustering (as DeepCluster's
# faiss k-means), and initialisations of the final partition.
_EPOCH_KMEANS_ITER, _FINAL_KMEANS_INIT = 20, 10
# PCA whitening: eigenvalues are regularised by this fraction of the largest,
# and features whose total variance is below this fraction of their mean
# square norm count as collapsed.
_WHITEN_EPS, _COLLAPSE_VARIANCE = 1e-2, 1e-8
# Self-labelling: epochs as a fraction of the main training's, and the
# temperature of the centroid classifier's logits (squared distances of unit
# vectors, between 0 and 4). On the digits (5 seeds) 0.5 to 2 did best, 0.1
# and 0.05 less well; 0.4 of the main epochs did worse than 0.2.
_SELF_LABEL_FRACTION, _SELF_LABEL_TEMPERATURE = 0.2, 0.5


class DeepClusterEstimator(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, _BaseDeepClusterer
):
    """DeepCluster: a network trained on its own k-means pseudo-labels.

    Every epoch the network's features of all samples are PCA-whitened and
    L2-normalised, clustered by k-means into ``n_pseudo_classes``
    pseudo-classes, the classifier head is re-initialised, and backbone and
    head are trained with cross-entropy to predict the pseudo-labels of
    augmented samples, with the pseudo-classes balanced. After training, the
    final features are whitened once more and k-means splits them into
    ``n_clusters`` clusters: ``labels_``, ``cluster_centers_``, ``predict``.
    For images, a short self-labelling stage then trains the network on each
    cluster's most confident samples, and k-means starts again from the
    centres it trained (``self_labelling``).

    Read more in the :ref:`User Guide <user_guide_deepcluster>`.

    Parameters
    ----------
    n_clusters : int, default=10
        Number of clusters of the final partition.
    n_pseudo_classes : int or "auto", default="auto"
        Pseudo-classes of the k-means run every epoch, at least
        ``n_clusters`` and at most ``n_samples``. DeepCluster trains with
        many more pseudo-classes than there are classes; ``"auto"`` uses
        ``10 * n_clusters``, lowered so that pseudo-classes average at least
        10 samples (but never below ``n_clusters``).
    n_components : int, default=16
        Dimensions kept by the PCA whitening of the features, before the L2
        normalisation; capped at the feature width. Each kept component is
        divided by ``sqrt(eigenvalue + 0.01 * largest eigenvalue)``: the
        regularisation keeps weak, noisy directions from being inflated to
        the weight of the strong ones (the paper keeps 256 of 4096
        dimensions, unregularised).
    balancing : {"sampling", "weights"} or None, default="sampling"
        How pseudo-classes of unequal size are balanced in training.
        ``"sampling"`` draws each epoch's samples uniformly over the
        non-empty pseudo-classes, then uniformly within one (the paper's
        choice); ``"weights"`` visits the samples in shuffled passes (an
        epoch is at least 30 batches, several passes on small data) and
        weights the cross-entropy by the inverse pseudo-class size; ``None`` does
        neither, which lets a giant pseudo-class dominate.
    n_neighbors : int or "auto", default="auto"
        In training, a sample is replaced by one of its ``n_neighbors``
        nearest neighbours (Euclidean, in the input space, computed once on
        the device), drawn at random, while keeping its own pseudo-label; 0
        trains on the sample itself. ``"auto"`` uses 10 for vector input,
        where it teaches the network that neighbours belong together, and 0
        for images, whose variations come from augmentation. Rows that
        repeat count once: the neighbours are searched among the distinct
        rows, so a copy of a sample never replaces it (the rows of an
        ``np.memmap`` are not compared).
    augmentation : callable, VirtualAdversarial, None or "auto", default="auto"
        Maps a batch tensor to a randomly changed batch, applied to the
        training samples (never to the samples clustered). ``"auto"``:
        :class:`skiic.augment.ImageAugmentation` for images and
        :class:`skiic.augment.VectorAugmentation` for vectors; ``None``: no
        augmentation. A :class:`~skiic.augment.VirtualAdversarial` leaves
        the training samples as they are and adds its ``weight`` times the
        divergence ``KL(p(x) || p(x + r))`` of the pseudo-class
        predictions to the loss, ``r`` its adversarial step (virtual
        adversarial training, as in IMSAT); not a default, measured on
        vectors in :ref:`deepcluster_adversarial`. The settings of skiic's
        augmentation objects are parameters of the estimator too, for grid
        searches: ``augmentation__rotation``.
    self_labelling : bool or "auto", default="auto"
        Whether a self-labelling stage follows the final k-means, as in
        :class:`IICClustering`: each cluster's most confident samples (by how
        much closer their features are to their own centre than to the next)
        become targets, and the backbone and the centres are trained with
        cross-entropy on augmented views of them (a share growing from half
        to nine tenths of each cluster, drawn equally from every cluster)
        for a fifth of the main training's epochs at a tenth of ``lr``; a
        short k-means started from the trained centres then gives the final
        partition. Labels are never used. ``"auto"`` runs it on images,
        where it raised the matched accuracy of every seed on the digits and
        on MNIST, for a sixth (digits) to a third (10,000 MNIST images) more
        time, and not on vectors, where it changed nothing (see
        :ref:`deepcluster_self_labelling`).
    input_shape : tuple of int, default=None
        ``(C, H, W)`` when ``X`` holds flattened images. Images given as
        (n, C, H, W) or (n, H, W) arrays need no ``input_shape``.
    module : torch.nn.Module, default=None
        Custom backbone mapping a batch (n, C, H, W) or (n, n_features) to
        features (n, width); it is copied, never trained in place. ``None``
        picks a convolutional network sized from the image shape or an MLP.
    max_epochs : int or "auto", default="auto"
        Epochs, each starting with a re-clustering. An epoch is a pass over
        the data, but at least 30 optimiser steps, so that on small data the
        fresh classifier head has time to fit each new set of pseudo-labels.
        ``"auto"`` runs about 750 steps, between 10 and 25 epochs (25 epochs
        for the 1,797 digits at the default batch size, 10 for MNIST's
        70,000); images larger than 16x16 on a CPU about 500 (13 epochs for
        10,000 MNIST images), where they reached the accuracy of 750.
    batch_size : int, default=256
        Samples per optimiser step.
    device_memory_limit : int, str or "auto", default="auto"
        Largest training set, in bytes (or a string such as ``"2GB"``), that
        is copied to the device whole; larger data stays in host memory, or in
        its ``np.memmap``, and is streamed to the device batch by batch (the
        feature pass of every epoch too), as in :class:`IICClustering`.
        ``"auto"``: half of the free GPU memory on CUDA; on the CPU, arrays
        are held whole (as one scaled float32 copy) and memmaps streamed.
    lr : float, default=1e-3
        Adam learning rate.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available, else the CPU.
        Training, the whitening and every k-means run on it.
    devices : list of str, "process_group" or None, default=None
        Train data-parallel, one process per listed device, e.g.
        ``["cuda:0", "cuda:1"]`` (NCCL) or ``["cpu", "cpu"]`` (gloo). Each
        process computes the features of its share of the samples; they are
        gathered so that every process runs the same k-means on all of them,
        then trains on its shard of every global batch of ``batch_size``, with
        BatchNorm statistics and gradients combined over processes: training
        equals one process on the same global batch. Scripts that use it must
        guard their top level with ``if __name__ == "__main__":``.
        ``"process_group"``: join the default process group that already
        exists, e.g. under ``torchrun``. ``None`` trains in this process.
    n_threads : int, "auto" or None, default="auto"
        CPU threads torch uses during ``fit`` and prediction; the caller's
        setting is restored afterwards. ``"auto"``: the cores this process may
        use (torch's setting, which follows ``OMP_NUM_THREADS`` and the limits
        joblib and Dask give their workers, capped by CPU affinity and cgroup
        quotas) less those other processes keep busy when the fit starts, at
        least 1, so that a busy machine does not slow training down many
        times over. ``None`` leaves torch's setting alone. With ``devices``,
        the processes on CPUs share these threads equally (at least one
        each); with ``"process_group"`` each process takes them.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, k-means, sampling and augmentation. Runs on the
        CPU with the same seed and number of threads are identical
        (``n_threads="auto"`` may choose fewer on a busy machine: set an int
        for runs that repeat exactly).
    verbose : int, default=0
        When positive, print what the fit is doing and a table of per-epoch
        losses, with a per-batch progress bar in a terminal or a notebook.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample. Clusters are numbered by decreasing
        size, so the used ones are ``0 .. k-1``.
    cluster_centers_ : ndarray of shape (n_clusters, ``n_components_``)
        Centres of the final k-means, in the whitened, L2-normalised feature
        space that :meth:`transform` returns, in the order of ``labels_``.
    inertia_ : float
        Sum of squared distances of the training samples' features to their
        closest centre.
    n_iter_ : int
        Training epochs run: the re-clustering epochs, then those of the
        self-labelling stage when it runs.
    n_pseudo_classes_ : int
        Pseudo-classes used in training.
    n_components_ : int
        Width of the whitened features.
    history_ : skorch.history.History
        Per-epoch training log: ``train_loss``, ``pseudo_label_nmi`` (NMI
        between this epoch's pseudo-labels and the previous epoch's, the
        paper's stability curve; NaN in the first epoch), ``kmeans_inertia``,
        ``largest_pseudo_class`` (fraction of samples in the largest
        pseudo-class), ``dur``, ...; the epochs of the self-labelling stage
        record ``train_loss`` and ``confident`` (the share of samples taken
        as targets).
    module_ : torch.nn.Module
        The trained network (backbone and classifier head), on the CPU.
    streamed_ : bool
        Whether the training data was streamed to the device batch by batch
        instead of copied whole (see ``device_memory_limit``).
    input_shape_ : tuple of int or None
        Image shape the model was fitted on, ``None`` for vectors.
    n_features_in_ : int
        Number of features (values per sample) seen during fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    IICClustering : Invariant Information Clustering.
    sklearn.cluster.KMeans : The classic baseline, and the clustering step here.

    Notes
    -----
    The k-means (greedy k-means++ seeding, Lloyd iterations with chunked
    distance computation, as in scikit-learn) and the whitening (an
    eigendecomposition of the feature covariance) run in torch on the
    training device, so on a GPU the features never leave it; each epoch
    clusters once (20 Lloyd iterations at most). Without self-labelling the
    final partition keeps the best of 10 k-means runs; after it, one k-means
    starts from the self-labelled centres.

    Empty clusters take the samples farthest from their centres, as in
    scikit-learn, so every pseudo-class holds samples while the features
    have enough distinct values. Giant pseudo-classes cannot dominate
    training: ``balancing`` gives every pseudo-class the same weight, and
    ``history_`` records the share of the largest one. Features that
    collapse to a point, or that are not finite, make ``fit`` raise
    :class:`skiic.exceptions.TrainingError`, as does a final partition with
    a single cluster; fewer clusters than ``n_clusters`` raise a
    ``ConvergenceWarning``.

    References
    ----------
    M. Caron, P. Bojanowski, A. Joulin and M. Douze, "Deep Clustering for
    Unsupervised Learning of Visual Features", ECCV 2018.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from skiic import DeepClusterEstimator
    >>> from skiic.metrics import matched_accuracy
    >>> X, y = make_blobs(n_samples=300, centers=3, random_state=0)
    >>> model = DeepClusterEstimator(n_clusters=3, max_epochs=10, random_state=0)
    >>> labels = model.fit_predict(X)
    >>> matched_accuracy(y, labels) > 0.9
    True
    >>> model.transform(X[:2]).shape
    (2, 16)
    >>> model.cluster_centers_.shape
    (3, 16)
    >>> staged = DeepClusterEstimator(
    ...     n_clusters=3, max_epochs=10, self_labelling=True, random_state=0
    ... ).fit(X)
    >>> staged.n_iter_  # 10 re-clustering epochs, then 2 of self-labelling
    12
    """

    _parameter_constraints: dict = {
        **_BaseDeepClusterer._parameter_constraints,
        "n_pseudo_classes": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "balancing": [StrOptions({"sampling", "weights"}), None],
        "augmentation": [callable, VirtualAdversarial, None, StrOptions({"auto"})],
        "self_labelling": ["boolean", StrOptions({"auto"})],
    }
    _comparable_epoch_losses = False  # new pseudo-labels and head every epoch
    _collapse_hint = (
        "Try a smaller lr or more pseudo-classes; identical or constant samples "
        "cannot be clustered."
    )

    def __init__(
        self,
        n_clusters=10,
        *,
        n_pseudo_classes="auto",
        n_components=16,
        balancing="sampling",
        n_neighbors="auto",
        augmentation="auto",
        self_labelling="auto",
        input_shape=None,
        module=None,
        max_epochs="auto",
        batch_size=256,
        device_memory_limit="auto",
        lr=1e-3,
        device="auto",
        devices=None,
        n_threads="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.n_pseudo_classes = n_pseudo_classes
        self.n_components = n_components
        self.balancing = balancing
        self.n_neighbors = n_neighbors
        self.augmentation = augmentation
        self.self_labelling = self_labelling
        self.input_shape = input_shape
        self.module = module
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.device_memory_limit = device_memory_limit
        self.lr = lr
        self.device = device
        self.devices = devices
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _make_plan(self, X, image_shape, scaling):
        n_samples = X.shape[0]
        # An epoch draws n_samples indices, or enough for _MIN_EPOCH_STEPS steps.
        n_draws = max(n_samples, _MIN_EPOCH_STEPS * self.batch_size)
        seed, self_label_seed = self._seeds(2)
        fewer_steps = self._images_on_cpu(image_shape) and large_images(image_shape)
        max_epochs = resolve_max_epochs(
            self.max_epochs,
            n_draws,
            self.batch_size,
            target_steps=_AUTO_STEPS_CPU if fewer_steps else _AUTO_STEPS,
            low=_AUTO_MIN_EPOCHS,
            high=_AUTO_MAX_EPOCHS,
        )
        augment = self._resolve_augmentation(image_shape)
        distinct, n_distinct = self._distinct_rows(X, image_shape)
        n_neighbors = self._resolve_neighbors(n_distinct, image_shape)
        if not _search_size(n_neighbors, augment, n_samples):
            distinct = None
        return _DeepClusterPlan(
            n_features=X.shape[1],
            input_shape=image_shape,
            scaling=scaling,
            compact=False,
            max_epochs=max_epochs,
            self_label_epochs=_resolve_self_labelling(
                self.self_labelling, max_epochs, images=image_shape is not None
            ),
            self_label_seed=self_label_seed,
            n_pseudo_classes=self._resolve_pseudo_classes(n_samples),
            augment=augment,
            n_draws=n_draws,
            n_neighbors=n_neighbors,
            distinct=distinct,
            seed=seed,
        )

    def _fit_core(self, X, plan, *, device, parallel=None):
        """Train, then cluster the final features; everything returned on the CPU.

        Runs in the calling process, or in each process of a data-parallel run
        (``parallel``).
        """
        parallel = parallel or _distributed.Parallel()
        data = self._place(X, device, plan.scaling, plan.input_shape)
        _, adversarial = _split_augmentation(plan.augment)
        n_neighbors = plan.n_neighbors
        k = _search_size(n_neighbors, plan.augment, data.n_samples)
        self._neighbor_search_progress(
            parallel, k, data.n_samples, distinct=plan.distinct
        )
        with forked_rng(plan.seed, device):
            indices = None
            if k:
                indices = _data.neighbor_indices(data, k, distinct=plan.distinct)
            neighbors = indices[:, :n_neighbors] if n_neighbors else None
            radius = None
            if adversarial is not None:
                radius = adversarial.radius(data, indices).to(data.index_device)
            backbone = self._backbone(plan)
            width = feature_width(backbone, plan.sample_shape)
            n_components = min(self.n_components, width)
            module = _DeepClusterNetwork(backbone, width, plan.n_pseudo_classes)
            objective = _DeepClusterObjective(
                data,
                n_pseudo_classes=plan.n_pseudo_classes,
                n_components=n_components,
                balancing=self.balancing,
                augment=plan.augment,
                neighbors=neighbors,
                radius=radius,
                parallel=parallel,
            )
            self._say(
                parallel,
                f"training {count(plan.max_epochs, 'epoch')}, each re-clustering the "
                f"features into {plan.n_pseudo_classes} pseudo-classes",
            )
            module, history = self._train(
                module,
                objective,
                plan.n_draws,
                device,
                plan.max_epochs,
                parallel=parallel,
            )
            self._say(parallel, f"k-means into {self.n_clusters} clusters")
            features = _features(module.to(device).backbone, data, device, parallel)
            with _clustering_threads(device):
                whitening = _Whitening.fit(features, n_components)
                clustering = kmeans(
                    whitening(features), self.n_clusters, n_init=_FINAL_KMEANS_INIT
                )
        if plan.self_label_epochs:
            module, clustering, more = self._self_label(
                plan,
                module,
                whitening,
                clustering,
                data,
                device,
                parallel,
                after=len(history),
            )
            history = _engine.join_histories(history, more)
        return _DeepClusterResult(
            module=module.to("cpu").eval(),
            history=history,
            whitening=whitening.to("cpu"),
            centers=clustering.centers.cpu().numpy(),
            labels=clustering.labels.cpu().numpy(),
            inertia=clustering.inertia,
            streamed=data.streamed,
        )

    def _self_label(
        self, plan, module, whitening, clustering, data, device, parallel, *, after
    ):
        """Train the backbone and the k-means centres on the confident samples
        of each cluster (:mod:`skiic._selflabel`), then re-run k-means from the
        trained centres: (module, clustering, history)."""
        classifier = _CentroidClassifier(
            module.to(device).backbone, whitening, clustering.centers
        )
        augment, _ = _split_augmentation(plan.augment)

        def views(_module, x, _idx, shard):
            return shard(x if augment is None else augment(x))

        classifier, history = self._train_on_confident(
            classifier,
            data,
            logits=lambda classifier, x: classifier(x),
            augment=views,
            epochs=plan.self_label_epochs,
            seed=plan.self_label_seed,
            n_samples=plan.n_draws,
            device=device,
            parallel=parallel,
            after=after,
        )
        module.backbone = classifier.backbone
        features = _features(module.to(device).backbone, data, device, parallel)
        with _clustering_threads(device):
            clustering = kmeans(
                whitening(features),
                self.n_clusters,
                init=classifier.centers.detach().to(device),
                max_iter=_EPOCH_KMEANS_ITER,
            )
        return module, clustering, history

    def _fitted_attributes(self, plan, result):
        order, labels = self._order_clusters(result.labels)
        return {
            "labels_": labels,
            "cluster_centers_": result.centers[order],
            "inertia_": result.inertia,
            "n_pseudo_classes_": plan.n_pseudo_classes,
            "n_components_": result.whitening.matrix.shape[1],
            "streamed_": result.streamed,
            "_whitening": result.whitening,
        }

    def predict(self, X):
        """Assign each sample of ``X`` to the cluster with the closest centre.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            New data, shaped like the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster of each sample.
        """
        Xt = self._transform(self._validate_predict_data(X))
        labels, _ = assign(Xt, torch.from_numpy(self.cluster_centers_))
        return labels.numpy().astype(np.int64)

    def transform(self, X):
        """Learned features: whitened and L2-normalised, as clustered.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            New data, shaped like the training data.

        Returns
        -------
        Xt : ndarray of shape (n_samples, ``n_components_``)
            Unit-norm features, in the space of ``cluster_centers_``.
        """
        return self._transform(self._validate_predict_data(X)).numpy()

    def score(self, X, y=None):
        """Opposite of the k-means inertia of ``X``'s features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Data to score.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            Minus the sum of squared distances of the features of ``X`` to
            their closest centre (higher is better, at most 0).
        """
        Xt = self._transform(self._validate_predict_data(X))
        _, distances = assign(Xt, torch.from_numpy(self.cluster_centers_))
        return -float(distances.double().sum())

    @property
    def _n_features_out(self):
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # always float32 out
        return tags

    # ---------------------------------------------------------------- helpers
    def _transform(self, X):
        """Whitened, normalised features of validated ``X`` (a CPU tensor)."""
        features = self._infer(X, lambda module, x: module.backbone(x))
        return self._whitening(features)

    def _resolve_pseudo_classes(self, n_samples):
        if self.n_pseudo_classes == "auto":
            wanted = min(
                _AUTO_PSEUDO_PER_CLUSTER * self.n_clusters,
                n_samples // _AUTO_MIN_PSEUDO_SIZE,
            )
            return int(min(max(wanted, self.n_clusters), n_samples))
        if self.n_pseudo_classes < self.n_clusters:
            raise ValueError(
                f"n_pseudo_classes={self.n_pseudo_classes} should be >= "
                f"n_clusters={self.n_clusters}."
            )
        if self.n_pseudo_classes > n_samples:
            raise ValueError(
                f"n_samples={n_samples} should be >= "
                f"n_pseudo_classes={self.n_pseudo_classes}."
            )
        return int(self.n_pseudo_classes)


def _search_size(n_neighbors: int, augment, n_samples: int) -> int:
    """Neighbours the one search of a fit finds (0: none): for the swap and
    for the adversarial step's length."""
    _, adversarial = _split_augmentation(augment)
    if adversarial is None:
        return n_neighbors
    return max(n_neighbors, adversarial._radius_rank(n_samples))


@dataclass(frozen=True, eq=False)
class _DeepClusterPlan(FitPlan):
    n_pseudo_classes: int  # pseudo-classes of the per-epoch k-means
    augment: object  # the resolved augmentation (callable, VirtualAdversarial or None)
    n_draws: int  # samples drawn per epoch
    n_neighbors: int  # neighbours a training sample is swapped with; 0: none
    distinct: tuple | None  # _data.distinct_rows of X where it is searched, or None
    seed: int  # torch seed of initialisation, batches and augmentations
    self_label_epochs: int  # epochs of the self-labelling stage; 0: none
    self_label_seed: int  # torch seed of the self-labelling stage


class _DeepClusterResult(NamedTuple):
    module: nn.Module  # the trained network, on the CPU
    history: object  # skorch History
    whitening: _Whitening  # the final whitening of the features
    centers: np.ndarray  # k-means centres in the whitened feature space
    labels: np.ndarray  # cluster of each training sample, as k-means numbers them
    inertia: float  # k-means inertia of the final partition
    streamed: bool  # whether the data was streamed to the device


class _DeepClusterNetwork(nn.Module):
    """A backbone and the linear classifier over the pseudo-classes."""

    def __init__(self, backbone: nn.Module, width: int, n_pseudo_classes: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(width, n_pseudo_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Pseudo-class logits of shape (n, n_pseudo_classes)."""
        return self.head(self.backbone(x))


class _CentroidClassifier(nn.Module):
    """The k-means partition as a classifier: a backbone, the fixed whitening
    and trainable centres. The logits are minus the squared distances of the
    whitened, normalised features to the centres, divided by ``temperature``,
    so their argmax is the nearest centre and the margin between the top two
    is how much closer the nearest centre is than the next."""

    def __init__(
        self,
        backbone: nn.Module,
        whitening: _Whitening,
        centers: Tensor,
        temperature: float = _SELF_LABEL_TEMPERATURE,
    ):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", whitening.mean.detach().clone())
        self.register_buffer("matrix", whitening.matrix.detach().clone())
        self.centers = nn.Parameter(centers.detach().float().clone())
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        z = _Whitening(self.mean, self.matrix)(self.backbone(x))
        squared = _sq_distances(z, (z * z).sum(dim=1), self.centers.float())
        return -squared / self.temperature


def _resolve_self_labelling(self_labelling, max_epochs, *, images):
    """``self_labelling``: epochs of the self-labelling stage (0: none), a
    fifth of the main training's (a stage step costs as much as a main one).

    "auto" turns it on for images, where it raised every seed on the digits
    and MNIST, and leaves it off for vectors, where it changed nothing (see
    :ref:`deepcluster_self_labelling`).
    """
    if _selflabel.stage_wanted(self_labelling, auto=images):
        return max(1, round(_SELF_LABEL_FRACTION * max_epochs))
    return 0


class _Whitening(NamedTuple):
    """PCA whitening followed by L2 normalisation of the rows."""

    mean: Tensor  # (width,)
    matrix: Tensor  # (width, n_components): eigenvectors / sqrt(eigenvalues)

    @classmethod
    @torch.no_grad()
    def fit(cls, features: Tensor, n_components: int) -> _Whitening:
        """Fit on ``features`` (n, width); raise TrainingError if they collapsed."""
        mean = features.mean(dim=0)
        # A NaN or an infinity in a column reaches its mean: no pass of its own.
        if not bool(torch.isfinite(mean).all()):
            raise TrainingError(
                "Training diverged: the network's features are not finite. Try a "
                "smaller lr or check the input scale."
            )
        n = features.shape[0]
        centred = features - mean
        cov = (centred.T @ centred).double() / max(n - 1, 1)
        if not bool(torch.isfinite(cov).all()):  # finite features, squares not
            raise TrainingError(
                "Training diverged: the network's features are too large for "
                "float32. Try a smaller lr or check the input scale."
            )
        # The mean squared norm of the rows, from what is at hand: no float64
        # copy of the features.
        scale = float(cov.diagonal().sum() * (n - 1) / n + (mean.double() ** 2).sum())
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        eigenvalues = eigenvalues.flip(0).clamp(min=0)[:n_components]
        eigenvectors = eigenvectors.flip(1)[:, :n_components]
        if float(eigenvalues.sum()) <= _COLLAPSE_VARIANCE * scale or scale == 0:
            raise TrainingError(
                "Training collapsed: the network maps every sample to the same "
                "features. Try a smaller lr; identical or constant samples cannot "
                "be clustered."
            )
        eps = _WHITEN_EPS * eigenvalues[0]
        matrix = eigenvectors / torch.sqrt(eigenvalues + eps)
        return cls(mean.float(), matrix.float())

    def __call__(self, features: Tensor) -> Tensor:
        """Whitened, unit-norm rows of ``features`` (n, n_components)."""
        return F.normalize((features.float() - self.mean) @ self.matrix, dim=1)

    def to(self, device) -> _Whitening:
        return _Whitening(self.mean.to(device), self.matrix.to(device))


def _split_augmentation(augment):
    """``(callable, adversarial)``: the augmentation applied to the training
    samples and the :class:`VirtualAdversarial` whose term joins the loss;
    either is None."""
    if isinstance(augment, VirtualAdversarial):
        return None, augment
    return augment, None


class _DeepClusterObjective(_engine.Objective):
    """Cross-entropy on pseudo-labels that are re-computed every epoch.

    ``data`` is a resident or streamed data source (:mod:`skiic._data`).
    With ``parallel``, every process draws the same global batches, computes
    the features of its share of the samples for the k-means (gathered, so
    that all processes cluster the same features the same way) and the loss
    of its shard of each batch.
    """

    def __init__(
        self,
        data,
        *,
        n_pseudo_classes: int,
        n_components: int,
        balancing: str | None,
        augment,
        neighbors: Tensor | None = None,
        radius: Tensor | None = None,
        parallel=None,
    ) -> None:
        super().__init__()
        self.neighbors = neighbors
        # A VirtualAdversarial adds its term to the loss; ``radius``: the
        # length of each sample's step.
        augment, self.adversarial = _split_augmentation(augment)
        self.radius = radius
        self.data = _data.ResidentData(data) if isinstance(data, Tensor) else data
        self.n_pseudo_classes = n_pseudo_classes
        self.n_components = n_components
        self.balancing = balancing
        self.augment = augment
        self.parallel = parallel or _distributed.Parallel()
        self.labels: Tensor | None = None
        self.class_weights: Tensor | None = None

    def forward(self, module: nn.Module, batch) -> Tensor:
        idx, x = batch
        if self.augment is not None:
            x = self.augment(x)  # the global batch, as one process would see it
        n_global = x.shape[0]
        probe = None
        if self.adversarial is not None:
            # Drawn for the global batch, as one process would.
            probe = self.parallel.shard(torch.randn(x.shape, device=x.device))
        x = self.parallel.shard(x)
        labels = self.parallel.shard(self.labels[idx])
        logits = module(x).float()
        total = F.cross_entropy(
            logits, labels, weight=self.class_weights, reduction="sum"
        )
        weight = (
            total.new_tensor(float(labels.numel()))
            if self.class_weights is None
            else self.class_weights[labels].sum()
        )
        smoothness = 0.0
        if self.adversarial is not None:
            smoothness = self._adversarial_term(module, x, idx, logits, probe, n_global)
        if not self.parallel.active:
            return total / weight + smoothness
        # Each process's share of the global mean, times the number of
        # processes (the engine averages the gradients); the value reported
        # is the global mean itself.
        sums = self.parallel.all_reduce(torch.stack([total, weight]).detach())
        share = total * self.parallel.world_size / sums[1]
        return share + (sums[0] / sums[1] - share).detach() + smoothness

    def _adversarial_term(self, module, x, idx, logits, probe, n_global):
        """``weight`` times the mean divergence between the predictions on this
        shard ``x`` and on its adversarial views, over the global batch.

        The step length is that of the batch's own samples (``idx``), whose
        neighbours ``x`` may be.
        """
        adversarial = self.adversarial
        radius = self.parallel.shard(self.radius[idx.to(self.radius.device)])
        clean = logits.detach()
        moved = adversarial.perturb(
            _LogitList(module),
            x,
            radius.to(x.device),
            clean=[clean],
            probe=probe,
        )
        # This shard's sum, summed over the processes, over the global batch.
        divergence = kl_divergence(clean, module(moved).float()) * x.shape[0]
        divergence = self.parallel.all_reduce(divergence)
        return adversarial.weight * divergence / n_global

    def batches(self, n_samples: int, batch_size: int, device: torch.device):
        """Batches ``(idx, x)`` of one epoch; ``n_samples`` is its number of draws."""
        index_batches = _PseudoLabelBatches(
            self, n_samples, batch_size, balanced=self.balancing == "sampling"
        )
        return _data.Epochs(lambda: self._load(index_batches))

    def _load(self, index_batches):
        """Each batch's indices with its samples, fetched through the data source
        (prefetched when streamed). For vectors the samples are a random
        neighbour of each index, drawn for the whole epoch at once."""
        batches = list(index_batches)
        sources = torch.cat(batches)
        if self.neighbors is not None:
            sources = sample_neighbors(self.neighbors, sources)
        # One copy per epoch to where the data source wants its indices (the
        # CPU when streamed), not one synchronising copy per batch.
        sources = sources.to(self.data.index_device).split([len(b) for b in batches])
        plans = ((source,) for source in sources)
        for idx, (_, (x,)) in zip(batches, self.data.load(plans)):
            yield idx, x

    @torch.no_grad()
    def on_epoch_begin(self, trainer: _engine.Trainer) -> None:
        """Re-cluster the features and re-initialise the classifier head."""
        module = trainer.module_
        device = self.data.device
        features = _features(module.backbone, self.data, device, self.parallel)
        with _clustering_threads(device):
            whitened = _Whitening.fit(features, self.n_components)(features)
            result = kmeans(
                whitened, self.n_pseudo_classes, max_iter=_EPOCH_KMEANS_ITER
            )
        labels = result.labels
        counts = torch.bincount(labels, minlength=self.n_pseudo_classes)
        if self.balancing == "weights":
            self.class_weights = 1.0 / counts.clamp(min=1).float()
        nmi = (
            math.nan
            if self.labels is None
            else float(_nmi(self.labels, labels, self.n_pseudo_classes))
        )
        self.labels = labels
        # a fresh classifier for the new pseudo-classes, with fresh Adam state
        module.head.reset_parameters()
        for parameter in module.head.parameters():
            trainer.optimizer_.state.pop(parameter, None)
        module.train()
        trainer.history.record("pseudo_label_nmi", nmi)
        trainer.history.record("kmeans_inertia", result.inertia)
        trainer.history.record(
            "largest_pseudo_class", float(counts.max()) / labels.shape[0]
        )


class _LogitList(nn.Module):
    """``module``'s logits as the list of one tensor that
    :meth:`VirtualAdversarial.perturb` takes. A module, not a function: the
    probe pass then leaves ``module``'s BatchNorm running statistics alone."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.training = module.training

    def forward(self, z: Tensor) -> list[Tensor]:
        return [self.module(z).float()]


class _PseudoLabelBatches:
    """An epoch of ``n_draws // batch_size`` index batches.

    With ``balanced`` each draw picks a non-empty pseudo-class uniformly,
    then a sample of it uniformly, with replacement (as the paper's sampler
    does for small pseudo-classes); otherwise the epoch is made of shuffled
    passes over all samples, cut at ``n_draws``. Batches are split like
    :class:`skiic._data.DeviceBatches`. The pseudo-labels are read from the
    objective when the epoch starts.
    """

    def __init__(self, objective, n_draws, batch_size, balanced):
        self.objective = objective
        self.n_draws = n_draws
        self.n_steps = max(1, n_draws // batch_size)
        self.balanced = balanced

    def __len__(self) -> int:
        return self.n_steps

    def __iter__(self):
        labels = self.objective.labels
        device = labels.device
        if self.balanced:
            counts = torch.bincount(labels, minlength=self.objective.n_pseudo_classes)
            order = torch.argsort(labels, stable=True)
            starts = torch.cumsum(counts, 0) - counts
            classes = torch.nonzero(counts).flatten()
            n = self.n_draws
            drawn = classes[torch.randint(classes.numel(), (n,), device=device)]
            offset = (torch.rand(n, device=device) * counts[drawn]).long()
            offset = torch.minimum(offset, counts[drawn] - 1)
            idx = order[starts[drawn] + offset]
        else:
            n_samples = labels.shape[0]
            passes = -(-self.n_draws // n_samples)
            idx = torch.cat(
                [torch.randperm(n_samples, device=device) for _ in range(passes)]
            )[: self.n_draws]
        yield from torch.tensor_split(idx, self.n_steps)


def _clustering_threads(device: torch.device):
    """One CPU thread for the whitening and k-means, on the CPU only.

    They are made of many small operations, and on a busy machine the
    synchronisation of several threads costs far more than it saves (two
    orders of magnitude for the digits on two shared cores), so they run on
    one thread, the way scikit-learn's ``KMeans`` limits its BLAS threads.
    The previous limits are restored on exit.
    """
    if device.type != "cpu":
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


@torch.no_grad()
def _features(backbone: nn.Module, data, device: torch.device, parallel=None) -> Tensor:
    """Backbone features (float32, on the device) of all samples, in eval mode.

    ``data`` is a data source (resident or streamed), read in chunks
    (prefetched when streamed). With ``parallel`` each process computes its
    share of the samples and the shares are gathered, in order, everywhere.
    """
    parallel = parallel or _distributed.Parallel()
    backbone.eval()
    indices = parallel.shard(torch.arange(data.n_samples, device=data.index_device))
    features = _data.map_samples(lambda x: backbone(x).float(), data, device, indices)
    return parallel.all_gather(features)


def _nmi(first: Tensor, second: Tensor, n_classes: int) -> Tensor:
    """NMI (arithmetic mean of the entropies) of two labelings, on their device.

    The same value as :func:`sklearn.metrics.normalized_mutual_info_score`,
    computed from the contingency table with one ``bincount``.
    """
    n = first.shape[0]
    joint = torch.bincount(first * n_classes + second, minlength=n_classes**2)
    joint = joint.double().view(n_classes, n_classes) / n
    p1, p2 = joint.sum(dim=1), joint.sum(dim=0)
    nz = joint > 0
    mi = (joint[nz] * (joint[nz] / (p1[:, None] * p2[None, :])[nz]).log()).sum()
    h1 = -(p1[p1 > 0] * p1[p1 > 0].log()).sum()
    h2 = -(p2[p2 > 0] * p2[p2 > 0].log()).sum()
    denom = (h1 + h2) / 2
    if float(denom) == 0:  # both single-cluster: identical partitions
        return torch.ones((), dtype=torch.float64, device=first.device)
    return (mi / denom).clamp(0, 1)
