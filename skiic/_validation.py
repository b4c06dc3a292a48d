"""Input checks shared by all estimators.

This is the one module that imports private scikit-learn API
(``sklearn.base._fit_context`` and ``sklearn.utils._param_validation``), so a
change there is mended in one place.
"""

from __future__ import annotations

import os
import sys
import warnings
from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.base import _fit_context  # noqa: F401  (re-exported for the estimators)
from sklearn.utils._param_validation import (  # noqa: F401  (re-exported)
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
)
from sklearn.utils.validation import validate_data

# Rows read at a time when a memmap is validated or summarised.
_CHUNK_ROWS = 8192

__all__ = [
    "FLOAT32_MAX",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "_fit_context",
    "check_counts_not_bool",
    "check_image_shape",
    "check_input",
    "check_n_samples",
    "chunked_stats",
    "user_stacklevel",
]

# Largest magnitude float32 holds: float64 input beyond it would become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# A feature that the cast to float32 moves by more than its range over this
# loses its detail (as if it had fewer than this many levels from min to max).
_FLOAT32_LEVELS = 2**8


def check_counts_not_bool(estimator) -> None:
    """Refuse a bool for a count parameter (an ``Interval(Integral)`` one that
    takes no bool): scikit-learn's check lets ``True`` through as 1, so that
    ``n_clusters=True`` would train, then fail, and ``max_epochs=True`` would
    train one epoch."""
    for name, constraints in estimator._parameter_constraints.items():
        value = getattr(estimator, name, None)
        # (numpy's bools are no Integral: scikit-learn refuses those itself)
        if not isinstance(value, bool) or "boolean" in constraints:
            continue
        if any(isinstance(c, Interval) and c.type is Integral for c in constraints):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be "
                f"an int, not a bool. Got {value!r} instead."
            )


def check_input(estimator, X, *, reset):
    """Validate ``X`` and return it as a float32 array of flat samples.

    Images may come as (n, C, H, W), as (n, H, W) (one channel) or flat as
    (n, C*H*W) with the estimator's ``input_shape``; vectors as (n, d). Sparse,
    complex, non-numeric string, NaN and infinite input is rejected by
    scikit-learn's ``validate_data`` with its usual messages (strings of
    numbers are converted, as scikit-learn does).

    Parameters
    ----------
    estimator : estimator instance
        Its ``input_shape`` parameter is read at ``fit``; its fitted
        ``input_shape_`` at prediction time.
    X : array-like
        The input.
    reset : bool
        True at ``fit``: sets ``n_features_in_`` (and ``feature_names_in_``);
        False at prediction time: checks against them.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Flat samples: float32, or a memmap's flat view in its stored dtype
        (converted batch by batch on the device).
    image_shape : tuple of int or None
        ``(C, H, W)`` of image input, ``None`` for vectors. At prediction time
        this is the fitted shape.
    """
    if isinstance(X, np.memmap):
        if X.ndim <= 2 or _rows_are_contiguous(X):
            return _check_memmap(estimator, X, reset=reset)
        warnings.warn(
            f"X is a memmap of shape {X.shape} whose images cannot be flattened "
            "without a copy (its axes are transposed or sliced), so it is read "
            "into memory instead of streamed. Save it with np.save(path, "
            "np.ascontiguousarray(X)) and open it with np.load(path, "
            "mmap_mode='r') to stream it.",
            stacklevel=user_stacklevel(),
        )
        X = np.asarray(X)
    if isinstance(X, (list, tuple)):
        # Nested lists of images are images, as the same ndarray would be.
        as_array = np.asarray(X, dtype=object)
        if as_array.ndim in (3, 4):
            X = np.asarray(X)
    if hasattr(X, "shape") and getattr(X, "ndim", 2) in (3, 4) and not _is_sparse(X):
        X = np.asarray(X)
    given_shape = None
    if isinstance(X, np.ndarray):
        X, given_shape = _flatten_images(X)
        if X.dtype.kind in "biu" and X.dtype.itemsize <= 2:
            # Exact in float32 (uint8 images): not through a float64 copy.
            X = X.astype(np.float32)
    X = validate_data(
        estimator,
        X,
        reset=reset,
        dtype=[np.float64, np.float32],
        ensure_min_features=1,
    )
    if get_config()["assume_finite"] and not np.isfinite(X).all():
        raise ValueError(
            "Input X contains NaN or infinity (scikit-learn's assume_finite=True "
            "skipped the check that says so at once)."
        )
    image_shape = _image_shape(estimator, given_shape, X.shape[1], reset)
    _check_float32_range(X)
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    if reset and X.dtype == np.float64 and X.size:
        # The detail the cast just lost, a chunk at a time.
        detail = _Float32Detail(X.shape[1])
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            detail.add(X[rows], rounded=X32[rows])
        detail.warn()
    return X32, image_shape


def _rows_are_contiguous(X) -> bool:
    """Whether each sample of ``X`` (its axes after the first) is one C-ordered
    run of memory, so that ``X.reshape(n, -1)`` is a view; the samples may lie
    anywhere (every other row of a memmap, say)."""
    expected = X.itemsize
    for size, stride in zip(reversed(X.shape[1:]), reversed(X.strides[1:])):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _flatten_images(X):
    """(n, H, W) and (n, C, H, W) arrays as flat (n, C*H*W) views, with their
    ``(C, H, W)``; other arrays unchanged, with ``None``; more than 4-D rejected."""
    if X.ndim > 4:
        raise ValueError(
            f"X must be 2-D (n_samples, n_features), 3-D (n_samples, H, W) or 4-D "
            f"(n_samples, C, H, W); got an array with {X.ndim} dimensions."
        )
    if X.ndim not in (3, 4):
        return X, None
    shape = (1, *X.shape[1:]) if X.ndim == 3 else tuple(X.shape[1:])
    # Not reshape(n, -1): numpy cannot infer -1 for zero samples, and
    # validate_data should report the empty array in its own words.
    return X.reshape(X.shape[0], int(np.prod(shape))), shape


class _Float32Detail:
    """Per-feature range and float32 rounding error of float64 rows, gathered
    chunk by chunk, to warn about features such as ``1e6 + 1e-3 * x`` that
    are (nearly) constant once cast to float32."""

    def __init__(self, n_features: int) -> None:
        self.low = np.full(n_features, np.inf)
        self.high = np.full(n_features, -np.inf)
        self.error = np.zeros(n_features)

    def add(self, rows, rounded=None) -> None:
        """Take float64 ``rows`` in; ``rounded``: their float32 cast, if made."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.size:
            self.low = np.minimum(self.low, rows.min(axis=0))
            self.high = np.maximum(self.high, rows.max(axis=0))
            if rounded is None:
                rounded = rows.astype(np.float32)
            error = np.abs(rows - rounded.astype(np.float64)).max(axis=0)
            self.error = np.maximum(self.error, error)

    def warn(self) -> None:
        spread = self.high - self.low
        coarse = (spread > 0) & (self.error * _FLOAT32_LEVELS > spread)
        if not coarse.any():
            return
        j = int(np.flatnonzero(coarse)[0])
        magnitude = max(abs(self.low[j]), abs(self.high[j]))
        warnings.warn(
            f"{int(coarse.sum())} of the {spread.size} features of X vary too "
            f"little for float32 at their magnitude (feature {j}: values near "
            f"{magnitude:.6g} spread over {spread[j]:.3g}, which float32 rounds "
            f"by up to {self.error[j]:.3g}); skiic trains in float32. Centre X "
            "first, e.g. with StandardScaler or X - X.mean(axis=0).",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _check_float32_range(X):
    """Reject values that float32, the type skiic trains in, cannot hold."""
    if X.dtype == np.float64 and X.size:
        largest = float(np.abs(X).max())
        if largest > FLOAT32_MAX:
            raise ValueError(
                f"X holds values up to {largest:.3g} in magnitude, beyond float32's "
                f"range ({FLOAT32_MAX:.3g}); skiic trains in float32, where they "
                "would become infinite. Rescale X first, e.g. with StandardScaler."
            )


def _image_shape(estimator, given_shape, n_features, reset):
    if reset:
        return check_image_shape(estimator.input_shape, given_shape, n_features)
    image_shape = estimator.input_shape_
    if given_shape is not None and image_shape is None:
        raise ValueError(
            f"X holds images of shape {given_shape}, but "
            f"{type(estimator).__name__} was fitted on vectors of "
            f"{estimator.n_features_in_} features; pass them as rows, "
            "X.reshape(len(X), -1), if that is what they are."
        )
    if given_shape is not None and given_shape != image_shape:
        raise ValueError(
            f"X holds images of shape {given_shape}, but "
            f"{type(estimator).__name__} was fitted on images of shape "
            f"{image_shape}."
        )
    return image_shape


def _check_memmap(estimator, X, *, reset):
    """Validate an ``np.memmap`` chunk by chunk, without loading it into memory.

    The samples are returned as a flat memmap view in their stored dtype; the
    estimators scale and convert them batch by batch on the device.
    """
    X, given_shape = _flatten_images(X)
    if X.ndim != 2:
        # What validate_data says, of the whole memmap rather than a slice.
        raise ValueError(
            f"Expected a 2D array, got a {X.ndim}D memmap of shape {X.shape} "
            "instead. Reshape your data either using array.reshape(-1, 1) if "
            "your data has a single feature or array.reshape(1, -1) if it "
            "contains a single sample."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(
            f"A memmap X must hold real numbers; got dtype {X.dtype}. Convert it "
            "with np.asarray(X, dtype=np.float32) if it fits in memory."
        )
    # n_features_in_, the 2-D and sample-count checks on a small slice ...
    validate_data(
        estimator,
        X[:2],
        reset=reset,
        dtype=[np.float64, np.float32],
        ensure_min_features=1,
    )
    # ... and finiteness on all of it, a chunk at a time (with, at fit, the
    # detail that float64 features, and integers float32 cannot all hold
    # (from 2**24 on), keep in float32).
    wide = X.dtype == np.float64 or (X.dtype.kind in "iu" and X.dtype.itemsize >= 4)
    detail = _Float32Detail(X.shape[1]) if reset and wide else None
    if X.dtype.kind == "f" or detail is not None:
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            chunk = X[start : start + _CHUNK_ROWS]
            if X.dtype.kind == "f":
                if not np.isfinite(chunk).all():
                    raise ValueError("Input X contains NaN or infinity.")
                _check_float32_range(chunk)
            if detail is not None:
                detail.add(chunk)
        if detail is not None:
            detail.warn()
    return X, _image_shape(estimator, given_shape, X.shape[1], reset)


def check_image_shape(input_shape, given_shape, n_features):
    """Reconcile the ``input_shape`` parameter with the shape of ``X`` at fit."""
    if input_shape is None:
        if given_shape is not None:
            _warn_if_channels_last(given_shape, "The images in X have shape")
        return given_shape
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, Integral) and s > 0 for s in shape):
        raise ValueError(
            "input_shape must be a tuple of three positive ints (C, H, W); "
            f"got {input_shape!r}."
        )
    shape = tuple(int(s) for s in shape)
    if given_shape is not None and given_shape != shape:
        raise ValueError(
            f"input_shape={shape} does not match the shape of the images in X, "
            f"{given_shape}."
        )
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"input_shape={shape} describes {int(np.prod(shape))} values per sample, "
            f"but X has {n_features} features."
        )
    if given_shape is None:
        _warn_if_channels_last(shape, "input_shape is")
    return shape


def _warn_if_channels_last(shape, what):
    """Warn when (C, H, W) looks like channels-last (H, W, C) images: a width
    of 1, 3 or 4 pixels under more than 4 "channels" and rows."""
    channels, height, width = shape
    if width in (1, 3, 4) and channels > 4 and height > 4:
        warnings.warn(
            f"{what} (C, H, W) = {shape}: {channels} channels of {height}x{width} "
            f"pixels. If they are channels-last (H, W, C) images, as many image "
            "libraries store them, move the channels first "
            "(np.moveaxis(X, -1, 1) on (n, H, W, C) arrays) and fit again.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def check_n_samples(estimator, X, n_clusters=None):
    """Reject too few samples for training (BatchNorm needs two) or for the clusters."""
    n_samples = X.shape[0]
    name = type(estimator).__name__
    if n_samples < 2:
        raise ValueError(
            f"{name} needs at least 2 samples to train; got {n_samples} sample."
        )
    if n_clusters is not None and n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")


def chunked_stats(X):
    """Per-feature min, max, mean and variance, over row chunks.

    Works on memmaps without loading them (float64 accumulation, chunks merged
    with Chan's parallel variance formula). The values are those the network
    sees: cast to float32 first, as the samples are before scaling.
    """
    low = high = None
    count, mean, m2 = 0, None, None
    for start in range(0, X.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(X[start : start + _CHUNK_ROWS], dtype=np.float32)
        chunk = chunk.astype(np.float64)
        if low is None:
            low, high = chunk.min(axis=0), chunk.max(axis=0)
        else:
            low = np.minimum(low, chunk.min(axis=0))
            high = np.maximum(high, chunk.max(axis=0))
        n = chunk.shape[0]
        chunk_mean = chunk.mean(axis=0)
        chunk_m2 = ((chunk - chunk_mean) ** 2).sum(axis=0)
        if mean is None:
            count, mean, m2 = n, chunk_mean, chunk_m2
            continue
        delta = chunk_mean - mean
        total = count + n
        mean = mean + delta * n / total
        m2 = m2 + chunk_m2 + delta**2 * count * n / total
        count = total
    return low, high, mean, m2 / count


def _is_sparse(X):
    return hasattr(X, "tocsr") or hasattr(X, "format")


_PACKAGE_DIRS = tuple(
    os.path.dirname(path) + os.sep
    for path in (__file__, sys.modules["sklearn"].__file__)
)


def user_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside skiic.

    Frames of skiic and scikit-learn (whose ``_fit_context`` wraps ``fit``)
    are skipped, so the warning names the user's line, wherever the check
    sits in the call chain.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIRS):
        frame, level = frame.f_back, level + 1
    return level
