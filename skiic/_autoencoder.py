"""A deep autoencoder as a scikit-learn transformer."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted
from skorch.callbacks import EarlyStopping
from torch import Tensor, nn

from . import _data, _distributed, _engine
from ._base import FitPlan, _BaseDeepEstimator, count, large_images, resolve_max_epochs
from ._device import forked_rng
from ._validation import Interval, StrOptions
from .augment import ImageAugmentation, sample_neighbors
from .exceptions import TrainingError
from .networks import AutoEncoder, feature_width, make_decoder

# max_epochs="auto": about this many optimiser steps (fewer for images larger
# than 16x16 on a CPU), within these epoch bounds.
_AUTO_STEPS, _AUTO_STEPS_CPU, _AUTO_MIN_EPOCHS, _AUTO_MAX_EPOCHS = 3000, 800, 10, 200
# augmentation="auto" on images whose smaller side exceeds 16 pixels: the
# default views plus an elastic distortion of this strength (MNIST: codes that
# cluster better; on 8x8 digits a field drawn at 4x4 points already bent on
# the scale of a stroke, and it lost there).
_AUTO_ELASTIC, _AUTO_ELASTIC_ABOVE_SIDE = 0.07, 16
# Codes of this many samples checked for being finite after training (every
# sample's where the whitening needs them anyway).
_FINITE_CHECK_SAMPLES = 1024


class AutoEncoderEmbedder(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, _BaseDeepEstimator
):
    """Deep autoencoder: non-linear embedding and reconstruction.

    An encoder network maps each sample to ``n_components`` codes and a
    decoder that mirrors it maps the codes back to the input; both are trained
    together to minimise the mean squared reconstruction error. ``transform``
    returns the codes, ``inverse_transform`` the reconstructions, so the
    estimator stands where :class:`~sklearn.decomposition.PCA` would, with a
    non-linear map. Images get a convolutional encoder sized from their shape
    and a decoder that upsamples back to exactly that shape; vectors get a
    fully connected encoder and decoder.

    Read more in the :ref:`User Guide <user_guide_autoencoder>`.

    Parameters
    ----------
    n_components : int, default=10
        Width of the codes (the bottleneck). 2 or 3 give embeddings that can
        be plotted.
    latent : {"whitened", "linear", "tanh"}, default="whitened"
        ``"linear"``: the codes are a linear map of the encoder's features,
        standardised per component by a batch normalisation without learned
        scale (while training, on each batch of augmented samples; after it,
        with its running statistics, so that the codes of the training data
        have roughly, not exactly, zero mean and unit variance);
        ``"whitened"``: these codes decorrelated as well, after training, by
        the principal axes of the codes of every sample given to ``fit``
        (those that ``early_stopping`` holds out included), each divided by
        its standard deviation (as ``PCA(whiten=True)`` does), so that their
        covariance over these samples is the identity and no direction
        dominates the distances that, e.g., ``KMeans`` computes
        (``inverse_transform`` undoes it; see :ref:`autoencoder_codes`);
        ``"tanh"``: the linear codes squashed into (-1, 1).
    augmentation : callable, "auto" or None, default="auto"
        Corrupts each training batch on the device before it is encoded,
        while the loss compares the reconstruction with the clean batch (a
        denoising autoencoder); it maps a tensor batch (n, C, H, W) or
        (n, n_features) of scaled samples to one of the same shape.
        ``"auto"``: :class:`skiic.augment.ImageAugmentation` (small random
        affine transforms, brightness, noise; for images whose smaller side
        exceeds 16 pixels also a smooth elastic distortion, ``elastic=0.07``,
        which a custom ``ImageAugmentation`` leaves out unless it sets it)
        for images and
        :class:`skiic.augment.VectorAugmentation` (feature noise and masking)
        for vectors; ``None`` trains a plain autoencoder. The settings of
        skiic's augmentation objects are parameters of the estimator too, for
        grid searches: ``augmentation__elastic``.
    n_neighbors : int, default=0
        When positive, the network encodes one of the sample's
        ``n_neighbors`` nearest neighbours (Euclidean, among the training
        samples, searched once per fit; at most all the others), corrupted
        by the ``augmentation``, and still reconstructs the sample itself, so
        that samples of one neighbourhood get nearby codes. ``0`` encodes the
        sample's own corrupted copy. On vectors whose neighbours mostly share
        their group it makes codes cluster better (flat digits: 0.841 against
        0.791 matched accuracy of ``KMeans`` on the codes, with
        ``n_neighbors=20``), but where groups overlap it can cost much
        (breast cancer: 0.840 against 0.942), so it is off by default;
        choose it with labels on a sample (see :ref:`autoencoder_neighbours`).
        Rows that repeat count once: the neighbours are searched among the
        distinct training rows, so a copy of a sample is never its
        neighbour (the rows of an ``np.memmap`` are not compared).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training samples, record their
        reconstruction error after each epoch as ``valid_loss`` in
        ``history_``, stop when it has not improved for ``n_iter_no_change``
        epochs, and keep the weights of the best epoch.
    validation_fraction : float, default=0.1
        Fraction of the samples held out when ``early_stopping`` is True.
    n_iter_no_change : int, default=10
        Epochs without improvement of the validation error before stopping.
    tol : float, default=1e-4
        Smallest relative decrease of the validation error counted as an
        improvement.
    input_shape : tuple of int, default=None
        ``(C, H, W)`` when ``X`` holds flattened images. Images given as
        (n, C, H, W) or (n, H, W) arrays need no ``input_shape``.
    module : torch.nn.Module, default=None
        Custom encoder backbone mapping a batch (n, C, H, W) or
        (n, n_features) to features (n, width); it is copied, never trained
        in place. A linear layer to ``n_components`` is added on top; the
        decoder mirrors skiic's own backbones (``ConvBackbone``,
        ``MLPBackbone``) and is a fully connected network (512, 512 units)
        reshaped to the input shape for any other module. ``None`` picks a
        convolutional network sized from the image shape (with half the
        channels when images train on a CPU), or a fully connected one for
        vectors, and a decoder that mirrors it.
    max_epochs : int or "auto", default="auto"
        Training epochs. ``"auto"`` runs about 3,000 optimiser steps, between
        10 and 200 epochs (200 epochs for the 1,797 digits at the default
        batch size, 11 for MNIST's 70,000); images larger than 16x16 on a
        CPU about 800 (21 epochs for 10,000 MNIST images).
    batch_size : int, default=256
        Samples per optimiser step.
    device_memory_limit : int, str or "auto", default="auto"
        Largest training set, in bytes (or a string such as ``"2GB"``), that
        is copied to the device whole; larger data stays in host memory, or in
        its ``np.memmap``, and is streamed to the device batch by batch.
        ``"auto"``: half of the free GPU memory on CUDA; on the CPU, arrays
        are held whole (as one scaled float32 copy) and memmaps streamed.
    lr : float, default=1e-3
        Adam learning rate.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available, else the CPU.
    devices : list of str, "process_group" or None, default=None
        Train data-parallel, one process per listed device, e.g.
        ``["cuda:0", "cuda:1"]`` (NCCL) or ``["cpu", "cpu"]`` (gloo): each
        process reconstructs its shard of every global batch of
        ``batch_size``, BatchNorm statistics and gradients are combined over
        processes. Scripts that use it must guard their top level with
        ``if __name__ == "__main__":``. ``"process_group"``: train on the
        default process group that already exists (``torchrun``). ``None``
        trains in this process on ``device``.
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
        Seeds the initialisation, the batches, the augmentations and the
        validation split. Runs on the CPU with the same seed and number of
        threads are identical (``n_threads="auto"`` may choose fewer on a busy
        machine: set an int for runs that repeat exactly).
    verbose : int, default=0
        When positive, print what the fit is doing and a table of per-epoch
        losses, with a per-batch progress bar in a terminal or a notebook.

    Attributes
    ----------
    module_ : skiic.networks.AutoEncoder
        The trained network, on the CPU.
    history_ : skorch.history.History
        Per-epoch training log: ``train_loss`` (mean squared error of the
        scaled training batches), ``dur`` and, with early stopping,
        ``valid_loss``.
    n_iter_ : int
        Epochs run.
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
    sklearn.decomposition.PCA : The linear embedding with a reconstruction.
    IICClustering : Clusters directly instead of embedding.

    Notes
    -----
    Input is scaled before training and the scaling is undone by
    ``inverse_transform``: images by one offset and one range over all pixels
    (to about [0, 1]), vectors by centring each feature and dividing by the
    root mean feature variance. The training loss is the mean squared error
    in these scaled units; ``score`` reports it in the units of ``X``.
    Reconstructed images are clipped to the pixel range of the training data.

    ``transform`` runs the network in evaluation mode (BatchNorm with its
    running statistics), so codes do not depend on how samples are batched.
    On CUDA, training uses mixed precision and is not bit-for-bit repeatable.

    References
    ----------
    G. E. Hinton and R. R. Salakhutdinov, "Reducing the Dimensionality of Data
    with Neural Networks", Science 313 (5786), 2006.

    P. Vincent, H. Larochelle, Y. Bengio and P.-A. Manzagol, "Extracting and
    Composing Robust Features with Denoising Autoencoders", ICML 2008.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skiic import AutoEncoderEmbedder
    >>> X, _ = load_digits(return_X_y=True)
    >>> X = X[:500]
    >>> embedder = AutoEncoderEmbedder(n_components=2, max_epochs=5, random_state=0)
    >>> Z = embedder.fit_transform(X)
    >>> Z.shape
    (500, 2)
    >>> embedder.inverse_transform(Z).shape
    (500, 64)
    >>> embedder.get_feature_names_out().tolist()
    ['autoencoderembedder0', 'autoencoderembedder1']
    """

    _parameter_constraints: dict = {
        **_BaseDeepEstimator._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "latent": [StrOptions({"linear", "tanh", "whitened"})],
        "augmentation": [callable, None, StrOptions({"auto"})],
        "n_neighbors": [Interval(Integral, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=10,
        *,
        latent="whitened",
        augmentation="auto",
        n_neighbors=0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
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
        self.n_components = n_components
        self.latent = latent
        self.augmentation = augmentation
        self.n_neighbors = n_neighbors
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
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
        seed, split_seed = self._seeds(2)
        train, valid = self._split(X.shape[0], split_seed)
        n_neighbors = self._resolve_neighbors(len(train))
        distinct = None
        if n_neighbors:
            # Copies of a training sample are never its neighbours.
            distinct = _data.distinct_rows_among(
                _data.distinct_rows_in_memory(X), train
            )
        # Images on a CPU: the compact default network; fewer steps when large.
        on_cpu = self._images_on_cpu(image_shape)
        fewer_steps = on_cpu and large_images(image_shape)
        return _AutoEncoderPlan(
            n_features=X.shape[1],
            input_shape=image_shape,
            scaling=scaling,
            compact=on_cpu and self.module is None,
            max_epochs=resolve_max_epochs(
                self.max_epochs,
                len(train),
                self.batch_size,
                target_steps=_AUTO_STEPS_CPU if fewer_steps else _AUTO_STEPS,
                low=_AUTO_MIN_EPOCHS,
                high=_AUTO_MAX_EPOCHS,
            ),
            augment=self._resolve_augmentation(image_shape),
            n_neighbors=n_neighbors,
            distinct=distinct,
            train=train,
            valid=valid,
            seed=seed,
        )

    def _resolve_neighbors(self, n_train):
        """``n_neighbors``, at most the other training samples."""
        return min(int(self.n_neighbors), n_train - 1)

    def _resolve_augmentation(self, image_shape):
        """``augmentation``: "auto" adds an elastic distortion to the views of
        images whose smaller side exceeds 16 pixels (:ref:`autoencoder_elastic`)."""
        if (
            self.augmentation == "auto"
            and image_shape is not None
            and min(image_shape[1:]) > _AUTO_ELASTIC_ABOVE_SIDE
        ):
            return ImageAugmentation(elastic=_AUTO_ELASTIC)
        return super()._resolve_augmentation(image_shape)

    def _fit_core(self, X, plan, *, device, parallel=None):
        """Train the autoencoder; the module comes back on the CPU.

        Runs in the calling process, or in each process of a data-parallel run
        (``parallel``).
        """
        parallel = parallel or _distributed.Parallel()
        data = self._place(X, device, plan.scaling, plan.input_shape)
        callbacks = None
        if plan.valid is not None:
            callbacks = [
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss",
                        patience=self.n_iter_no_change,
                        threshold=self.tol,
                        threshold_mode="rel",
                        load_best=True,
                    ),
                )
            ]
        train = torch.from_numpy(plan.train).to(data.index_device)
        neighbors = None
        if plan.n_neighbors:
            progress = self._neighbor_search_progress(
                parallel, plan.n_neighbors, len(train), distinct=plan.distinct
            )
            neighbors = _data.neighbor_indices_among(
                data, train, plan.n_neighbors, progress=progress, distinct=plan.distinct
            ).to(data.index_device)
        with forked_rng(plan.seed, device):
            objective = _ReconstructionObjective(
                data,
                train,
                plan.augment,
                neighbors=neighbors,
                valid=None
                if plan.valid is None
                else torch.from_numpy(plan.valid).to(data.index_device),
                parallel=parallel,
            )
            module = self._build_network(plan)
            self._say(
                parallel,
                f"training {count(plan.max_epochs, 'epoch')} on "
                f"{len(plan.train)} samples"
                + ("" if plan.valid is None else f", {len(plan.valid)} held out"),
            )
            module, history = self._train(
                module,
                objective,
                len(plan.train),
                device,
                plan.max_epochs,
                parallel=parallel,
                callbacks=callbacks,
            )
            whitening = None
            module.to(device).eval()  # train() hands it back on the CPU
            # The codes of every sample for the whitening, else of the first
            # few: a network the last steps blew up gives no finite ones.
            n = data.n_samples
            if self.latent != "whitened":
                n = min(n, _FINITE_CHECK_SAMPLES)
            indices = torch.arange(n, device=data.index_device)
            codes = _data.map_samples(module.encode, data, device, indices).float()
            if not bool(torch.isfinite(codes).all()):
                raise TrainingError(
                    "Training diverged: the trained network's codes are infinite "
                    f"or NaN. {_engine.lr_advice(f'lr={self.lr:g}')}"
                )
            if self.latent == "whitened":
                whitening = code_whitening(codes.cpu().numpy())
        return _AutoEncoderResult(
            module.to("cpu").eval(), history, data.streamed, whitening
        )

    def _fitted_attributes(self, plan, result):
        return {"streamed_": result.streamed, "_whitening": result.whitening}

    def transform(self, X):
        """Encode ``X`` into its codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            New data, shaped like the training data.

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_components), dtype float32
            The codes.
        """
        X = self._validate_predict_data(X)
        codes = self._infer(X, lambda module, x: module.encode(x)).numpy()
        whitening = getattr(self, "_whitening", None)
        if whitening is not None:
            mean, forward, _ = whitening
            codes = ((codes - mean) @ forward).astype(np.float32, copy=False)
        return codes

    def inverse_transform(self, X):
        """Decode codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, such as the output of :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features) or \
(n_samples, C, H, W), dtype float32
            Reconstructions in the units of the training data, shaped like
            one training sample: (n, C, H, W) or (n, H, W) when the model was
            fitted on such arrays, else (n, n_features).
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float32, np.float64], input_name="X")
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"X has {Z.shape[1]} features, but inverse_transform expects codes "
                f"of {self._n_features_out} features (n_components at fit)."
            )
        whitening = getattr(self, "_whitening", None)
        if whitening is not None:
            mean, _, backward = whitening
            Z = Z @ backward + mean
        device = self._predict_device()
        flat = _engine.infer(
            self._module_on(device),
            np.ascontiguousarray(Z, dtype=np.float32),
            lambda module, z: module.decode(z).flatten(1),
            device=device,
        ).numpy()
        return self._unscaled(flat).reshape(len(flat), *self._output_shape)

    def score(self, X, y=None):
        """Negative mean squared reconstruction error of ``X``.

        The error is averaged over samples and features, in the units of
        ``X``; higher is better, so ``GridSearchCV`` can choose, e.g.,
        ``n_components`` without labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Data to score, shaped like the training data.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            ``-mean((X - inverse_transform(transform(X))) ** 2)``.
        """
        X = self._validate_predict_data(X)
        flat = self._infer(X, lambda module, x: module(x).flatten(1)).numpy()
        error = np.square(X - self._unscaled(flat), dtype=np.float64)
        return -float(error.mean())

    @property
    def _n_features_out(self):
        # The fitted network's width, not the parameter (set_params may have
        # changed it since); unfitted, the AttributeError means "not fitted".
        return self.module_.latent[0].out_features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # ---------------------------------------------------------------- helpers
    def _split(self, n_samples, seed):
        """Training and held-out indices (all and None without early stopping)."""
        if not self.early_stopping:
            return np.arange(n_samples), None
        n_valid = int(np.ceil(self.validation_fraction * n_samples))
        if n_valid < 2 or n_samples - n_valid < 2:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} "
                f"splits {n_samples} samples into {n_samples - n_valid} for training "
                f"and {n_valid} for validation; both need at least 2. Use more "
                "samples, another validation_fraction, or early_stopping=False."
            )
        order = check_random_state(seed).permutation(n_samples)
        return np.sort(order[n_valid:]), np.sort(order[:n_valid])

    def _build_network(self, plan):
        backbone = self._backbone(plan)
        width = feature_width(backbone, plan.sample_shape)
        decoder = make_decoder(
            backbone, self.n_components, plan.n_features, plan.input_shape
        )
        return AutoEncoder(
            backbone,
            width,
            decoder,
            self.n_components,
            bounded=self.latent == "tanh",
        )

    def _unscaled(self, X):
        if self.input_shape_ is not None:
            # Images were scaled to [0, 1] by their range: keep pixels in it.
            X = np.clip(X, 0.0, 1.0)
        return (X * self._scale + self._offset).astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class _AutoEncoderPlan(FitPlan):
    augment: object  # the resolved augmentation (callable or None)
    n_neighbors: int  # neighbours an input is drawn from; 0: the sample itself
    distinct: tuple | None  # _data.distinct_rows of X[train] where searched, or None
    train: np.ndarray  # indices of the training samples
    valid: np.ndarray | None  # indices held out for early stopping, or None
    seed: int  # torch seed of initialisation, batches and augmentations


class _AutoEncoderResult(NamedTuple):
    module: nn.Module  # the trained autoencoder, on the CPU
    history: object  # skorch History
    streamed: bool  # whether the data was streamed to the device
    whitening: tuple | None  # code_whitening() of the training codes, or None


def code_whitening(codes: np.ndarray):
    """(mean, forward, backward) that whiten ``codes`` and undo it.

    ``(codes - mean) @ forward`` has the identity as covariance along the
    directions the codes vary in; ``whitened @ backward + mean`` gives the
    codes back. Directions of no variance (below a millionth of the largest:
    a dead component, or beyond the rank of fewer samples than components)
    keep the largest direction's scale: divided by their own, they would
    blow up any new sample's trace along them.
    """
    codes = codes.astype(np.float64)
    mean = codes.mean(axis=0)
    width = codes.shape[1]
    covariance = np.cov(codes - mean, rowvar=False, ddof=0).reshape(width, width)
    variances, axes = np.linalg.eigh(covariance)
    order = np.argsort(variances)[::-1]
    variances, axes = variances[order], axes[:, order]
    largest = max(variances[0], 1e-12)
    scales = np.sqrt(np.where(variances > 1e-6 * largest, variances, largest))
    forward = axes / scales
    backward = (axes * scales).T
    return tuple(a.astype(np.float32) for a in (mean, forward, backward))


class _ReconstructionObjective(_engine.Objective):
    """Mean squared error between the clean batch and its reconstruction.

    ``data`` is a resident or streamed data source (:mod:`skiic._data`) and
    ``train`` the indices of the samples trained on. With an augmentation the
    network encodes a corrupted copy of the batch (denoising). With
    ``neighbors`` (for each training sample, positions in ``train`` of its
    nearest neighbours) it encodes a random neighbour of each sample instead,
    corrupted likewise, and still reconstructs the sample. With held-out
    indices ``valid`` the error on them is recorded after each epoch as
    ``valid_loss``, in evaluation mode and without corruption. With
    ``parallel`` each process reconstructs its shard of the global batch.
    """

    def __init__(
        self, data, train: Tensor, augment, *, neighbors=None, valid=None, parallel=None
    ):
        super().__init__()
        self.data = data
        self.train_idx = train
        self.augment = augment
        self.neighbors = neighbors
        self.valid = valid
        self.parallel = parallel or _distributed.Parallel()

    def batches(self, n_samples, batch_size, device):
        positions = _data.DeviceBatches(
            len(self.train_idx), batch_size, self.train_idx.device
        )
        return _data.Epochs(lambda: self.data.load(self._plans(positions)))

    def _plans(self, positions):
        """``(idx,)`` per batch, or ``(idx, input_idx)`` with neighbours.

        The neighbours are drawn from :func:`_data.planning_generator`,
        created when an epoch's planning starts.
        """
        if self.neighbors is None:
            for batch in positions:
                yield (self.train_idx[batch],)
            return
        generator = _data.planning_generator(self.neighbors.device)
        for batch in positions:
            batch = batch.to(self.neighbors.device)
            picked = sample_neighbors(self.neighbors, batch, generator=generator)
            yield self.train_idx[batch], self.train_idx[picked]

    def forward(self, module: nn.Module, batch) -> Tensor:
        _, samples = batch
        clean = samples[0]
        source = samples[-1]  # the sample itself, or one of its neighbours
        # Corrupted as one process would corrupt the global batch, then sharded.
        noisy = source if self.augment is None else self.augment(source)
        if not self.parallel.active:
            return F.mse_loss(module(noisy).float().reshape(clean.shape), clean)
        n_values = clean.numel()
        clean, noisy = self.parallel.shard(clean), self.parallel.shard(noisy)
        rec = module(noisy).float().reshape(clean.shape)
        # The global mean: summed over processes, gradients flowing back.
        error = self.parallel.all_reduce(F.mse_loss(rec, clean, reduction="sum"))
        return error / n_values

    @torch.no_grad()
    def on_epoch_end(self, trainer: _engine.Trainer) -> None:
        if self.valid is None:
            return
        module = trainer.module_
        device = torch.device(trainer.device)
        module.eval()

        def error_sum(x):
            rec = module(x).float().reshape(x.shape)
            return F.mse_loss(rec, x, reduction="sum").reshape(1)

        sums = _data.map_samples(error_sum, self.data, device, self.valid)
        module.train()
        n_values = len(self.valid) * self.data.take(self.valid[:1]).numel()
        trainer.history.record("valid_loss", float(sums.sum()) / n_values)
