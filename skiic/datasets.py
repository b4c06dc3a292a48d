"""Local loaders for benchmark data. Nothing here downloads anything.

:func:`load_mnist` reads MNIST from a ``.npz`` file (arrays ``X_train``,
``y_train``, ``X_test``, ``y_test``) or from a folder holding the original idx
files (``train-images-idx3-ubyte[.gz]`` and friends).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["load_idx", "load_mnist"]

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_mnist(path, *, split="all", n_samples=None, random_state=None):
    """Load MNIST from a local ``.npz`` file or a folder of idx files.

    Parameters
    ----------
    path : str or path-like
        A ``.npz`` with ``X_train``, ``y_train``, ``X_test``, ``y_test`` (the
        images as (n, 28, 28), (n, 1, 28, 28), (n, 28, 28, 1) or (n, 784)
        arrays), or a folder with ``train-images-idx3-ubyte`` (optionally
        ``.gz``) and the other three idx files.
    split : {"all", "train", "test"}, default="all"
        Which part to return; "all" is the 70,000 images, train first.
    n_samples : int, default=None
        Return a random subset of this size (stratification is not needed
        at MNIST's class balance); ``None`` returns everything.
    random_state : int, RandomState instance or None, default=None
        Seed of the subset.

    Returns
    -------
    X : ndarray of shape (n_samples, 1, 28, 28), dtype uint8
        The images.
    y : ndarray of shape (n_samples,), dtype int64
        The digits.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skiic.datasets import load_mnist
    >>> rng = np.random.default_rng(0)
    >>> arrays = {
    ...     "X_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
    ...     "y_train": np.arange(6, dtype=np.uint8),
    ...     "X_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
    ...     "y_test": np.arange(2, dtype=np.uint8),
    ... }
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     np.savez(os.path.join(tmp, "mnist.npz"), **arrays)
    ...     X, y = load_mnist(os.path.join(tmp, "mnist.npz"))
    >>> X.shape, y.tolist()
    ((8, 1, 28, 28), [0, 1, 2, 3, 4, 5, 0, 1])
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test'; got {split!r}.")
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(
            f"No MNIST data at {path}; pass the path of an .npz file or a folder "
            "of idx files (skiic never downloads data)."
        )
    parts = ["train", "test"] if split == "all" else [split]
    if path.is_dir():
        arrays = [_read_idx_pair(path, part) for part in parts]
    else:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{path} holds one array; expected an .npz archive with X_train, "
                "y_train, X_test and y_test, or a folder of idx files."
            )
        with data:
            missing = {f"{a}_{p}" for p in parts for a in "Xy"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks the arrays {sorted(missing)}.")
            arrays = [(data[f"X_{p}"], data[f"y_{p}"]) for p in parts]
    arrays = [
        (images, _labels_of(images, digits, path, part))
        for part, (images, digits) in zip(parts, arrays)
    ]
    X = np.concatenate([a[0] for a in arrays])
    y = np.concatenate([a[1] for a in arrays]).astype(np.int64)
    if X.ndim == 4 and X.shape[1] != 1 and X.shape[-1] == 1:
        X = X[..., 0]  # channels last, one channel
    if X.ndim == 2 and X.shape[1] == 28 * 28:
        X = X.reshape(-1, 28, 28)
    if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[1] != 1):
        raise ValueError(
            f"{path}: the images have shape {X.shape[1:]}; expected grey images "
            "as (28, 28), (1, 28, 28), (28, 28, 1) or 784 flat pixels."
        )
    X = X.reshape(X.shape[0], 1, *X.shape[-2:])
    if n_samples is not None:
        if not 0 < n_samples <= len(X):
            raise ValueError(f"n_samples must be in [1, {len(X)}]; got {n_samples}.")
        rng = check_random_state(random_state)
        keep = np.sort(rng.choice(len(X), n_samples, replace=False))
        X, y = X[keep], y[keep]
    return X, y


def _labels_of(images, digits, path, part):
    """One label per image: a column of labels flattened, anything else named."""
    digits = np.asarray(digits)
    if digits.ndim == 2 and digits.shape[1] == 1:
        digits = digits[:, 0]
    if digits.ndim != 1:
        raise ValueError(
            f"{path}: the {part} labels have shape {digits.shape}; expected one "
            "label per image."
        )
    if len(images) != len(digits):
        raise ValueError(
            f"{path} holds {len(images)} {part} images but {len(digits)} {part} labels."
        )
    return digits


def load_idx(path):
    """Read one idx file (the format of the original MNIST files), gzipped or not.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    ndarray
        Its array, with the shape and type recorded in its header.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from skiic.datasets import load_idx
    >>> dims = (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> header = bytes([0, 0, 0x08, 2]) + dims
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     name = os.path.join(tmp, "a-idx2-ubyte")
    ...     with open(name, "wb") as f:
    ...         _ = f.write(header + bytes(range(6)))
    ...     load_idx(name).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(os.fspath(path))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file.")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(
            f"{path} ends inside its header, which announces {ndim} dimensions "
            "(a truncated or damaged file)."
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    body = len(raw) - (4 + 4 * ndim)
    if body < 0 or body != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(
            f"{path} holds {max(body, 0)} bytes of values; its header says {dims} "
            f"of {dtype.itemsize} bytes each (a truncated or damaged file)."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def _read_idx_pair(folder, part):
    found = []
    for stem in _IDX_FILES[part]:
        candidates = [folder / stem, folder / (stem + ".gz")]
        match = next((c for c in candidates if c.exists()), None)
        if match is None:
            raise FileNotFoundError(f"{folder} has no {stem} (or {stem}.gz).")
        found.append(load_idx(match))
    return found[0], found[1]
