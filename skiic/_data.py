"""Samples on the device: placement, scaling, streaming, batches of indices.

Data that fits is copied to the device once (:class:`ResidentData`); larger
data stays in host memory or its ``np.memmap`` and is streamed batch by batch
(:class:`StreamedData`). Training batches are index tensors drawn on the
device (:class:`DeviceBatches`); :func:`map_samples` runs a function over a
source chunk by chunk, for inference.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from ._device import autocast, autocast_dtype

__all__ = [
    "INFERENCE_BATCH",
    "inference_batch",
    "DeviceBatches",
    "Epochs",
    "ResidentData",
    "StreamedData",
    "map_samples",
    "parse_memory",
    "place_data",
    "scale_on_device",
    "scaling_tensors",
    "to_device",
]

# Samples pushed through the network at a time when predicting: large chunks
# on accelerators; on the CPU, 256 keeps a convolution's maps in the caches
# (the MNIST features of the default network: 5.0 s per 10,000 images at 256
# against 8.2 s at 4,096, one thread).
INFERENCE_BATCH, CPU_INFERENCE_BATCH = 4096, 256


def inference_batch(device: torch.device) -> int:
    """Samples per chunk when a network predicts on ``device``."""
    on_cpu = torch.device(device).type == "cpu"
    return CPU_INFERENCE_BATCH if on_cpu else INFERENCE_BATCH


def to_device(X: np.ndarray, device: torch.device, shape=None) -> Tensor:
    """Copy a host array to the device once, optionally reshaped (images).

    On the CPU the tensor shares the array's memory; skiic only ever reads it,
    so read-only arrays (e.g. from pandas) are fine and not copied.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not")
        tensor = torch.from_numpy(np.ascontiguousarray(X))
    if shape is not None:
        tensor = tensor.reshape(tensor.shape[0], *shape)
    if device.type == "cuda":
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def parse_memory(value) -> int:
    """Bytes from an int or a string such as ``"512MB"`` or ``"2 GiB"``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    match = re.fullmatch(
        r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*", str(value).lower()
    )
    if match is None:
        raise ValueError(
            f"A memory size must be a number of bytes or a string such as '512MB' "
            f"or '2GB'; got {value!r}."
        )
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    return int(float(number) * base ** " kmgt".index(unit or " "))


def scale_on_device(
    x: Tensor, offset: Tensor, scale: Tensor, shape=None, projection=None
) -> Tensor:
    """``(x - offset) / scale`` as float32, reshaped to images when ``shape`` is set.

    With a ``projection`` matrix (features by components), the scaled rows
    are then multiplied by it. The one place where the estimators' input
    scaling is applied to tensors, so that resident, streamed and predicted
    batches agree to the last bit.
    """
    x = torch.div(torch.sub(x.float(), offset), scale)
    if projection is not None:
        x = x @ projection
    if shape is not None:
        x = x.reshape(x.shape[0], *shape)
    return x


def scaling_tensors(offset, scale, device: torch.device, projection=None):
    """The estimator's scaling constants as float32 tensors on ``device``:
    (offset, scale, projection or None)."""
    return tuple(
        None
        if value is None
        else torch.as_tensor(np.asarray(value, dtype=np.float32), device=device)
        for value in (offset, scale, projection)
    )


class ResidentData:
    """Scaled float32 samples held on the device as one tensor.

    ``take(idx)`` is plain indexing; ``load(plans)`` yields each plan (a tuple
    of index tensors) with the matching sample tensors.
    """

    streamed = False

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor
        self.device = tensor.device
        self.n_samples = int(tensor.shape[0])

    @property
    def index_device(self) -> torch.device:
        """Where index tensors for :meth:`take` should live."""
        return self.device

    def take(self, idx: Tensor) -> Tensor:
        return self.tensor[idx]

    def load(self, plans: Iterable[tuple[Tensor, ...]]):
        for plan in plans:
            yield plan, tuple(self.take(idx) for idx in plan)


class StreamedData:
    """Samples left in host memory (or an ``np.memmap``), sent to the device per batch.

    Rows are gathered on the host in their stored dtype (uint8 images travel
    four times lighter than float32), pinned, copied with ``non_blocking=True``
    and scaled on the device. :meth:`load` prefetches: while the device works
    on one batch, a background thread gathers and pins the next.

    Parameters
    ----------
    array : ndarray or np.memmap of shape (n_samples, n_features)
        Unscaled samples, any real dtype.
    offset, scale : ndarray or float
        The estimator's input scaling: samples become ``(x - offset) / scale``.
    shape : tuple of int or None
        ``(C, H, W)`` of image samples, ``None`` for vectors.
    device : torch.device
        Where batches go.
    projection : ndarray of shape (n_features, n_components) or None
        Multiplies the scaled rows (:func:`scale_on_device`).
    """

    streamed = True
    index_device = torch.device("cpu")

    def __init__(
        self, array, *, offset, scale, shape, device: torch.device, projection=None
    ) -> None:
        self.array = array
        self.device = device
        self.n_samples = int(array.shape[0])
        self.shape = shape
        self.offset, self.scale, self.projection = scaling_tensors(
            offset, scale, device, projection
        )
        self.max_rows = 0  # largest number of rows held on the device by one take

    def _gather(self, idx: Tensor) -> Tensor:
        positions = idx.cpu().numpy()
        order = np.argsort(positions, kind="stable")
        # In native byte order: torch takes no other (a big-endian memmap).
        dtype = self.array.dtype.newbyteorder("=")
        rows = np.empty((len(positions), self.array.shape[1]), dtype=dtype)
        rows[order] = self.array[positions[order]]  # sorted reads suit a memmap
        host = torch.from_numpy(rows)
        return host.pin_memory() if self.device.type == "cuda" else host

    def _to_device(self, host: Tensor) -> Tensor:
        self.max_rows = max(self.max_rows, int(host.shape[0]))
        x = host.to(self.device, non_blocking=True)
        return scale_on_device(x, self.offset, self.scale, self.shape, self.projection)

    def take(self, idx: Tensor) -> Tensor:
        return self._to_device(self._gather(idx))

    def load(self, plans: Iterable[tuple[Tensor, ...]]):
        with ThreadPoolExecutor(max_workers=1) as pool:

            def submit(plan):
                return plan, [pool.submit(self._gather, idx) for idx in plan]

            pending = None
            for plan in plans:
                upcoming = submit(plan)
                if pending is not None:
                    yield self._finish(pending)
                pending = upcoming
            if pending is not None:
                yield self._finish(pending)

    def _finish(self, pending):
        plan, futures = pending
        return plan, tuple(self._to_device(f.result()) for f in futures)


def place_data(
    X, *, offset, scale, shape, device: torch.device, limit, projection=None
):
    """Put samples on the device when they fit in ``limit`` bytes, else stream them.

    They are scaled there (and projected, with ``projection``; see
    :func:`scale_on_device`).

    ``limit`` is a number of bytes or ``"auto"``: on CUDA, half of the free
    device memory; elsewhere everything in host memory stays resident, and an
    ``np.memmap`` is streamed (it is on disk for a reason).
    """
    n_bytes = X.shape[0] * X.shape[1] * 4
    if limit == "auto":
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = n_bytes <= free // 2
        else:
            fits = not isinstance(X, np.memmap)
    else:
        fits = n_bytes <= parse_memory(limit)
    if fits:
        tensor = to_device(np.asarray(X, dtype=np.float32), device)
        offset, scale, projection = scaling_tensors(offset, scale, device, projection)
        return ResidentData(scale_on_device(tensor, offset, scale, shape, projection))
    return StreamedData(
        X,
        offset=offset,
        scale=scale,
        shape=shape,
        device=device,
        projection=projection,
    )


class DeviceBatches:
    """Shuffled batches of sample indices, drawn on the device each epoch.

    The number of batches is ``max(1, n_samples // batch_size)`` and the
    permutation is split into nearly equal parts, so every batch holds at least
    ``min(batch_size, n_samples)`` samples (BatchNorm and the IIC joint
    distribution both dislike tiny batches) and no sample is dropped.

    Parameters
    ----------
    n_samples : int
        Samples in the data set.
    batch_size : int
        Target size of a batch.
    device : torch.device
        Where the indices live.
    """

    def __init__(self, n_samples: int, batch_size: int, device: torch.device) -> None:
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.device = device

    def __len__(self) -> int:
        return max(1, self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator[Tensor]:
        perm = torch.randperm(self.n_samples, device=self.device)
        yield from torch.tensor_split(perm, len(self))


class Epochs:
    """Batches an objective can return: each ``iter`` starts a new epoch from
    ``make()``, e.g. a generator fetching the batches through a data source."""

    def __init__(self, make: Callable[[], Iterable]) -> None:
        self.make = make

    def __iter__(self):
        return iter(self.make())


@torch.no_grad()
def map_samples(
    fn: Callable[[Tensor], Tensor], data, device: torch.device, indices=None
) -> Tensor:
    """Apply ``fn(batch)`` to the samples of a data source, chunk by chunk.

    ``data`` is a :class:`ResidentData` or :class:`StreamedData`; chunks of
    :func:`inference_batch` samples (of ``indices``, on ``data.index_device``,
    default all samples in order) are read through its ``load``, so a streamed
    source prefetches the next chunk while ``fn`` runs. ``fn`` runs under
    autocast on ``device``; the results are concatenated there. The caller
    sets the module's mode.
    """
    if indices is None:
        indices = torch.arange(data.n_samples, device=data.index_device)
    amp_dtype = autocast_dtype(device)
    plans = ((chunk,) for chunk in indices.split(inference_batch(device)))
    outputs = []
    for _, (x,) in data.load(plans):
        with autocast(device, amp_dtype):
            outputs.append(fn(x))
    return torch.cat(outputs)


def planning_generator(device) -> torch.Generator:
    """A generator on ``device`` seeded from torch's global one, for draws made
    while batches are planned (partners, neighbours): they then do not
    depend on how far ahead a streamed data source plans (prefetching)."""
    seed = int(torch.randint(2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


# Rows per query of the CPU neighbour search: progress is reported after each.
NEIGHBOR_QUERY_ROWS = 20_000


# distinct_rows hashes at most this many rows, and about this many bytes, at a
# time.
_HASH_ROWS, _HASH_BYTES = 65_536, 1 << 24


def distinct_rows(X) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct rows of ``X``, or None when no row repeats another.

    Returns ``(first, inverse)``: the index of each distinct row's first
    occurrence, in increasing order, and for every row the position in
    ``first`` of its copy. Rows are compared by value: by their bytes (with
    -0.0 read as 0.0), through a 64-bit hash computed a chunk of at most
    ``_HASH_ROWS`` rows and about ``_HASH_BYTES`` bytes at a time (an
    ``np.memmap`` is read in chunks, never whole); every row is then checked
    against its distinct row, and a hash collision, should one happen,
    counts every row distinct.

    Examples
    --------
    >>> import numpy as np
    >>> from skiic._data import distinct_rows
    >>> first, inverse = distinct_rows(np.array([[1.0, 2], [3, 4], [1, 2]]))
    >>> first.tolist(), inverse.tolist()
    ([0, 1], [0, 1, 0])
    >>> distinct_rows(np.eye(3)) is None
    True
    """
    n = X.shape[0]
    width = int(np.prod(X.shape[1:])) * X.dtype.itemsize
    n_words = -(-width // 8)
    rng = np.random.default_rng(0)
    weights = rng.integers(0, 2**63, n_words, dtype=np.uint64) * 2 + 1  # odd
    hashes = np.empty(n, dtype=np.uint64)
    chunk = max(1, min(_HASH_ROWS, _HASH_BYTES // (n_words * 8)))
    for start in range(0, n, chunk):
        rows = np.ascontiguousarray(X[start : start + chunk])
        if rows.dtype.kind == "f":
            rows = rows + rows.dtype.type(0)  # -0.0 becomes 0.0: equal rows, one hash
        raw = rows.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), width)
        padded = np.zeros((len(rows), n_words * 8), dtype=np.uint8)
        padded[:, :width] = raw
        # Wrapping uint64 arithmetic: a multilinear hash of the row's words.
        hashes[start : start + len(rows)] = (padded.view(np.uint64) * weights).sum(
            axis=1, dtype=np.uint64
        )
    groups = _groups(hashes)
    if groups is None:
        return None
    first, inverse = groups
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        copies = first[inverse[start:stop]]
        if not np.array_equal(np.asarray(X[start:stop]), np.asarray(X[copies])):
            return None  # a collision: no rows are merged
    return first, inverse


def distinct_rows_in_memory(X) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`distinct_rows` of ``X``, or None for an ``np.memmap``: its rows
    stay on disk, and the hashes would hold host memory that grows with them."""
    return None if isinstance(X, np.memmap) else distinct_rows(X)


def distinct_rows_among(distinct, rows: np.ndarray):
    """:func:`distinct_rows` of ``X[rows]``, from ``distinct``, those of ``X``.

    None when ``distinct`` is None or no row of ``X[rows]`` repeats another;
    else ``(first, inverse)`` as positions in ``rows``.

    Examples
    --------
    >>> import numpy as np
    >>> from skiic._data import distinct_rows, distinct_rows_among
    >>> X = np.array([[1.0], [2.0], [1.0], [3.0], [2.0]])
    >>> first, inverse = distinct_rows_among(distinct_rows(X), np.array([1, 2, 4]))
    >>> first.tolist(), inverse.tolist()
    ([0, 1], [0, 1, 0])
    >>> distinct_rows_among(distinct_rows(X), np.array([0, 1, 3])) is None
    True
    """
    return None if distinct is None else _groups(distinct[1][rows])


def _groups(keys: np.ndarray):
    """``(first, inverse)`` of equal ``keys`` as :func:`distinct_rows` gives
    them (first occurrences in increasing order), or None when all differ."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == len(keys):
        return None
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def neighbor_indices(
    data, n_neighbors: int, *, progress=None, axes=None, distinct=None
) -> Tensor:
    """Indices of each sample's ``n_neighbors`` nearest neighbours, itself excluded.

    Euclidean distance on the scaled, flattened samples, or on their
    coordinates along ``axes`` (an ndarray of shape (features, axes)) when
    given. Data resident on the CPU goes to scikit-learn's
    ``NearestNeighbors`` (tree or brute force, as it judges fastest), queried
    ``NEIGHBOR_QUERY_ROWS`` samples at a time with ``progress(done,
    n_samples)`` called after each query when there are several; on an
    accelerator, or streamed, the blockwise torch search of
    :func:`skiic.augment.nearest_neighbors` runs where the data is. The result
    lives on the data's device.

    ``distinct``, from :func:`distinct_rows` of the samples, searches among
    the distinct rows only: a copy of a sample is never its neighbour, copies
    share their neighbours, and there are at most one fewer than the
    distinct rows (where they are fewer than two, it is ignored).
    """
    if distinct is not None and len(distinct[0]) >= 2:
        first, inverse = (torch.as_tensor(a) for a in distinct)
        k = min(n_neighbors, len(first) - 1)
        among = neighbor_indices_among(data, first, k, progress=progress, axes=axes)
        first, inverse = first.to(among.device), inverse.to(among.device)
        return first[among][inverse]
    if axes is not None:
        data = ResidentData(_coordinates(data, axes))
    if isinstance(data, ResidentData) and data.device.type == "cpu":
        if not 0 < n_neighbors < data.n_samples:
            raise ValueError(
                f"n_neighbors must be between 1 and n_samples - 1 = "
                f"{data.n_samples - 1}; got {n_neighbors}."
            )
        X = data.tensor.reshape(data.n_samples, -1).numpy()
        return torch.from_numpy(_sklearn_neighbors(X, n_neighbors, progress))
    from .augment import nearest_neighbors

    return nearest_neighbors(data, n_neighbors)


def _coordinates(data, axes) -> Tensor:
    """The scaled samples of ``data`` along ``axes`` (features by axes), on
    the data's device, in float32 (:func:`map_samples` without its autocast)."""
    matrix = torch.as_tensor(axes, dtype=torch.float32, device=data.device)

    def project(x):
        with torch.autocast(device_type=data.device.type, enabled=False):
            return x.reshape(len(x), -1).float() @ matrix

    return map_samples(project, data, data.device)


def neighbor_indices_among(
    data, rows: Tensor, n_neighbors: int, *, progress=None, axes=None, distinct=None
):
    """:func:`neighbor_indices` within the samples ``rows`` of ``data`` only.

    Row ``i`` of the result holds positions in ``rows`` (not sample indices)
    of the neighbours of sample ``rows[i]``; the other samples (say, held out
    for validation) are never among them. Only data resident on the CPU is
    copied (for scikit-learn's search); elsewhere the rows are read in place.
    ``axes`` as for :func:`neighbor_indices`; ``distinct`` too, of the
    samples ``rows`` (positions in ``rows``).
    """
    rows = rows.to(data.index_device)
    everything = torch.arange(data.n_samples, device=rows.device)
    kwargs = dict(progress=progress, axes=axes, distinct=distinct)
    if len(rows) == data.n_samples and torch.equal(rows, everything):
        return neighbor_indices(data, n_neighbors, **kwargs)
    if isinstance(data, ResidentData) and data.device.type == "cpu":
        subset = ResidentData(data.take(rows))
    else:
        subset = _RowsOf(data, rows)
    return neighbor_indices(subset, n_neighbors, **kwargs)


class _RowsOf:
    """The samples ``rows`` of a streamed data source, as a data source."""

    def __init__(self, data, rows: Tensor) -> None:
        self.data, self.rows = data, rows
        self.n_samples = len(rows)
        self.device, self.index_device = data.device, data.index_device

    def take(self, idx: Tensor) -> Tensor:
        return self.data.take(self.rows[idx.to(self.rows.device)])

    load = ResidentData.load  # plan by plan through take


def distances_to(data, partners: Tensor) -> Tensor:
    """Euclidean distance from each sample to the sample ``partners[i]``.

    ``data`` is a tensor or a data source (``n_samples``, ``index_device``,
    ``take``). Computed from the rows themselves, chunk by chunk, the same way
    whichever search found the partners (float32, on the index device).
    """
    if isinstance(data, Tensor):
        n, index_device, take = data.shape[0], data.device, data.__getitem__
    else:
        n, index_device, take = data.n_samples, data.index_device, data.take
    partners = partners.to(index_device)
    out = []
    for idx in torch.arange(n, device=index_device).split(INFERENCE_BATCH):
        a = take(idx).reshape(len(idx), -1).float()
        b = take(partners[idx]).reshape(len(idx), -1).float()
        out.append((a - b).norm(dim=1).to(index_device))
    return torch.cat(out)


def _sklearn_neighbors(X, n_neighbors, progress):
    """scikit-learn's search, each sample excluded from its own neighbours (as
    ``kneighbors()`` without ``X`` does, even among duplicates), in queries of
    ``NEIGHBOR_QUERY_ROWS`` rows."""
    from joblib import parallel_config
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    # Sequential: inside a Dask worker, scikit-learn's own joblib calls
    # would hand the worker's thread to another task, and two fits running
    # at once in one process share torch's random number generator.
    with parallel_config(backend="sequential"):
        index = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(X)
        found = []
        for start in range(0, n, NEIGHBOR_QUERY_ROWS):
            stop = min(start + NEIGHBOR_QUERY_ROWS, n)
            indices = index.kneighbors(X[start:stop], return_distance=False)
            # Drop the sample itself, or, where duplicates hid it, the first.
            keep = indices != np.arange(start, stop)[:, None]
            keep[keep.all(axis=1), 0] = False
            found.append(indices[keep].reshape(stop - start, n_neighbors))
            if progress is not None and n > NEIGHBOR_QUERY_ROWS:
                progress(stop, n)
    return np.concatenate(found)
