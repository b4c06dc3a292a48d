"""What the three estimators share on the scikit-learn side.

:class:`_BaseDeepEstimator` holds the common parameters and their constraints,
turns input into scaled float32 samples (images or vectors), picks the device
and the seeds, runs the training engine and batched inference, and declares
honest tags. Subclasses write ``fit`` (decorated with ``_fit_context``) and the
prediction methods on top of these helpers.
"""

from __future__ import annotations

import copy
import os
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _distributed, _engine
from ._validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    check_input,
    check_n_samples,
    chunked_stats,
)
from .augment import ImageAugmentation, VectorAugmentation
from .networks import make_backbone

# n_neighbors="auto" for vector input: the second view is one of these
# nearest neighbours of the sample (IIC's VirtualAdversarial views excepted).
_AUTO_NEIGHBORS = 10


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
        "lr": [Interval(Real, 0, None, closed="neither")],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ input
    def _validate_fit_data(self, X, n_clusters=None):
        """Check ``X`` at fit; set ``n_features_in_`` and ``input_shape_``.

        Returns the flat float32 samples and the image shape (or None).
        """
        X, image_shape = check_input(self, X, reset=True)
        check_n_samples(self, X, n_clusters)
        self.input_shape_ = image_shape
        return X, image_shape

    def _validate_predict_data(self, X):
        check_is_fitted(self)
        X, _ = check_input(self, X, reset=False)
        return X

    def _fit_scaling(self, X, image_shape):
        """Learn the input scaling: images to about [0, 1], vectors centred.

        Images are shifted and scaled by global scalars (their range), which
        keeps pixel values meaningful for the augmentations. Vectors are
        centred per feature and divided by one global scalar (the root mean
        feature variance), which keeps the geometry of, e.g., PCA output.
        """
        low, high, mean, var = chunked_stats(X)
        if image_shape is not None:
            offset = np.float32(low)
            scale = np.float32(high - low)
        else:
            offset = mean.astype(np.float32)
            scale = np.float32(np.sqrt(var.mean()))
        if not np.isfinite(scale) or scale <= np.finfo(np.float32).tiny:
            scale = np.float32(1.0)
        self._offset = offset
        self._scale = scale

    def _scaled(self, X):
        return ((X - self._offset) / self._scale).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ torch
    def _fit_device(self):
        return _engine.resolve_device(self.device, for_fit=True)

    def _predict_device(self):
        return _engine.resolve_device(self.device, for_fit=False)

    def _seeds(self, count=1):
        """Integer seeds for torch, drawn from ``random_state``."""
        rng = check_random_state(self.random_state)
        return [int(s) for s in rng.randint(np.iinfo(np.int32).max, size=count)]

    def _backbone(self, n_features, image_shape):
        """A fresh backbone: a copy of the user's ``module`` or the default one."""
        if self.module is not None:
            return copy.deepcopy(self.module)
        return make_backbone(n_features, image_shape)

    def _sample_shape(self):
        """Shape of one sample as the network sees it."""
        return (
            self.input_shape_
            if self.input_shape_ is not None
            else (self.n_features_in_,)
        )

    def _train(
        self,
        module,
        objective,
        n_samples,
        device,
        max_epochs,
        callbacks=None,
        parallel=None,
    ):
        """Train on the engine with the shared parameters; returns (module, history)."""
        verbose = self.verbose if parallel is None or parallel.is_main else 0
        return _engine.train(
            module,
            objective,
            n_samples=n_samples,
            max_epochs=max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            device=device,
            verbose=verbose,
            callbacks=callbacks,
            parallel=parallel,
        )

    def _infer(self, X, fn, *, device=None):
        """Run ``fn(module, batch)`` over ``X``, scaled on the prediction device."""
        device = device or self._predict_device()
        return _engine.infer(
            self._module_on(device),
            X,
            fn,
            device=device,
            shape=self.input_shape_,
            scaling=(self._offset, self._scale),
        )

    def _resolve_neighbors(self, n_samples, image_shape):
        """``n_neighbors``: "auto" is 10 for vectors and 0 (none) for images."""
        if self.n_neighbors == "auto":
            wanted = 0 if image_shape is not None else _AUTO_NEIGHBORS
        else:
            wanted = self.n_neighbors
        return min(wanted, n_samples - 1)

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
        return self.augmentation

    def _class_augmentation_message(self):
        """Why ``augmentation`` (a class) is rejected, and what would work."""
        cls, owner = self.augmentation, type(self).__name__
        name = cls.__name__
        accepted = [
            c
            for c in self._parameter_constraints["augmentation"]
            if isinstance(c, type)
        ]
        # Instances qualify when callable or of a class the constraints name.
        callable_instances = any("__call__" in vars(k) for k in cls.__mro__)
        if callable_instances or issubclass(cls, tuple(accepted)):
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

    def _place(self, X, device):
        """The samples on the device, or streamed when over ``device_memory_limit``."""
        return _engine.place_data(
            X,
            offset=self._offset,
            scale=self._scale,
            shape=self.input_shape_,
            device=device,
            limit=self.device_memory_limit,
        )

    def _run_fit_core(self, X):
        """``self._fit_core(X, device=, parallel=)`` where ``devices`` says.

        In this process on ``device`` (``devices=None``), in this process as
        one rank of the existing process group (``"process_group"``), or in
        one new process per listed device; returns rank 0's result.
        """
        if self.devices is None:
            return self._fit_core(X, device=self._fit_device())
        if self.devices == "process_group":
            parallel = _distributed.process_group_parallel()
            return self._fit_core(X, device=self._rank_device(), parallel=parallel)
        return _distributed.spawn(_fit_core_in_process, self.devices, (self, X))

    def _rank_device(self):
        """This process's device in a torchrun job: its local GPU, else ``device``."""
        if self.device == "auto" and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return self._fit_device()

    def _module_on(self, device):
        """The trained network on ``device``: ``module_`` on the CPU, else a copy."""
        if device.type == "cpu":
            return self.module_
        return copy.deepcopy(self.module_).to(device)

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            on_gpu = _engine.resolve_device(self.device, for_fit=False).type == "cuda"
        except (ValueError, TypeError):
            on_gpu = False
        # cuDNN kernels make GPU training non-deterministic; CPU runs repeat exactly.
        tags.non_deterministic = on_gpu
        tags.input_tags.three_d_array = True
        return tags


def _fit_core_in_process(estimator, X, *, device, parallel):
    """Entry point of each spawned process: the fit core, on its device."""
    return estimator._fit_core(X, device=device, parallel=parallel)


def resolve_max_epochs(max_epochs, n_samples, batch_size, *, target_steps, low, high):
    """``max_epochs="auto"``: about ``target_steps`` steps, in [low, high] epochs."""
    if max_epochs != "auto":
        return int(max_epochs)
    steps_per_epoch = max(1, n_samples // batch_size)
    return int(np.clip(np.ceil(target_steps / steps_per_epoch), low, high))
