"""The fit skeleton and what the three estimators share on the scikit-learn side.

:meth:`_BaseDeepEstimator.fit` is the one ``fit``: validate the input, make a
*plan* (a frozen record of every resolved setting and seed, computed before any
state changes), run the estimator's core where ``devices`` says (it returns a
named result), check the result, and only then set every fitted attribute, in
one place. A fit that raises, or is interrupted, leaves the estimator as it
was. Each estimator supplies ``_make_plan``, ``_fit_core`` and
``_fitted_attributes``; nothing travels between them through ``self``.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _data, _device, _distributed, _engine, _selflabel
from ._validation import (
    FLOAT32_MAX,
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    _fit_context,
    check_counts_not_bool,
    check_input,
    check_n_samples,
    chunked_stats,
    user_stacklevel,
)
from .augment import ImageAugmentation, VectorAugmentation
from .exceptions import ConvergenceWarning, TrainingError
from .networks import make_backbone

# n_neighbors="auto" for vector input: the second view is one of these
# nearest neighbours of the sample (IIC's VirtualAdversarial views excepted).
_AUTO_NEIGHBORS = 10
# On a CPU, DeepCluster and the autoencoder train fewer steps on images of more
# than this many pixels a channel (MNIST's 28x28: 784), where a step costs
# most; smaller images (the 8x8 digits) keep the full schedule, which is cheap
# there and measured more accurate.
_CPU_FEWER_STEPS_ABOVE_PIXELS = 256


def large_images(image_shape) -> bool:
    """Whether images of ``image_shape`` have more than
    ``_CPU_FEWER_STEPS_ABOVE_PIXELS`` pixels a channel."""
    return int(np.prod(image_shape[1:])) > _CPU_FEWER_STEPS_ABOVE_PIXELS


@dataclass(frozen=True, eq=False)
class Scaling:
    """The input scaling learned at fit: samples become ``(x - offset) / scale``,
    then, with a ``projection`` (features by components), ``@ projection``."""

    offset: np.ndarray | np.float32
    scale: np.float32
    projection: np.ndarray | None = None

    def width(self, n_features: int) -> int:
        """Features of a scaled sample."""
        return n_features if self.projection is None else self.projection.shape[1]


@dataclass(frozen=True, eq=False)
class FitPlan:
    """Every setting of one fit, resolved before training changes any state.

    Estimators extend it with their own fields (seeds, resolved ``"auto"``
    values); the core reads the plan, never ``self``'s private attributes.
    """

    n_features: int
    input_shape: tuple[int, int, int] | None
    scaling: Scaling
    max_epochs: int
    compact: bool  # the compact default network (images on a CPU: IIC, autoencoder)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample as the network sees it."""
        return self.input_shape if self.input_shape is not None else (self.n_features,)


class _BaseDeepEstimator(BaseEstimator):
    """Base class of the skiic estimators; not for direct use."""

    _parameter_constraints: dict = {
        "input_shape": [tuple, list, None],
        "module": [HasMethods(["forward", "parameters"]), None],
        "max_epochs": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "device_memory_limit": [Interval(Integral, 0, None, closed="left"), str],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "device": [str],
        "devices": [list, tuple, StrOptions({"process_group"}), None],
        "n_threads": [
            Interval(Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
            None,
        ],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def set_params(self, **params):
        """Set the parameters of this estimator, as scikit-learn does.

        A nested name such as ``augmentation__eps`` needs an object with
        settings of its own in that parameter: ``augmentation="auto"`` has
        none, and the error says so.

        Parameters
        ----------
        **params : dict
            Estimator parameters, and ``<parameter>__<setting>`` for the
            settings of an object held in a parameter.

        Returns
        -------
        self : estimator instance

        Examples
        --------
        >>> from skiic import IICClustering
        >>> from skiic.augment import VirtualAdversarial
        >>> model = IICClustering(10, augmentation=VirtualAdversarial())
        >>> model.set_params(augmentation__eps=0.25).augmentation.eps
        0.25
        """
        names = self._get_param_names()
        for key in params:
            name, nested, _ = key.partition("__")
            # The same call may give the object itself, which sklearn sets first.
            value = params.get(name, getattr(self, name, None))
            settable = hasattr(value, "set_params") and not isinstance(value, type)
            if nested and name in names and not settable:
                message = (
                    f"Cannot set {key}: {name}={value!r} is not an object with "
                    "settings of its own."
                )
                if name == "augmentation":
                    message += (
                        " Give augmentation such an object first, e.g. "
                        f"{self._augmentation_examples()} from skiic.augment."
                    )
                raise ValueError(message)
        return super().set_params(**params)

    def _augmentation_examples(self) -> str:
        """The skiic augmentation objects this estimator accepts, as calls."""
        names = ["ImageAugmentation", "VectorAugmentation"]
        names += [
            c.__name__ for c in self._augmentation_classes() if c.__name__ not in names
        ]
        calls = [f"{name}()" for name in names]
        return ", ".join(calls[:-1]) + " or " + calls[-1]

    def _augmentation_classes(self) -> list[type]:
        """The classes that the ``augmentation`` constraint names, besides
        callables."""
        return [
            c
            for c in self._parameter_constraints["augmentation"]
            if isinstance(c, type)
        ]

    def _validate_params(self):
        """scikit-learn's parameter check (run by ``fit``), and no bool as a count."""
        super()._validate_params()
        check_counts_not_bool(self)

    # ------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the estimator on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Training data: vectors, flat images with ``input_shape``, images
            (n, C, H, W), or one-channel images (n, H, W).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        before = dict(vars(self))
        rng = self.random_state
        rng_state = rng.get_state() if isinstance(rng, np.random.RandomState) else None
        try:
            fitted = self._fit(X)
        except BaseException:
            # validate_data has already set n_features_in_: put everything back,
            # and the draws from a RandomState given as random_state
            vars(self).clear()
            vars(self).update(before)
            if rng_state is not None:
                rng.set_state(rng_state)
            raise
        vars(self).update(fitted)
        return self

    def _fit(self, X):
        """Validate, plan, run, check; returns the fitted attributes to set."""
        given = _sample_shape_of(X)
        X, image_shape = check_input(self, X, reset=True)
        names = {
            name: vars(self).pop(name)
            for name in ("n_features_in_", "feature_names_in_")
            if name in vars(self)
        }
        check_n_samples(self, X, getattr(self, "_min_clusters", lambda: None)())
        plan = self._make_plan(X, image_shape, self._fit_scaling(X, image_shape))
        if self.devices == "process_group":
            _distributed.process_group_parallel()  # no group: says so first
            plan = _distributed.from_rank_zero(plan, self._rank_device())
        result = self._run(X, plan)
        self._check_result(plan, result)
        fitted = self._fitted_attributes(plan, result)
        return {
            **names,
            "input_shape_": image_shape,
            "_output_shape": given or (X.shape[1],),
            "_offset": plan.scaling.offset,
            "_scale": plan.scaling.scale,
            "_projection": plan.scaling.projection,
            "module_": result.module.eval(),
            "history_": result.history,
            "n_iter_": len(result.history),
            **fitted,
        }

    def _fit_scaling(self, X, image_shape) -> Scaling:
        """The input scaling of this fit (:func:`fit_scaling`)."""
        return fit_scaling(X, image_shape)

    def _make_plan(self, X, image_shape, scaling: Scaling) -> FitPlan:
        """Resolve every setting and seed of this fit (no state changes)."""
        raise NotImplementedError

    def _fit_core(self, X, plan: FitPlan, *, device, parallel=None):
        """Train on ``device``; returns a named result with the module on the CPU."""
        raise NotImplementedError

    def _fitted_attributes(self, plan: FitPlan, result) -> dict:
        """The estimator's own fitted attributes, from a checked result."""
        raise NotImplementedError

    # Whether the epoch losses measure the same thing from epoch to epoch, so
    # that a loss that never falls means no learning (not so for DeepCluster,
    # whose targets change every epoch).
    _comparable_epoch_losses = True
    # The history entry that shows learning (IIC: without the adversarial term).
    _learning_loss = "train_loss"

    def _check_result(self, plan: FitPlan, result) -> None:
        """Warn about a training that made no progress (divergence raised earlier)."""
        if self._comparable_epoch_losses:
            _engine.check_trajectory(
                result.history, lr=self.lr, key=self._learning_loss
            )

    def _run(self, X, plan):
        """``self._fit_core(X, plan, device=, parallel=)`` where ``devices`` says.

        In this process on ``device`` (``devices=None``), in this process as
        one rank of the existing process group (``"process_group"``), or in
        one new process per listed device; returns rank 0's result.
        """
        if self.devices is None:
            device = _device.resolve_device(self.device, for_fit=True)
            with _device.torch_threads(self.n_threads) as n_threads:
                _engine.log(
                    self.verbose,
                    f"{type(self).__name__}: {X.shape[0]} samples, "
                    f"{_describe(plan)}, on {device}"
                    + (
                        f" with {count(n_threads, 'CPU thread')}"
                        if device.type == "cpu"
                        else ""
                    ),
                )
                return self._fit_core(X, plan, device=device)
        where = f"{type(self).__name__}: {X.shape[0]} samples, {_describe(plan)}"
        if self.devices == "process_group":
            parallel = _distributed.process_group_parallel()
            device = self._rank_device()
            if parallel.rank == 0:
                _engine.log(self.verbose, f"{where}, {parallel.world_size} processes")
            with _device.torch_threads(self.n_threads):
                return self._fit_core(X, plan, device=device, parallel=parallel)
        devices = _distributed.check_devices(self.devices)
        _engine.log(self.verbose, f"{where}, on {', '.join(str(d) for d in devices)}")
        # The CPU processes share this process's threads (n_threads resolved).
        threads = _device.resolve_threads(self.n_threads, torch.get_num_threads())
        # A memmap travels as its file's name and place, not as a copy.
        shared = _distributed.MemmapFile.of(X)
        return _distributed.spawn(
            _fit_core_in_process, devices, (self, shared, plan), threads=threads
        )

    def _fits_on_cpu(self) -> bool:
        """Whether this fit trains on CPUs (``device``, or the ``devices``)."""
        if self.devices is None:
            return _device.resolve_device(self.device, for_fit=True).type == "cpu"
        if self.devices == "process_group":
            return self._rank_device().type == "cpu"
        return _distributed.check_devices(self.devices)[0].type == "cpu"

    def _images_on_cpu(self, image_shape) -> bool:
        """Whether this fit trains images (not vectors) on CPUs."""
        return image_shape is not None and self._fits_on_cpu()

    def _rank_device(self):
        """This process's device in a torchrun job: its local GPU, else ``device``."""
        if self.device == "auto" and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return _device.resolve_device(self.device, for_fit=True)

    # ------------------------------------------------------- fit helpers
    def _seeds(self, count=1):
        """Integer seeds for torch, drawn from ``random_state``."""
        rng = check_random_state(self.random_state)
        return tuple(int(s) for s in rng.randint(np.iinfo(np.int32).max, size=count))

    def _backbone(self, plan: FitPlan):
        """A fresh backbone: a copy of the user's ``module`` or the default one."""
        if self.module is not None:
            return copy.deepcopy(self.module)
        return make_backbone(plan.n_features, plan.input_shape, compact=plan.compact)

    def _train(
        self,
        module,
        objective,
        n_samples,
        device,
        max_epochs,
        *,
        parallel,
        callbacks=None,
        lr=None,
        reference=None,
        first_epoch=1,
        lr_label=None,
    ):
        """Train on the engine with the shared parameters (``lr``: the
        estimator's unless given; ``reference``, ``first_epoch`` and
        ``lr_label``: as for :func:`_engine.train`); returns (module, history).

        In a data-parallel fit the BatchNorm layers synchronise over the
        processes while training and are plain ones again afterwards.
        """
        verbose = self.verbose if parallel is None or parallel.is_main else 0
        if parallel is not None and parallel.active:
            _distributed.convert_batchnorm(module, parallel, device)
        module, history = _engine.train(
            module,
            objective,
            n_samples=n_samples,
            max_epochs=max_epochs,
            batch_size=self.batch_size,
            lr=self.lr if lr is None else lr,
            device=device,
            verbose=verbose,
            callbacks=callbacks,
            parallel=parallel,
            reference=reference,
            first_epoch=first_epoch,
            lr_label=lr_label,
        )
        _distributed.revert_batchnorm(module)
        return module, history

    def _say(self, parallel, message):
        """A progress line when ``verbose`` (from the main process only)."""
        main = parallel is None or not parallel.active or parallel.is_main
        _engine.log(self.verbose and main, message)

    def _neighbor_search_progress(
        self, parallel, n_neighbors, n_samples, along=None, distinct=None
    ):
        """Announce a neighbour search (when ``n_neighbors``; ``along`` says
        where it runs, if not on the samples; ``distinct`` as for
        :func:`_data.neighbor_indices`); the progress callback for it."""
        if n_neighbors:
            rows = f" ({len(distinct[0])} distinct)" if distinct is not None else ""
            self._say(
                parallel,
                f"searching the {n_neighbors} nearest neighbours of "
                f"{n_samples} samples{rows}" + (f", {along}" if along else ""),
            )

        def progress(done, total):
            self._say(parallel, f"neighbours: {done:,} of {total:,} samples")

        return progress

    def _place(self, X, device, scaling: Scaling, shape):
        """The samples on the device, or streamed when over ``device_memory_limit``."""
        return _data.place_data(
            X,
            offset=scaling.offset,
            scale=scaling.scale,
            projection=scaling.projection,
            shape=shape,
            device=device,
            limit=self.device_memory_limit,
        )

    def _resolve_augmentation(self, image_shape):
        """``augmentation``: "auto" picks the image or the vector augmentation."""
        if isinstance(self.augmentation, type):
            # A class passes the ``callable`` constraint, then fails deep in
            # training with an unrelated message.
            raise InvalidParameterError(self._class_augmentation_message())
        if self.augmentation == "auto":
            return (
                ImageAugmentation() if image_shape is not None else VectorAugmentation()
            )
        if isinstance(self.augmentation, ImageAugmentation) and image_shape is None:
            raise ValueError(
                f"augmentation={self.augmentation!r} transforms images, but X holds "
                "vectors: pass images of shape (n, C, H, W), or flat images with "
                "input_shape=(C, H, W); for vectors use VectorAugmentation() or "
                "'auto'."
            )
        if hasattr(self.augmentation, "set_params"):
            # The fitted model keeps its own copy: a later
            # set_params(augmentation__eps=...) changes the next fit, not this one.
            return copy.deepcopy(self.augmentation)
        return self.augmentation

    def _class_augmentation_message(self):
        """Why ``augmentation`` (a class) is rejected, and what would work."""
        cls, owner = self.augmentation, type(self).__name__
        name = cls.__name__
        # Instances qualify when callable or of a class the constraints name.
        callable_instances = any("__call__" in vars(k) for k in cls.__mro__)
        if callable_instances or issubclass(cls, tuple(self._augmentation_classes())):
            return (
                f"The 'augmentation' parameter of {owner} must be an instance, "
                f"not the class {name}: pass augmentation={name}()."
            )
        return (
            f"The 'augmentation' parameter of {owner} got the class {name}, and "
            f"{owner} does not accept {name} instances either: pass a callable "
            "instance (such as ImageAugmentation() or VectorAugmentation()), "
            "None or 'auto'."
        )

    # ------------------------------------------------------ predict helpers
    def _validate_predict_data(self, X):
        check_is_fitted(self)
        X, _ = check_input(self, X, reset=False)
        return X

    def _predict_device(self):
        return _device.resolve_device(self.device, for_fit=False)

    @property
    def _scaling(self) -> Scaling:
        return Scaling(self._offset, self._scale, getattr(self, "_projection", None))

    def _infer(self, X, fn, *, device=None):
        """Run ``fn(module, batch)`` over ``X``, scaled on the prediction device."""
        device = device or self._predict_device()
        scaling = self._scaling
        with _device.torch_threads(self.n_threads):
            return _engine.infer(
                self._module_on(device),
                X,
                fn,
                device=device,
                shape=self.input_shape_,
                scaling=(scaling.offset, scaling.scale, scaling.projection),
            )

    def _module_on(self, device):
        """The trained network on ``device``: ``module_`` on the CPU, else a copy."""
        if device.type == "cpu":
            return _device.fast_layout(self.module_, device)
        return copy.deepcopy(self.module_).to(device)

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            on_gpu = _device.resolve_device(self.device, for_fit=False).type == "cuda"
        except (ValueError, TypeError):
            on_gpu = False
        # cuDNN kernels make GPU training non-deterministic; CPU runs repeat exactly.
        tags.non_deterministic = on_gpu
        tags.input_tags.three_d_array = True
        return tags


class _BaseDeepClusterer(_BaseDeepEstimator):
    """What the two clusterers add: ``n_clusters``, neighbours, the cluster check.

    The core's result carries ``labels``, the cluster of every training sample
    as the network numbers them; clusters are renumbered by decreasing size.
    """

    _parameter_constraints: dict = {
        **_BaseDeepEstimator._parameter_constraints,
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "n_neighbors": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
    }

    # Appended to the collapse message: what to try with this estimator.
    _collapse_hint = ""

    def _min_clusters(self):
        return self.n_clusters

    def _train_on_confident(
        self,
        module,
        data,
        *,
        logits,
        augment,
        epochs,
        seed,
        n_samples,
        device,
        parallel,
        after,
    ):
        """The self-labelling stage (:mod:`skiic._selflabel`): ``module``
        trained for ``epochs`` epochs of ``n_samples`` draws on each
        cluster's confident samples by ``logits(module, x)``, with views from
        ``augment``, at a tenth of ``lr``, after ``after`` epochs of the main
        training; returns (module, history)."""
        self._say(
            parallel,
            f"self-labelling: {count(epochs, 'epoch')} on the confident samples",
        )
        objective = _selflabel.SelfLabelObjective(
            data,
            logits=logits,
            augment=augment,
            n_clusters=self.n_clusters,
            epochs=epochs,
            parallel=parallel,
        )
        with _device.forked_rng(seed, device):
            return self._train(
                module,
                objective,
                n_samples,
                device,
                epochs,
                parallel=parallel,
                lr=self.lr * _selflabel.LR_FACTOR,
                first_epoch=after + 1,
                lr_label=(
                    f"lr={self.lr:g} (a tenth of it in the self-labelling stage)"
                ),
            )

    def _distinct_rows(self, X, image_shape):
        """``(distinct, n_distinct)``: :func:`_data.distinct_rows_in_memory`
        of ``X`` where neighbours may be searched (vectors, or images given
        ``n_neighbors``), else None, and the number of distinct rows. Copies
        of a sample are never its neighbours, and count once."""
        distinct = None
        if image_shape is None or self.n_neighbors not in ("auto", 0):
            distinct = _data.distinct_rows_in_memory(X)
        return distinct, X.shape[0] if distinct is None else len(distinct[0])

    def _resolve_neighbors(self, n_samples, image_shape):
        """``n_neighbors``: "auto" is 10 for vectors and 0 (none) for images."""
        if self.n_neighbors == "auto":
            wanted = 0 if image_shape is not None else _AUTO_NEIGHBORS
        else:
            wanted = self.n_neighbors
        return min(wanted, n_samples - 1)

    def _check_result(self, plan, result):
        super()._check_result(plan, result)
        check_clusters(
            np.bincount(result.labels, minlength=self.n_clusters),
            self.n_clusters,
            hint=self._collapse_hint,
        )

    def _order_clusters(self, labels):
        """Cluster numbers by decreasing size (stable), and the renumbered labels."""
        counts = np.bincount(labels, minlength=self.n_clusters)
        order = np.argsort(-counts, kind="stable")
        return order, np.argsort(order)[labels].astype(np.int64)


def check_clusters(counts, n_clusters, *, hint=""):
    """Raise when training collapsed to one cluster; warn when clusters are empty.

    Parameters
    ----------
    counts : ndarray of shape (n_clusters,)
        Training samples per cluster.
    n_clusters : int
        Clusters asked for.
    hint : str, default=""
        What to try instead, appended to the collapse message.
    """
    used = int(np.count_nonzero(counts))
    if used == 1 and n_clusters > 1:
        raise TrainingError(
            f"Training collapsed: all samples fell into one cluster instead of "
            f"{n_clusters}. {hint}".rstrip()
        )
    if used < n_clusters:
        warnings.warn(
            f"Only {used} of n_clusters={n_clusters} clusters hold training "
            "samples; the data may have fewer distinct groups than n_clusters.",
            ConvergenceWarning,
            stacklevel=user_stacklevel(),
        )


def fit_scaling(X, image_shape) -> Scaling:
    """Learn the input scaling: images to about [0, 1], vectors centred.

    Images are shifted and scaled by global scalars (their range), which
    keeps pixel values meaningful for the augmentations. Vectors are centred
    per feature and divided by one global scalar (the root mean feature
    variance), which keeps the geometry of, e.g., PCA output. Data whose
    samples are all identical is rejected: nothing can be learned from it.
    """
    low, high, mean, var = chunked_stats(X)
    if not np.any(var > 0):
        raise ValueError(
            f"All {X.shape[0]} samples of X are identical in float32, the "
            "precision skiic trains in (every feature is constant): there is "
            "nothing to cluster or embed."
        )
    # Images: one range for every pixel; vectors: each feature's own.
    span = float(high.max() - low.min() if image_shape else np.max(high - low))
    if span > FLOAT32_MAX:
        raise ValueError(
            f"X's values span {span:.3g}, more than float32, the precision skiic "
            f"trains in, can hold ({FLOAT32_MAX:.3g}): centring or scaling them "
            "would overflow. Rescale X first, e.g. with StandardScaler."
        )
    if image_shape is not None:
        offset = np.float32(low.min())
        scale = np.float32(span)
    else:
        offset = mean.astype(np.float32)
        scale = np.float32(np.sqrt(var.mean()))
    tiny = float(np.finfo(np.float32).tiny)
    if scale <= tiny:
        raise ValueError(
            f"X's values vary by about {float(scale):.3g}, below the smallest "
            f"normal float32 ({tiny:.3g}), the precision skiic trains in. "
            "Rescale X first, e.g. with StandardScaler."
        )
    return Scaling(offset, scale)


# Rows the principal axes of a projection are computed from, at most.
_PCA_ROWS = 50_000


def principal_projection(
    X, scaling: Scaling, n_components: int, seed: int, *, min_share: float = 0.0
) -> Scaling:
    """``scaling`` followed by a projection on the first ``n_components``
    principal axes of the scaled vectors ``X``.

    The axes come from at most ``_PCA_ROWS`` rows drawn with ``seed``; the
    projected vectors are centred and divided by one global scalar, the root
    mean variance of the components, as :func:`fit_scaling` does for vectors.
    Where the axes hold less than ``min_share`` of the variance, ``scaling``
    comes back unchanged: no projection.
    """
    from sklearn.decomposition import PCA

    sample = _scaled_sample(X, scaling, seed)
    pca = PCA(n_components, random_state=int(seed)).fit(sample)
    if pca.explained_variance_ratio_.sum() < min_share:
        return scaling
    spread = np.sqrt(np.mean(pca.explained_variance_))
    if not np.isfinite(spread) or spread <= np.finfo(np.float32).tiny:
        spread = 1.0
    return Scaling(
        offset=(scaling.offset + scaling.scale * pca.mean_).astype(np.float32),
        scale=scaling.scale,
        projection=(pca.components_.T / spread).astype(np.float32),
    )


def _scaled_sample(X, scaling: Scaling, seed: int, limit=None) -> np.ndarray:
    """At most ``limit`` (default ``_PCA_ROWS``) rows of ``X``, drawn with
    ``seed``, scaled."""
    limit = _PCA_ROWS if limit is None else limit
    rows = np.arange(X.shape[0])
    if X.shape[0] > limit:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(X.shape[0], limit, replace=False))
    return (np.asarray(X[rows], dtype=np.float32) - scaling.offset) / scaling.scale


# Rows the signal axes are computed from, at most (the covariance costs
# rows times features squared).
_SIGNAL_ROWS = 10_000
# The 99 % quantile of the Tracy-Widom law of order 1 (the largest eigenvalue
# of a real Gaussian sample covariance, centred and scaled; Johnstone 2001).
_TRACY_WIDOM_99 = 2.0234


def signal_axes(X, scaling: Scaling, seed: int) -> np.ndarray | None:
    r"""The principal axes of the scaled vectors ``X`` whose variance stands
    above the noise level, as a (features, axes) matrix, largest first.

    An axis stands above the noise where its eigenvalue of the sample
    covariance exceeds what the largest one reaches, in 99 % of draws, when
    the :math:`d` features hold isotropic noise only (Johnstone's test, 2001:
    the Marchenko-Pastur edge :math:`s^2 (1 + \sqrt{d / n})^2` plus the
    Tracy-Widom spread of the largest eigenvalue over :math:`n` rows). The
    noise variance :math:`s^2` is the median eigenvalue divided by the
    Marchenko-Pastur median: most axes of wide, noisy data hold noise only.
    The axes come from at most ``_SIGNAL_ROWS`` rows drawn with ``seed``.
    None where no axis, or every one, stands above the noise, or where there
    are fewer rows than features.
    """
    sample = _scaled_sample(X, scaling, seed, limit=_SIGNAL_ROWS)
    n, d = sample.shape
    if d >= n:
        return None
    centred = sample - sample.mean(axis=0)
    covariance = (centred.T @ centred).astype(np.float64) / (n - 1)
    values, vectors = np.linalg.eigh(covariance)
    noise = np.median(values) / _marchenko_pastur_median(d / n)
    root = np.sqrt(n - 1) + np.sqrt(d)
    spread = root * (1 / np.sqrt(n - 1) + 1 / np.sqrt(d)) ** (1 / 3)
    keep = values > noise * (root**2 + _TRACY_WIDOM_99 * spread) / (n - 1)
    if not 0 < keep.sum() < d:
        return None
    return np.ascontiguousarray(vectors[:, keep][:, ::-1], dtype=np.float32)


def _marchenko_pastur_median(ratio: float) -> float:
    """Median of the Marchenko-Pastur law of unit variance and aspect ratio
    ``ratio`` (features over samples, below 1), by numerical integration."""
    low, high = (1 - np.sqrt(ratio)) ** 2, (1 + np.sqrt(ratio)) ** 2
    x = np.linspace(low, high, 20_001)
    density = np.sqrt(np.clip((high - x) * (x - low), 0, None)) / x
    mass = np.concatenate([[0], np.cumsum((density[1:] + density[:-1]) * np.diff(x))])
    return float(np.interp(0.5 * mass[-1], mass, x))


def count(n: int, word: str) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1, for progress messages."""
    return f"{n} {word}" + ("s" if n != 1 else "")


def _describe(plan: FitPlan) -> str:
    """The input as the network sees it, for progress messages."""
    if plan.input_shape is not None:
        return "images of shape " + "x".join(map(str, plan.input_shape))
    projection = plan.scaling.projection
    if projection is not None:
        return (
            f"vectors of {projection.shape[0]} features, on their first "
            f"{projection.shape[1]} principal components"
        )
    return f"vectors of {plan.n_features} features"


def _fit_core_in_process(estimator, X, plan, *, device, parallel):
    """Entry point of each spawned process: the fit core, on its device."""
    if isinstance(X, _distributed.MemmapFile):
        X = X.open()
    return estimator._fit_core(X, plan, device=device, parallel=parallel)


def _sample_shape_of(X):
    """Shape of one sample of images (3-D or 4-D, an array or nested lists),
    else None."""
    shape = getattr(X, "shape", None)
    if shape is None and isinstance(X, (list, tuple)):
        try:
            shape = np.shape(X)
        except ValueError:  # ragged: check_input says what is wrong
            return None
    if shape is not None and len(shape) in (3, 4):
        return tuple(int(s) for s in shape[1:])
    return None


def resolve_max_epochs(max_epochs, n_samples, batch_size, *, target_steps, low, high):
    """``max_epochs="auto"``: about ``target_steps`` steps, in [low, high] epochs."""
    if max_epochs != "auto":
        return int(max_epochs)
    steps_per_epoch = max(1, n_samples // batch_size)
    return int(np.clip(np.ceil(target_steps / steps_per_epoch), low, high))
