"""Invariant Information Clustering as a scikit-learn clusterer."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from torch import Tensor, nn

from . import _data, _distributed, _engine, _selflabel
from ._base import (
    FitPlan,
    _BaseDeepClusterer,
    count,
    principal_projection,
    resolve_max_epochs,
    signal_axes,
)
from ._device import forked_rng, torch_threads
from ._iic_heads import Selection, evaluate_heads, select_head
from ._validation import Interval, StrOptions, user_stacklevel
from .augment import (
    VirtualAdversarial,
    kl_divergence,
    sample_neighbors,
)
from .exceptions import ConvergenceWarning
from .losses import iic_loss_from_joint, soft_assignments
from .networks import MultiHeadNetwork, feature_width

# max_epochs="auto": about this many optimiser steps (on a GPU, on a CPU),
# within these epoch bounds.
_AUTO_STEPS, _AUTO_STEPS_CPU, _AUTO_MIN_EPOCHS, _AUTO_MAX_EPOCHS = 800, 560, 10, 100
# Fresh heads fitted for head selection when n_head_inits="auto" (GPU, CPU).
_AUTO_HEAD_INITS, _AUTO_HEAD_INITS_CPU = 50, 20
# n_neighbors="auto" on vectors: neighbours as partners below this many samples,
# each sample with its own adversarial view from it on (the vector panel).
_AUTO_NEIGHBOR_PAIRS_BELOW = 5_000
# n_init="auto" on vectors: this many candidate networks trained for this
# fraction of the epochs each; the one with the lowest loss trains on.
_AUTO_CANDIDATES, _CANDIDATE_FRACTION = 3, 0.2
# pca_components="auto": vectors of at least this many features are projected
# on this many principal axes (the vector panel).
_AUTO_PCA_FROM, _AUTO_PCA_COMPONENTS = 100, 50
# ... when these axes hold at least this share of the variance; wide vectors
# whose variance is spread (many noise features) keep every feature.
_AUTO_PCA_MIN_SHARE = 0.75
# Assignments whose information about the samples, I(X; Z), falls below this
# share of log(n_clusters) mean a network that learned nothing: 0.0008 nats of
# 2.30 after 3 epochs on 600 digit images, where every fit of the panel's
# sizes keeps 0.9 or more (iris, breast cancer, circles, noise alike).
_LEARNED_NOTHING = 0.1


class IICClustering(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, _BaseDeepClusterer
):
    """Invariant Information Clustering (IIC).

    A network maps each sample to a soft assignment over ``n_clusters``
    clusters and is trained to maximise the mutual information between the
    assignments of two views of the same sample. For images the views are
    random augmentations (affine, brightness, noise) generated on the device;
    for vectors they are the sample and a virtual adversarial view (the
    perturbation that most changes the network's prediction, within the
    sample's own neighbourhood) of the sample itself or, below 5,000 samples,
    of one of its nearest neighbours. An overclustering head with
    ``overclustering * n_clusters`` clusters is trained alongside and shapes
    the shared features; every head has ``n_heads`` sub-heads, and predictions
    come from the head with the lowest loss on the training data, chosen
    among the trained sub-heads and ``n_head_inits`` fresh heads fitted on the
    trained features (never with labels).

    Read more in the :ref:`User Guide <user_guide_iic>`.

    Parameters
    ----------
    n_clusters : int, default=10
        Number of clusters.
    alpha : float, default=2.0
        Weight of the marginal entropy terms of the loss (see
        :func:`skiic.losses.iic_loss`). 1 is the paper's loss; values from 2
        to 10 push towards clusters of equal size and away from degenerate
        solutions. It must exceed 0.5: below, the loss is lowest with every
        sample in one cluster, and at 0.5 it has no preference for more
        clusters.
    overclustering : int, default=5
        The overclustering head has ``overclustering * n_clusters`` clusters.
        1 trains no overclustering head.
    n_heads : int, default=5
        Sub-heads per head, trained with the network.
    n_head_inits : int or "auto", default="auto"
        Fresh linear heads fitted by the same loss on the trained network's
        frozen features after training. Together with the trained main
        sub-heads they are the candidates for prediction, and the one with
        the lowest loss on the training data wins; 0 keeps the trained
        sub-heads only. ``"auto"`` fits 50, except when each sample is paired
        with its own :class:`~skiic.augment.VirtualAdversarial` view
        (``n_neighbors=0``), where it fits none (why: see
        :ref:`iic_why_the_defaults`); images on a CPU get 20.
    n_init : int or "auto", default="auto"
        Initialisations of the network. An int trains that many in full and
        keeps the one whose selected head reaches the lowest loss (as in
        ``KMeans``). ``"auto"``: one for images; for vectors, cheap restarts:
        3 candidates each train a fifth of the epochs, and the one whose
        trained sub-heads reach the lowest loss trains on alone (about 1.4
        times one training).
    n_neighbors : int or "auto", default="auto"
        Nearest neighbours (Euclidean, computed once per fit) from which the
        partner of a sample, whose view is the second one, is drawn. 0 pairs
        each sample with itself. ``"auto"``: 0 for images; for vectors, 10
        below 5,000 samples and 0 from there on when the views are
        :class:`~skiic.augment.VirtualAdversarial` (the default; see
        :ref:`iic_why_the_defaults`), else 10. For wide vectors kept whole
        (see ``pca_components``) the partners are searched along the
        principal axes whose variance stands above the noise level. Rows
        that repeat count once: the neighbours (and the lengths of
        adversarial steps) are searched among the distinct rows, so a copy
        of a sample is never its partner, and "5,000 samples" means 5,000
        distinct rows (the rows of an ``np.memmap`` are not compared).
    augmentation : callable, VirtualAdversarial, None or "auto", default="auto"
        How the views are changed. A callable maps a batch tensor to a
        randomly changed batch and is applied to both views. A
        :class:`~skiic.augment.VirtualAdversarial` makes the second view the
        adversarial view of the partner (the first stays clean) and adds its
        consistency term to the loss. ``"auto"``:
        :class:`~skiic.augment.ImageAugmentation` for images and
        ``VirtualAdversarial()`` for vectors (with ``n_neighbors="auto"``:
        below 5,000 samples the adversarial view of one of the sample's 10
        nearest neighbours, from 5,000 on the sample's own; the table behind
        this rule is in :ref:`iic_why_the_defaults`;
        ``VirtualAdversarial(noise_floor=True)`` for wide vectors kept
        whole, see ``pca_components``);
        ``None``: no augmentation (then ``n_neighbors`` must be positive).
        The settings of skiic's augmentation objects are parameters of the
        estimator too, for grid searches: ``augmentation__eps``.
    self_labelling : bool or "auto", default="auto"
        Whether a self-labelling stage follows the main training: the
        network (backbone and the selected head) is trained with
        cross-entropy on augmented views of each cluster's most confident
        samples (a share growing from half to nine tenths of each cluster),
        drawn equally from every cluster, for four tenths of the main
        training's epochs at a tenth of ``lr`` (SCAN's self-labelling step,
        Van Gansbeke et al., 2020; labels are never used). The views are the
        ``augmentation``, or the sample's own adversarial view. ``"auto"``
        leaves it off: on the digits and MNIST, as images and as vectors, it
        gained nothing (see :ref:`iic_self_labelling`).
    pca_components : int, None or "auto", default="auto"
        Vectors are projected on this many principal axes (computed at fit
        on at most 50,000 of the scaled samples) before the network; the
        neighbour search and the adversarial views work in the projection.
        ``None`` keeps every feature. ``"auto"``: 50 (or one less than the
        number of samples, if fewer) for vectors of 100 features or more
        (flattened images such as MNIST's 784 pixels) when these axes hold at
        least 75 % of the variance, else ``None`` (see
        :ref:`iic_why_the_defaults`). Wide vectors kept whole (100 features
        or more, unprojected) get ``VirtualAdversarial(noise_floor=True)``
        views under ``augmentation="auto"``, and the partners drawn from
        their neighbours (``n_neighbors``) are searched along the principal
        axes whose variance stands above that of noise (a test on the
        covariance's eigenvalues), while the network and the adversarial
        step lengths see every feature. Images keep their pixels.
    input_shape : tuple of int, default=None
        ``(C, H, W)`` when ``X`` holds flattened images. Images given as
        (n, C, H, W) or (n, H, W) arrays need no ``input_shape``.
    module : torch.nn.Module, default=None
        Custom backbone mapping a batch (n, C, H, W) or (n, n_features) to
        features (n, width); it is copied, never trained in place. ``None``
        picks a convolutional network sized from the image shape (with half
        the channels when images train on a CPU) or an MLP.
    max_epochs : int or "auto", default="auto"
        Training epochs per initialisation. ``"auto"`` runs about 800
        optimiser steps, between 10 and 100 epochs (100 epochs for the
        1,797 digits at the default batch size, 10 for MNIST's 70,000);
        images on a CPU about 560 (80 epochs for the digits).
    batch_size : int, default=256
        Samples per optimiser step.
    device_memory_limit : int, str or "auto", default="auto"
        Largest training set, in bytes (or a string such as ``"2GB"``), that
        is copied to the device whole; larger data stays in host memory, or in
        its ``np.memmap``, and is streamed to the device batch by batch (rows
        gathered and pinned in a background thread while the device computes).
        ``"auto"``: half of the free GPU memory on CUDA; on the CPU, arrays
        are held whole (as one scaled float32 copy) and memmaps streamed.
    lr : float, default=1e-3
        Adam learning rate.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available, else the CPU.
    devices : list of str, "process_group" or None, default=None
        Train data-parallel, one process per listed device, e.g.
        ``["cuda:0", "cuda:1"]`` (NCCL) or ``["cpu", "cpu"]`` (gloo). Each
        process runs its shard of every global batch of ``batch_size``; the
        IIC joint distribution, the BatchNorm statistics and the gradients are
        summed over processes, so training equals one process on the same
        global batch. Scripts that use it must guard their top level with
        ``if __name__ == "__main__":``. ``"process_group"``: train on the
        default process group that already exists, e.g. in a script started by
        ``torchrun`` on several machines (every process calls ``fit`` on the
        same data; its device is its local GPU when ``device="auto"``).
        ``None`` trains in this process on ``device``.
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
        Seeds initialisation, batches, augmentations and neighbour draws.
        Runs on the CPU with the same seed and the same number of threads are
        identical (``n_threads="auto"`` may choose fewer on a busy machine;
        set it to an int for runs that repeat exactly).
    verbose : int, default=0
        When positive, print what the fit is doing and a table of per-epoch
        losses, with a per-batch progress bar in a terminal or a notebook.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample. Clusters are numbered by decreasing
        size, so the used ones are ``0 .. k-1``.
    n_iter_ : int
        Epochs run by the kept initialisation, the self-labelling stage's
        included.
    loss_ : float
        Loss (with ``alpha``) of the selected head on the training data, as
        measured when it was selected (before a self-labelling stage).
    head_losses_ : ndarray of shape (n_heads + n_fresh,)
        Loss of every candidate head of the kept initialisation: the trained
        main sub-heads first, then the fresh heads (``n_fresh`` of them:
        ``n_head_inits``, with ``"auto"`` resolved to 50, 20 for images on a
        CPU, or 0).
    best_head_ : int
        Index in ``head_losses_`` of the head used for prediction.
    history_ : skorch.history.History
        Per-epoch training log of the kept initialisation (``train_loss``;
        ``iic_loss``, its IIC part without the adversarial term; ``dur``, ...).
        Epochs of a self-labelling stage follow, with ``confident`` (the
        share of the samples it trains on) and the cross-entropy as
        ``train_loss``.
    module_ : torch.nn.Module
        The trained network (backbone and selected head), on the CPU.
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
    DeepClusterEstimator : DeepCluster, k-means pseudo-labels on learned features.
    sklearn.cluster.KMeans : The classic baseline.

    Notes
    -----
    Both views of a batch pass through the network separately, so BatchNorm
    statistics are never shared between them. The loss is computed in float32
    even under mixed precision on CUDA.

    References
    ----------
    X. Ji, J. F. Henriques and A. Vedaldi, "Invariant Information Clustering
    for Unsupervised Image Classification and Segmentation", ICCV 2019.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from skiic import IICClustering
    >>> from skiic.metrics import matched_accuracy
    >>> X, y = make_blobs(n_samples=300, centers=3, random_state=0)
    >>> iic = IICClustering(n_clusters=3, max_epochs=20, random_state=0)
    >>> labels = iic.fit_predict(X)
    >>> matched_accuracy(y, labels) > 0.9
    True
    >>> iic.predict_proba(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints: dict = {
        **_BaseDeepClusterer._parameter_constraints,
        # At or below 0.5 the loss is lowest with every sample in one cluster.
        "alpha": [Interval(Real, 0.5, None, closed="neither")],
        "overclustering": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "n_head_inits": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "n_init": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "augmentation": [callable, VirtualAdversarial, None, StrOptions({"auto"})],
        "self_labelling": ["boolean", StrOptions({"auto"})],
        "pca_components": [
            Interval(Integral, 1, None, closed="left"),
            None,
            StrOptions({"auto"}),
        ],
    }
    _collapse_hint = (
        "Try a larger alpha, more epochs or a smaller lr; identical or constant "
        "samples cannot be clustered."
    )
    _learning_loss = "iic_loss"

    def __init__(
        self,
        n_clusters=10,
        *,
        alpha=2.0,
        overclustering=5,
        n_heads=5,
        n_head_inits="auto",
        n_init="auto",
        n_neighbors="auto",
        augmentation="auto",
        self_labelling="auto",
        pca_components="auto",
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
        self.alpha = alpha
        self.overclustering = overclustering
        self.n_heads = n_heads
        self.n_head_inits = n_head_inits
        self.n_init = n_init
        self.n_neighbors = n_neighbors
        self.augmentation = augmentation
        self.self_labelling = self_labelling
        self.pca_components = pca_components
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

    def _fit_scaling(self, X, image_shape):
        """The base scaling, then, for wide vectors, a projection on their
        principal axes (``pca_components``)."""
        scaling = super()._fit_scaling(X, image_shape)
        n_components, min_share = self.pca_components, 0.0
        if n_components == "auto":
            wide = image_shape is None and X.shape[1] >= _AUTO_PCA_FROM
            # Fewer samples than axes (a small fold of wide data): the n - 1
            # axes that centred samples span (an n-th would be noise).
            n_axes = min(_AUTO_PCA_COMPONENTS, max(1, X.shape[0] - 1))
            n_components = n_axes if wide else None
            min_share = _AUTO_PCA_MIN_SHARE
        if n_components is None:
            return scaling
        if image_shape is not None:
            raise ValueError(
                f"pca_components={n_components} projects vectors; images keep "
                "their pixels. Pass pca_components=None (or 'auto') with images."
            )
        if n_components > min(X.shape):
            raise ValueError(
                f"pca_components={n_components} is more than the data has: "
                f"{X.shape[0]} samples of {X.shape[1]} features."
            )
        return principal_projection(
            X, scaling, n_components, self._seeds()[0], min_share=min_share
        )

    def _make_plan(self, X, image_shape, scaling):
        n_samples = X.shape[0]
        # Wide vectors the network sees whole: a step length beyond the
        # distance that noise features add to every pair, and partners
        # searched along the axes that stand above the noise.
        whole_wide = (
            image_shape is None
            and X.shape[1] >= _AUTO_PCA_FROM
            and scaling.projection is None
        )
        augment = self._resolve_augmentation(image_shape, noise_floor=whole_wide)
        # Copies count once for the neighbour rule too: a table of 150
        # points given 40 times is still a table of 150 points.
        distinct, n_distinct = self._distinct_rows(X, image_shape)
        n_neighbors = self._resolve_neighbors(n_distinct, image_shape)
        if (
            self.n_neighbors == "auto"
            and isinstance(augment, VirtualAdversarial)
            and n_distinct >= _AUTO_NEIGHBOR_PAIRS_BELOW
        ):
            n_neighbors = 0  # each sample with its own adversarial view
        if not _Views.searches(n_samples, n_neighbors, augment):
            distinct = None
        if n_neighbors == 0 and augment is None:
            raise ValueError(
                "With augmentation=None the second view must come from neighbours; "
                "set n_neighbors to a positive number."
            )
        # Images on a CPU: a compact default network, fewer steps and fresh
        # heads (measured on the digits; vectors train fast either way).
        on_cpu = self._images_on_cpu(image_shape)
        max_epochs = resolve_max_epochs(
            self.max_epochs,
            n_samples,
            self.batch_size,
            target_steps=_AUTO_STEPS_CPU if on_cpu else _AUTO_STEPS,
            low=_AUTO_MIN_EPOCHS,
            high=_AUTO_MAX_EPOCHS,
        )
        n_inits, candidate_epochs = _resolve_inits(self.n_init, image_shape, max_epochs)
        self_label_epochs = _resolve_self_labelling(self.self_labelling, max_epochs)
        seeds = self._seeds(n_inits + 2 + bool(candidate_epochs))
        init_seeds, view_seed = seeds[:n_inits], seeds[n_inits]
        self_label_seed = seeds[n_inits + 1]
        return _IICPlan(
            n_features=scaling.width(X.shape[1]),
            input_shape=image_shape,
            scaling=scaling,
            compact=on_cpu and self.module is None,
            max_epochs=max_epochs,
            candidate_epochs=candidate_epochs,
            continue_seed=seeds[-1] if candidate_epochs else None,
            self_label_epochs=self_label_epochs,
            self_label_seed=int(self_label_seed),
            augment=augment,
            n_neighbors=n_neighbors,
            n_head_inits=_resolve_head_inits(
                self.n_head_inits, augment, n_neighbors, on_cpu=on_cpu
            ),
            init_seeds=tuple(int(seed) for seed in init_seeds),
            view_seed=int(view_seed),
            search_axes=(
                signal_axes(X, scaling, self._seeds()[0])
                if whole_wide and n_neighbors
                else None
            ),
            distinct=distinct,
        )

    def _fit_core(self, X, plan, *, device, parallel=None):
        """Train ``n_init`` networks, keep the lowest loss, label the samples.

        Runs in the calling process, or in each process of a data-parallel run
        (``parallel``); the module comes back on the CPU.
        """
        parallel = parallel or _distributed.Parallel()
        data = self._place(X, device, plan.scaling, plan.input_shape)
        with forked_rng(plan.view_seed, device):
            views = _Views.build(
                data,
                plan.n_neighbors,
                plan.augment,
                progress=self._neighbor_progress(parallel, data.n_samples, plan),
                axes=plan.search_axes,
                distinct=plan.distinct,
            )
        if plan.candidate_epochs:
            trainings = [self._candidates(plan, data, views, device, parallel)]
        else:
            trainings = (
                self._training(plan, seed, number, data, views, device, parallel)
                for number, seed in enumerate(plan.init_seeds, start=1)
            )
        best = None
        for selection, module, history in trainings:
            if best is None or selection.loss < best[0].loss:
                best = (selection, module, history)
        selection, module, history = best
        # Keep the backbone and the selected head only: that is what predicts.
        module.heads = nn.ModuleList([selection.head.cpu()])
        if plan.self_label_epochs:
            module, more = self._self_label(
                plan, module, data, views, device, parallel, after=len(history)
            )
            history = _engine.join_histories(history, more)
        labels, information = _assign(module.to(device), data, device)
        return _IICResult(
            module.to("cpu"), history, selection, labels, data.streamed, information
        )

    def _resolve_augmentation(self, image_shape, *, noise_floor=False):
        """``augmentation``: "auto" is the virtual adversarial view for vectors
        (see :ref:`iic_why_the_defaults`; its step beyond the nearest
        neighbour with ``noise_floor``), the image augmentation for images."""
        if self.augmentation == "auto" and image_shape is None:
            return VirtualAdversarial(noise_floor=noise_floor)
        return super()._resolve_augmentation(image_shape)

    def _neighbor_progress(self, parallel, n_samples, plan):
        """Announce the neighbour searches (when there are any); their progress
        callback."""
        searches = _Views.searches(
            n_samples, plan.n_neighbors, plan.augment, plan.search_axes
        )
        both = len(searches) > 1
        for k, axes in searches:
            if axes is None:
                along = "among all features, for the step lengths" if both else None
            else:
                along = _along(axes.shape[1]) + (", for the partners" if both else "")
            self._neighbor_search_progress(
                parallel, k, n_samples, along=along, distinct=plan.distinct
            )
        return self._neighbor_search_progress(parallel, 0, n_samples)

    def _training(self, plan, seed, number, data, views, device, parallel):
        """One initialisation trained for ``plan.max_epochs``, and its head
        selection: (selection, module, history)."""
        self._say(
            parallel,
            f"training initialisation {number} of {len(plan.init_seeds)}: "
            f"{count(plan.max_epochs, 'epoch')}",
        )
        with forked_rng(seed, device):
            module = self._build_network(plan)
            module, history = self._train_network(
                module, plan.max_epochs, data, views, device, parallel
            )
            selection = self._select(plan, module, data, views, device, parallel)
        return selection, module.to("cpu"), history

    def _candidates(self, plan, data, views, device, parallel):
        """Cheap restarts: every initialisation trains ``plan.candidate_epochs``
        epochs, and the one whose best trained sub-head has the lowest loss on
        the training data (as in the head selection, without the adversarial
        term, which grows as predictions sharpen) trains on to
        ``plan.max_epochs``, then selects its head: (selection, module,
        history)."""
        n = len(plan.init_seeds)
        self._say(
            parallel,
            f"training {n} candidate initialisations for "
            f"{count(plan.candidate_epochs, 'epoch')} each",
        )
        best = None
        for seed in plan.init_seeds:
            with forked_rng(seed, device):
                module, history = self._train_network(
                    self._build_network(plan),
                    plan.candidate_epochs,
                    data,
                    views,
                    device,
                    parallel,
                )
                trained = module.to(device).heads[0]
                loss = float(
                    evaluate_heads(module, [trained], data, views, self.alpha).min()
                )
            module.to("cpu")
            loss = loss if math.isfinite(loss) else math.inf
            if best is None or loss < best[2]:
                best = (module, history, loss)
        module, history, loss = best
        rest = plan.max_epochs - plan.candidate_epochs
        self._say(
            parallel,
            f"training on the candidate of lowest loss ({loss:.4f}) for "
            f"{count(rest, 'more epoch')}",
        )
        with forked_rng(plan.continue_seed, device):
            if rest:
                # Measured against where the candidate started: the first
                # epoch's mean loss.
                module, more = self._train_network(
                    module,
                    rest,
                    data,
                    views,
                    device,
                    parallel,
                    reference=history[0]["train_loss"],
                    first_epoch=len(history) + 1,
                )
                history = _engine.join_histories(history, more)
            selection = self._select(plan, module, data, views, device, parallel)
        return selection, module.to("cpu"), history

    def _select(self, plan, module, data, views, device, parallel):
        """The head of lowest loss among the trained and fresh ones."""
        self._say(
            parallel,
            f"selecting the head by loss among {self.n_heads} trained and "
            f"{plan.n_head_inits} fresh ones",
        )
        return select_head(
            module.to(device),
            data,
            views,
            alpha=self.alpha,
            n_head_inits=plan.n_head_inits,
            device=device,
        )

    def _self_label(self, plan, module, data, views, device, parallel, *, after):
        """Train the backbone and the selected head on their own confident
        predictions, on the views of :meth:`_Views.strong`: (module, history)."""
        return self._train_on_confident(
            module,
            data,
            logits=_predicting_logits,
            augment=views.strong,
            epochs=plan.self_label_epochs,
            seed=plan.self_label_seed,
            n_samples=data.n_samples,
            device=device,
            parallel=parallel,
            after=after,
        )

    def _train_network(
        self,
        module,
        epochs,
        data,
        views,
        device,
        parallel,
        reference=None,
        first_epoch=1,
    ):
        """Train ``module`` for ``epochs`` epochs on the IIC objective."""
        objective = _IICObjective(data, views, alpha=self.alpha, parallel=parallel)
        return self._train(
            module,
            objective,
            data.n_samples,
            device,
            epochs,
            parallel=parallel,
            reference=reference,
            first_epoch=first_epoch,
        )

    def _fitted_attributes(self, plan, result):
        order, labels = self._order_clusters(result.labels)
        return {
            "labels_": labels,
            "streamed_": result.streamed,
            "head_losses_": result.selection.losses,
            "best_head_": int(np.argmin(result.selection.losses)),
            "loss_": result.selection.loss,
            "_cluster_order": order,
            "_view_seed": plan.view_seed,
            "_n_neighbors": plan.n_neighbors,
            "_augment": plan.augment,
            "_search_axes": plan.search_axes,
        }

    def predict(self, X):
        """Assign each sample of ``X`` to a cluster.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            New data, shaped like the training data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster of each sample.
        """
        return self.predict_proba(X).argmax(axis=1).astype(np.int64)

    def predict_proba(self, X):
        """Soft cluster assignments of the selected head.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            New data, shaped like the training data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Probability of each cluster; rows sum to one.
        """
        X = self._validate_predict_data(X)
        return self._proba(X)

    def transform(self, X):
        """Soft cluster assignments, as a transformer (same as ``predict_proba``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            New data, shaped like the training data.

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_clusters)
            Probability of each cluster.
        """
        return self.predict_proba(X)

    def score(self, X, y=None):
        """Mutual information (nats) between assignments of two views of ``X``.

        The second views are made as in training (augmentations for images;
        neighbours within ``X`` for vectors, or adversarial views whose lengths
        come from the nearest neighbours within ``X``) from a seed fixed at
        fit, so the score is repeatable. Higher is better and at most
        ``log(n_clusters)``; it lets ``GridSearchCV`` compare parameters
        without labels, but not settings that change the views themselves
        (``augmentation``, including ``VirtualAdversarial``'s ``eps``): milder
        views agree more easily.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Data to score, at least 2 samples.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            The mutual information of the selected sub-head on ``X``.
        """
        X = self._validate_predict_data(X)
        if X.shape[0] < 2:
            raise ValueError("score needs at least 2 samples to pair views.")
        device = self._predict_device()
        data = self._place(X, device, self._scaling, self.input_shape_)
        module = self._module_on(device)
        # n_threads holds here too, as in predict (and the neighbour search).
        with torch_threads(self.n_threads), forked_rng(self._view_seed, device):
            n_neighbors = min(self._n_neighbors, X.shape[0] - 1)
            views = _Views.build(
                data,
                n_neighbors,
                self._augment,
                axes=self._search_axes,
                distinct=_distinct_if_searched(X, n_neighbors, self._augment),
            )
            losses = evaluate_heads(module, [module.heads[0]], data, views, 1.0)
        return float(-losses[0])

    def _check_result(self, plan, result):
        super()._check_result(plan, result)
        bound = math.log(self.n_clusters)
        if result.information < _LEARNED_NOTHING * bound:
            warnings.warn(
                "The assignments carry almost no information about the samples "
                f"({result.information:.2g} nats, of at most log(n_clusters) = "
                f"{bound:.2f}): every cluster is about as likely as any other "
                "for every sample, so the network learned nothing to cluster "
                f"by. Train longer (max_epochs={self.max_epochs!r}) or with "
                f"another lr (now {self.lr:g}).",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
            )

    @property
    def _n_features_out(self):
        # The fitted clusters, not the parameter (set_params may have changed
        # it since); unfitted, the AttributeError means "not fitted".
        return len(self._cluster_order)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # always float32 out
        return tags

    # ---------------------------------------------------------------- helpers
    def _proba(self, X):
        proba = self._infer(X, lambda module, x: soft_assignments(module(x)[0][0]))
        return proba.numpy()[:, self._cluster_order]

    def _build_network(self, plan):
        backbone = self._backbone(plan)
        width = feature_width(backbone, plan.sample_shape)
        sizes = [self.n_clusters]
        if self.overclustering > 1:
            sizes.append(self.overclustering * self.n_clusters)
        return MultiHeadNetwork(backbone, width, sizes, n_heads=self.n_heads)


@dataclass(frozen=True, eq=False)
class _IICPlan(FitPlan):
    augment: object  # the resolved augmentation (callable, VirtualAdversarial or None)
    n_neighbors: int  # neighbours a second view is drawn from; 0: the sample itself
    n_head_inits: int  # fresh heads fitted for the head selection
    init_seeds: tuple[int, ...]  # one torch seed per initialisation (n_init)
    candidate_epochs: int  # cheap restarts: epochs of each candidate; 0: none
    continue_seed: int | None  # seeds the kept candidate's further training
    view_seed: int  # seeds the neighbour search and the views of score()
    search_axes: np.ndarray | None  # the axes the partners are searched along
    distinct: tuple | None  # _data.distinct_rows of X where it is searched, or None
    self_label_epochs: int  # epochs of the self-labelling stage; 0: none
    self_label_seed: int  # seeds the self-labelling stage


def _along(n_axes: int) -> str:
    """Where a neighbour search along ``n_axes`` signal axes runs, in words."""
    if n_axes == 1:
        return "along the one principal axis that stands above the noise level"
    return f"along the {n_axes} principal axes that stand above the noise level"


def _predicting_logits(module, x):
    """Logits of the head that predicts (the first sub-head of the first head)."""
    return module(x)[0][0]


def _resolve_self_labelling(self_labelling, max_epochs):
    """``self_labelling``: epochs of the self-labelling stage (0: none).

    "auto" turns it on for no data yet: on the image and vector panels it
    gained nothing (see :ref:`iic_self_labelling`).
    """
    if _selflabel.stage_wanted(self_labelling, auto=False):
        return _selflabel.self_label_epochs(max_epochs)
    return 0


class _IICResult(NamedTuple):
    module: nn.Module  # backbone and the selected head, on the CPU
    history: object  # skorch History of the kept initialisation
    selection: Selection  # the head selection of the kept initialisation
    labels: np.ndarray  # cluster of each training sample, as the head numbers them
    streamed: bool  # whether the data was streamed to the device
    information: float  # I(X; Z) of the assignments, nats (see _assign)


def _distinct_if_searched(X, n_neighbors, augment):
    """:func:`_data.distinct_rows` of ``X`` where the views search neighbours
    in it (partners, or the lengths of adversarial steps), else None."""
    if not _Views.searches(X.shape[0], n_neighbors, augment):
        return None
    return _data.distinct_rows_in_memory(X)


def _resolve_inits(n_init, image_shape, max_epochs):
    """``n_init``: (initialisations, epochs of each candidate or 0).

    An int trains that many initialisations in full. "auto" trains one for
    images; for vectors, ``_AUTO_CANDIDATES`` candidates of a fraction of the
    epochs each (at least one), the best of which trains on.
    """
    if n_init != "auto":
        return int(n_init), 0
    if image_shape is not None or max_epochs < 2:
        return 1, 0
    return _AUTO_CANDIDATES, max(1, round(_CANDIDATE_FRACTION * max_epochs))


def _resolve_head_inits(n_head_inits, augment, n_neighbors, *, on_cpu):
    """``n_head_inits``: "auto" fits none when each sample is paired with its own
    adversarial view, else 50 (20 for images on a CPU)."""
    if n_head_inits != "auto":
        return n_head_inits
    if isinstance(augment, VirtualAdversarial) and n_neighbors == 0:
        return 0
    return _AUTO_HEAD_INITS_CPU if on_cpu else _AUTO_HEAD_INITS


class _Views:
    """Pairs of views for IIC: a neighbour swap (vectors), then augmentation.

    With a :class:`VirtualAdversarial` augmentation the first view is the clean
    sample and the second the adversarial view of its partner, which needs
    the network (:meth:`second`); ``radius`` holds each sample's
    perturbation length.
    """

    def __init__(self, neighbors: Tensor | None, augment, radius=None) -> None:
        self.neighbors = neighbors
        self.adversarial = augment if isinstance(augment, VirtualAdversarial) else None
        self.augment = None if self.adversarial is not None else augment
        self.radius = radius

    @classmethod
    def build(
        cls, data, n_neighbors: int, augment, progress=None, axes=None, distinct=None
    ) -> _Views:
        """Neighbour lists and perturbation lengths of ``data``, as needed, from
        the searches of :meth:`searches` (``progress`` as for
        :func:`_data.neighbor_indices`); the lengths are measured on the
        samples themselves.

        ``distinct``, from :func:`_data.distinct_rows` of the samples, makes
        the searches run among the distinct rows: a copy of a sample is no
        neighbour of it (its view would be the sample itself, and its distance
        no step length), and copies share their neighbours (at most one fewer
        than the distinct rows).
        """
        searches = cls.searches(data.n_samples, n_neighbors, augment, axes)
        if not searches:
            return cls(None, augment)
        found = [
            _data.neighbor_indices(
                data, k, progress=progress, axes=along, distinct=distinct
            )
            for k, along in searches
        ]
        neighbors = found[0][:, :n_neighbors] if n_neighbors else None
        radius = None
        if isinstance(augment, VirtualAdversarial):
            radius = augment.radius(data, found[-1]).to(data.index_device)
        return cls(neighbors, augment, radius)

    @staticmethod
    def searches(n_samples: int, n_neighbors: int, augment, axes=None) -> list:
        """The neighbour searches :meth:`build` runs, as (neighbours per sample,
        axes to search along or None): one among the samples for the
        partners and, for adversarial views, the neighbour that sets the
        perturbation length; with ``axes`` and partners to find, the partners
        along the axes, then the lengths' neighbours among the samples."""
        rank = 0
        if isinstance(augment, VirtualAdversarial):
            rank = augment._radius_rank(n_samples)
        if axes is None or not n_neighbors:
            k = max(n_neighbors, rank)
            return [(k, None)] if k else []
        return [(n_neighbors, axes)] + ([(rank, None)] if rank else [])

    def partner_indices(self, idx: Tensor, generator=None) -> Tensor:
        """Index of each sample's partner: a random neighbour, or the sample."""
        if self.neighbors is None:
            return idx
        device = self.neighbors.device
        picked = sample_neighbors(self.neighbors, idx.to(device), generator=generator)
        return picked.to(idx.device)

    def plans(self, batches):
        """Turn batches of indices into ``(idx, partner_idx)`` plans.

        Partners are drawn from a generator of their own, seeded from torch's
        global one when planning starts, so the draws do not depend on how far
        ahead a streamed data source plans (prefetching).
        """
        generator = None
        if self.neighbors is not None:
            generator = _data.planning_generator(self.neighbors.device)
        for idx in batches:
            yield idx, self.partner_indices(idx, generator)

    def augmented(self, x: Tensor) -> Tensor:
        return x if self.augment is None else self.augment(x)

    def strong(self, module, x: Tensor, idx: Tensor, shard=lambda t: t) -> Tensor:
        """The views self-labelling trains on: the augmentation, or the
        sample's own adversarial view; drawn for the whole batch, as one
        process would, and cut to this process's ``shard``."""
        if self.adversarial is None:
            return shard(self.augmented(x))
        probe = shard(torch.randn(x.shape, device=x.device))
        radius = self.radius[idx.to(self.radius.device)].to(x.device)
        return self.adversarial.perturb(module, shard(x), shard(radius), probe=probe)

    def first(self, x: Tensor) -> Tensor:
        """The first view of a batch (the clean one for adversarial views)."""
        return x if self.adversarial is not None else self.augmented(x)

    def second(self, module, partner, partner_idx, *, clean=None, probe=None):
        """The second view of the partner batch.

        ``module`` maps a batch to head logits; only adversarial views use it
        (and ``clean``, its detached logits on ``partner`` when known, and
        ``probe``, the random start of the power iteration).
        """
        if self.adversarial is None:
            return self.augmented(partner)
        radius = self.radius[partner_idx.to(self.radius.device)].to(partner.device)
        return self.adversarial.perturb(
            module, partner, radius, clean=clean, probe=probe
        )


class _IICObjective(_engine.Objective):
    """Mean IIC loss over the sub-heads of every head group.

    Its batches are ``((idx, partner_idx), (x, partner))``: the partner
    indices are drawn when a batch is planned, so a streamed data source can
    fetch both sets of rows ahead of time.
    """

    def __init__(self, data, views: _Views, *, alpha: float, parallel=None) -> None:
        super().__init__()
        self.data = data
        self.views = views
        self.alpha = alpha
        self.parallel = parallel or _distributed.Parallel()
        self._iic_losses = []

    def on_epoch_begin(self, trainer):
        self._iic_losses = []

    def on_epoch_end(self, trainer):
        # The IIC part alone: the adversarial term grows as predictions
        # sharpen, so only this part shows whether the network learned.
        if self._iic_losses:
            mean = torch.stack(self._iic_losses).mean()
            trainer.history.record("iic_loss", float(mean))

    def batches(self, n_samples, batch_size, device):
        index_batches = _data.DeviceBatches(
            n_samples, batch_size, self.data.index_device
        )
        return _data.Epochs(lambda: self.data.load(self.views.plans(index_batches)))

    def forward(self, module: nn.Module, batch) -> Tensor:
        (_, partner_idx), (x, partner) = batch
        shard = self.parallel.shard
        adversarial = self.views.adversarial
        # Views of the whole (global) batch, then this process's shard of it.
        first = shard(self.views.first(x))
        first_logits = module(first)
        if adversarial is None:
            second = shard(self.views.augmented(partner))
        else:
            # The probe is drawn for the global batch, as one process would.
            probe = shard(torch.randn(partner.shape, device=partner.device))
            # Without neighbours the partner is the sample: reuse its logits.
            same = self.views.neighbors is None
            clean = [logits.detach() for logits in first_logits] if same else None
            second = self.views.second(
                module, shard(partner), shard(partner_idx), clean=clean, probe=probe
            )
        second_logits = module(second)
        loss, iic = 0.0, 0.0
        for logits1, logits2 in zip(first_logits, second_logits):
            p1 = soft_assignments(logits1)
            p2 = soft_assignments(logits2)
            joint = self.parallel.all_reduce(p1.transpose(-1, -2) @ p2)
            joint = (joint + joint.transpose(-1, -2)) / 2
            term = iic_loss_from_joint(joint, alpha=self.alpha).mean()
            iic, loss = iic + term, loss + term
            if adversarial is not None:
                # Mean over the global batch: this shard's sum, summed over processes.
                divergence = kl_divergence(logits1.detach().float(), logits2.float())
                divergence = self.parallel.all_reduce(divergence * logits1.shape[-2])
                loss = loss + adversarial.weight * divergence / x.shape[0]
        self._iic_losses.append(iic.detach().float())
        return loss


@torch.no_grad()
def _assign(module, data, device):
    """Cluster of every sample by the module's first head (eval mode), and the
    information (nats) these assignments carry about the samples: the entropy
    of the mean assignment less the mean entropy of one, I(X; Z)."""
    module.eval()
    totals = []  # summed assignments per cluster, then the summed entropy

    def label(x):
        p = soft_assignments(module(x)[0][0].float())
        entropy = -(p * p.clamp(min=1e-30).log()).sum()
        totals.append(torch.cat([p.sum(dim=0), entropy[None]]).double())
        return p.argmax(dim=1)

    labels = _data.map_samples(label, data, device)
    totals = torch.stack(totals).sum(dim=0)
    mean = totals[:-1] / data.n_samples
    information = float(
        -(mean * mean.clamp(min=1e-30).log()).sum() - totals[-1] / data.n_samples
    )
    return labels.cpu().numpy(), information
