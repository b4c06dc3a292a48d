"""Data larger than the device budget: streamed batches, memmaps, bounded memory."""

import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic._data import ResidentData, StreamedData, parse_memory, place_data
from skiic.augment import VectorAugmentation, VirtualAdversarial, nearest_neighbors
from skiic.metrics import matched_accuracy
from skiic.networks import MLPBackbone

FAST = dict(n_init=1, max_epochs=5, n_heads=2, n_head_inits=10, device="cpu")


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=600, centers=4, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


@pytest.mark.parametrize(
    "value, expected",
    [(1024, 1024), ("512MB", 512 * 10**6), ("2 GiB", 2 * 2**30), ("1.5kb", 1500)],
)
def test_parse_memory(value, expected):
    assert parse_memory(value) == expected


def test_parse_memory_rejects_nonsense():
    with pytest.raises(ValueError, match="memory size"):
        parse_memory("lots")


def test_streamed_batches_equal_resident_ones():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, size=(50, 12)).astype(np.uint8)
    offset, scale = np.float32(3.0), np.float32(7.0)
    device = torch.device("cpu")
    resident = place_data(
        X, offset=offset, scale=scale, shape=None, device=device, limit="auto"
    )
    streamed = place_data(
        X, offset=offset, scale=scale, shape=None, device=device, limit=0
    )
    assert isinstance(resident, ResidentData) and isinstance(streamed, StreamedData)
    plans = [(torch.tensor([3, 1, 4]), torch.tensor([1, 5])), (torch.tensor([9, 2]),)]
    for (_, a), (_, b) in zip(resident.load(plans), streamed.load(plans)):
        for ta, tb in zip(a, b):
            assert torch.equal(ta, tb)
    assert streamed.max_rows == 3
    assert torch.equal(
        nearest_neighbors(resident, 3, chunk_size=16),
        nearest_neighbors(streamed, 3, chunk_size=16),
    )


@pytest.mark.parametrize("kind", ["vectors", "adversarial", "images"])
def test_streaming_gives_the_resident_result(blobs, kind):
    extra = {}
    if kind in ("vectors", "adversarial"):
        X, y = blobs
        n_clusters = 4
        adversarial = kind == "adversarial"
        extra = dict(
            augmentation=VirtualAdversarial() if adversarial else VectorAugmentation()
        )
    else:
        from sklearn.datasets import load_digits

        X, y = load_digits(n_class=4, return_X_y=True)
        X, n_clusters = X.reshape(-1, 1, 8, 8), 4
        # the compact CPU network needs a few more epochs (0.944 and 0.896
        # at 10 epochs on seeds 0 and 1, 0.71 at 5)
        extra = dict(max_epochs=10)
    params = {**FAST, **extra}
    resident = IICClustering(n_clusters, random_state=0, **params).fit(X)
    streamed = IICClustering(
        n_clusters, random_state=0, device_memory_limit=0, **params
    ).fit(X)
    assert not resident.streamed_ and streamed.streamed_
    assert np.array_equal(resident.labels_, streamed.labels_)
    assert resident.loss_ == pytest.approx(streamed.loss_, abs=1e-5)
    assert matched_accuracy(y, streamed.labels_) > 0.8


@pytest.mark.parametrize("kind", ["vectors", "images"])
def test_deepcluster_streaming_gives_the_resident_result(blobs, kind):
    """Training batches and every epoch's feature pass go through the stream."""
    if kind == "vectors":
        X, y = blobs
    else:
        from sklearn.datasets import load_digits

        X, y = load_digits(n_class=4, return_X_y=True)
        X = X.reshape(-1, 1, 8, 8)
    params = dict(max_epochs=4, batch_size=128, device="cpu", random_state=0)
    resident = DeepClusterEstimator(4, **params).fit(X)
    streamed = DeepClusterEstimator(4, device_memory_limit=0, **params).fit(X)
    assert not resident.streamed_ and streamed.streamed_
    assert np.array_equal(resident.labels_, streamed.labels_)
    np.testing.assert_allclose(
        resident.history_[:, "train_loss"], streamed.history_[:, "train_loss"]
    )
    assert matched_accuracy(y, streamed.labels_) > 0.8


def _blobs_memmap(path, n_samples):
    X, y = make_blobs(n_samples=n_samples, centers=4, n_features=32, random_state=0)
    stored = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    stored[:] = X
    stored.flush()
    return np.memmap(path, dtype=np.float32, mode="r", shape=X.shape), y


def test_memmap_is_streamed_in_bounded_host_memory(tmp_path):
    """Peak host allocations do not grow with the rows of a memmapped X."""
    params = dict(
        FAST,
        max_epochs=1,
        batch_size=1024,
        n_neighbors=0,
        module=MLPBackbone(32, hidden=(64,)),
        random_state=0,
    )
    peaks, models = {}, {}
    for n_samples in (10_000, 40_000):
        data, y = _blobs_memmap(tmp_path / f"X{n_samples}.dat", n_samples)
        IICClustering(4, **params).fit(data[:2000])  # lazy imports, warm caches
        tracemalloc.start()
        models[n_samples] = IICClustering(4, **params).fit(data)
        peaks[n_samples] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert models[n_samples].streamed_
        assert matched_accuracy(y, models[n_samples].labels_) > 0.9
    extra_rows = 30_000 * 32 * 4  # a float32 copy of the additional rows: 3.8 MB
    assert peaks[40_000] < peaks[10_000] + extra_rows / 4, peaks
    assert np.array_equal(
        models[40_000].predict(data[:100]), models[40_000].labels_[:100]
    )


def test_big_endian_memmap_gives_what_the_array_gives(tmp_path, blobs):
    """Stored big-endian (``>f4``): rows are read in native byte order."""
    X, _ = blobs
    path = tmp_path / "big_endian.dat"
    stored = np.memmap(path, dtype=">f4", mode="w+", shape=X.shape)
    stored[:] = X
    stored.flush()
    data = np.memmap(path, dtype=">f4", mode="r", shape=X.shape)
    params = dict(FAST, max_epochs=2, random_state=0)
    from_file = IICClustering(4, **params).fit(data)
    from_array = IICClustering(4, **params).fit(X)
    assert from_file.streamed_
    np.testing.assert_array_equal(from_file.labels_, from_array.labels_)
    np.testing.assert_array_equal(from_file.predict(data), from_array.labels_)
    assert from_file.score(data) == pytest.approx(from_array.score(X), abs=1e-6)


@pytest.mark.parametrize("layout", ["fortran", "every other row", "some columns"])
def test_memmap_of_any_layout_is_streamed(tmp_path, blobs, layout):
    """Not only C-ordered memmaps: a Fortran-ordered .npy, or a slice of a
    memmap, stays on disk (they were read whole into memory) and gives what
    the same rows in memory give."""
    X, _ = blobs
    X = np.hstack([X, X[:, ::-1] ** 2])
    path = tmp_path / "X.npy"
    np.save(path, np.asfortranarray(X) if layout == "fortran" else X)
    data = np.load(path, mmap_mode="r")
    if layout == "every other row":
        data = data[::2]
    elif layout == "some columns":
        data = data[:, :2]
    assert isinstance(data, np.memmap) and not data.flags.c_contiguous
    params = dict(FAST, max_epochs=2, random_state=0)
    from_file = IICClustering(4, **params).fit(data)
    from_array = IICClustering(4, **params).fit(np.array(data))
    assert from_file.streamed_ and not from_array.streamed_
    np.testing.assert_array_equal(from_file.labels_, from_array.labels_)


def test_transposed_image_memmap_is_read_into_memory_with_a_warning(tmp_path):
    images = np.random.default_rng(0).random((40, 8, 8, 3), dtype=np.float32)
    np.save(tmp_path / "images.npy", images)
    channels_first = np.load(tmp_path / "images.npy", mmap_mode="r").transpose(
        0, 3, 1, 2
    )
    model = IICClustering(2, **dict(FAST, max_epochs=1, n_head_inits=0))
    with pytest.warns(UserWarning, match="cannot be flattened without a copy") as seen:
        model.fit(channels_first)
    assert seen[0].filename == __file__  # the user's line
    assert not model.streamed_ and model.input_shape_ == (3, 8, 8)


def test_float64_memmap_detail_lost_in_float32_is_named(tmp_path, blobs):
    X, _ = blobs
    path = tmp_path / "near_a_million.npy"
    np.save(path, 1e6 + 1e-3 * X.astype(np.float64))
    with pytest.warns(UserWarning, match="vary too little for float32"):
        # ... after which the samples are one point, as in memory
        with pytest.raises(ValueError, match="identical in float32"):
            IICClustering(4, **FAST).fit(np.load(path, mmap_mode="r"))
    # Integers near a million are exact in float32: no warning.
    np.save(path, 1e6 + np.round(X).astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        IICClustering(4, **dict(FAST, max_epochs=1)).fit(np.load(path, mmap_mode="r"))


@pytest.mark.parametrize("dtype", [np.int64, np.uint32])
def test_integer_memmap_detail_lost_in_float32_is_named(tmp_path, blobs, dtype):
    """Integers from 2**24 on are not all float32 numbers; a memmap of them
    gets the array's warning and error (it got neither, then a collapse)."""
    X, _ = blobs
    path = tmp_path / "ids.npy"
    np.save(path, (np.round(X * 5.0).astype(np.int64) + 2**31).astype(dtype))
    with pytest.warns(UserWarning, match="vary too little for float32"):
        with pytest.raises(ValueError, match="identical in float32"):
            IICClustering(4, **FAST).fit(np.load(path, mmap_mode="r"))


def test_memmap_with_nan_is_rejected(tmp_path):
    path = tmp_path / "bad.dat"
    stored = np.memmap(path, dtype=np.float64, mode="w+", shape=(20000, 3))
    stored[:] = 1.0
    stored[15000, 1] = np.nan
    stored.flush()
    with pytest.raises(ValueError, match="NaN"):
        IICClustering(3, **FAST).fit(
            np.memmap(path, dtype=np.float64, mode="r", shape=(20000, 3))
        )


def test_one_dimensional_memmap_is_named_whole(tmp_path):
    """scikit-learn's message, of the memmap's shape (it quoted a slice of two)."""
    np.save(tmp_path / "flat.npy", np.arange(800, dtype=np.float32))
    with pytest.raises(ValueError, match=r"got a 1D memmap of shape \(800,\)"):
        IICClustering(3, **FAST).fit(np.load(tmp_path / "flat.npy", mmap_mode="r"))


@pytest.mark.parametrize("shape", [(0, 3), (0, 8, 8), (0, 1, 8, 8)])
def test_empty_memmap_is_rejected_by_name(tmp_path, shape):
    np.save(tmp_path / "empty.npy", np.zeros(shape, dtype=np.float32))
    X = np.load(tmp_path / "empty.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="0 sample"):
        IICClustering(3, **FAST).fit(X)


@pytest.mark.parametrize("early_stopping", [False, True], ids=["plain", "early-stop"])
def test_autoencoder_streaming_gives_the_resident_result(early_stopping):
    """Training batches and the held-out error go through the stream."""
    from sklearn.datasets import load_digits

    X = load_digits(n_class=4).data.reshape(-1, 1, 8, 8)
    params = dict(
        max_epochs=3,
        batch_size=128,
        early_stopping=early_stopping,
        device="cpu",
        random_state=0,
    )
    resident = AutoEncoderEmbedder(3, **params).fit(X)
    streamed = AutoEncoderEmbedder(3, device_memory_limit=0, **params).fit(X)
    assert not resident.streamed_ and streamed.streamed_
    np.testing.assert_array_equal(resident.transform(X), streamed.transform(X))
    keys = ["train_loss"] + (["valid_loss"] if early_stopping else [])
    for key in keys:
        np.testing.assert_array_equal(
            resident.history_[:, key], streamed.history_[:, key]
        )
