"""The nearest-neighbour search the estimators run once per fit."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from skiic import DeepClusterEstimator, IICClustering, _data
from skiic.augment import nearest_neighbors


@pytest.mark.parametrize("shape", [(300, 5), (200, 1, 6, 6)], ids=["vectors", "images"])
def test_cpu_neighbours_equal_brute_force_search(shape):
    X = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    found = _data.neighbor_indices(_data.ResidentData(X), 7)
    flat = X.reshape(len(X), -1).numpy()
    brute = NearestNeighbors(n_neighbors=7, algorithm="brute").fit(flat)
    np.testing.assert_array_equal(
        found.numpy(), brute.kneighbors(return_distance=False)
    )
    # the blockwise torch search, used on accelerators, agrees
    np.testing.assert_array_equal(found.numpy(), nearest_neighbors(X, 7).numpy())


def test_cpu_search_in_several_queries_equals_one(monkeypatch):
    X = np.random.default_rng(1).random((250, 3), dtype=np.float32)
    X[49:60] = 5.0  # far from the rest: 11 equal samples, each among equals
    expected = NearestNeighbors(n_neighbors=4, algorithm="brute").fit(X)
    expected = expected.kneighbors(return_distance=False)
    monkeypatch.setattr(_data, "NEIGHBOR_QUERY_ROWS", 64)
    reports = []
    found = _data.neighbor_indices(
        _data.ResidentData(torch.from_numpy(X)),
        4,
        progress=lambda done, total: reports.append((done, total)),
    ).numpy()
    assert all(i not in row for i, row in enumerate(found.tolist()))
    others = np.r_[0:49, 60:250]
    np.testing.assert_array_equal(found[others], expected[others])
    assert np.isin(found[49:60], np.arange(49, 60)).all()
    assert reports == [(64, 250), (128, 250), (192, 250), (250, 250)]


def test_search_along_axes_equals_brute_force_on_the_coordinates(monkeypatch):
    """With ``axes`` the search runs on the samples' coordinates along them,
    for resident and streamed samples alike (streamed: read in chunks)."""
    rng = np.random.default_rng(2)
    X = rng.random((230, 12), dtype=np.float32)
    axes = np.linalg.qr(rng.normal(size=(12, 3)))[0].astype(np.float32)
    expected = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(X @ axes)
    expected = expected.kneighbors(return_distance=False)
    monkeypatch.setattr(_data, "NEIGHBOR_QUERY_ROWS", 100)
    streamed = _data.StreamedData(
        X, offset=0.0, scale=1.0, shape=None, device=torch.device("cpu")
    )
    for data in (_data.ResidentData(torch.from_numpy(X)), streamed):
        found = _data.neighbor_indices(data, 5, axes=axes)
        np.testing.assert_array_equal(found.numpy(), expected)
    # not the neighbours in all 12 features
    assert not np.array_equal(
        _data.neighbor_indices(_data.ResidentData(torch.from_numpy(X)), 5).numpy(),
        expected,
    )


def test_distances_to_partners_are_computed_from_the_rows():
    X = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    partners = torch.tensor([1, 2, 0])
    streamed = _data.StreamedData(
        X.numpy(), offset=0.0, scale=1.0, shape=None, device=torch.device("cpu")
    )
    for data in (_data.ResidentData(X), streamed):
        distances = _data.distances_to(data, partners)
        np.testing.assert_allclose(distances.numpy(), [5.0, 5.0, 10.0])


def test_duplicates_are_neighbours_but_never_the_sample_itself():
    X = torch.tensor([[0.0], [0.0], [0.0], [5.0]])
    found = _data.neighbor_indices(_data.ResidentData(X), 2)
    assert all(i not in row for i, row in enumerate(found.tolist()))
    assert set(found[0].tolist()) == {1, 2}


def test_distinct_rows_finds_every_copy(tmp_path):
    """First occurrences in order and each row's copy; None without copies;
    images and an ``np.memmap`` read in chunks alike."""
    rng = np.random.default_rng(0)
    base = rng.random((40, 6), dtype=np.float32)
    picks = rng.integers(0, 40, 300)
    X = base[picks]
    first, inverse = _data.distinct_rows(X)
    assert np.array_equal(first, np.sort(first))
    np.testing.assert_array_equal(X[first][inverse], X)
    assert len(first) == len(np.unique(picks))
    # a copy is recognised whatever its position; distinct rows never merge
    _, expected = np.unique(X, axis=0, return_inverse=True)
    assert len(np.unique(expected.reshape(-1))) == len(first)
    np.testing.assert_array_equal(
        expected.reshape(-1)[first][inverse], expected.reshape(-1)
    )
    assert _data.distinct_rows(base) is None
    np.testing.assert_array_equal(
        _data.distinct_rows(X.reshape(300, 1, 2, 3))[0], first
    )
    stored = np.memmap(tmp_path / "x.dat", dtype=np.float32, mode="w+", shape=X.shape)
    stored[:] = X
    original = _data._HASH_ROWS
    try:
        _data._HASH_ROWS = 64  # five chunks
        chunked = _data.distinct_rows(stored)
    finally:
        _data._HASH_ROWS = original
    np.testing.assert_array_equal(chunked[0], first)
    np.testing.assert_array_equal(chunked[1], inverse)
    # the estimators leave a memmap's rows on disk
    assert _data.distinct_rows_in_memory(stored) is None
    np.testing.assert_array_equal(_data.distinct_rows_in_memory(X)[1], inverse)


def test_a_row_with_minus_zero_is_a_copy():
    """-0.0 and 0.0 are one value (np.round(-0.03, 1) gives -0.0), so the rows
    are copies, whose bytes differ."""
    X = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0], [2.0, 3.0], [5.0, 1.0]])
    first, inverse = _data.distinct_rows(X)
    assert first.tolist() == [0, 3, 4]
    assert inverse.tolist() == [0, 0, 0, 1, 2]


def test_distinct_rows_among_a_subset_are_those_of_the_subset():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(200, 2)).astype(np.float32)  # 16 rows at most
    for rows in (np.sort(rng.choice(200, 50, replace=False)), np.arange(3, 190)):
        among = _data.distinct_rows_among(_data.distinct_rows(X), rows)
        direct = _data.distinct_rows(X[rows])
        np.testing.assert_array_equal(among[0], direct[0])
        np.testing.assert_array_equal(among[1], direct[1])
    assert _data.distinct_rows_among(_data.distinct_rows(X), np.array([0])) is None
    assert _data.distinct_rows_among(None, np.arange(10)) is None


def test_search_among_distinct_rows_is_the_same_resident_or_streamed():
    """Copies share their neighbours, none of them a copy, along axes or not,
    whether the rows are resident or streamed (read through ``_RowsOf``)."""
    rng = np.random.default_rng(3)
    X = rng.random((60, 5), dtype=np.float32)[rng.integers(0, 60, 200)]
    distinct = _data.distinct_rows(X)
    axes = np.linalg.qr(rng.normal(size=(5, 2)))[0].astype(np.float32)
    streamed = _data.StreamedData(
        X, offset=0.0, scale=1.0, shape=None, device=torch.device("cpu")
    )
    for along in (None, axes):
        results = [
            _data.neighbor_indices(data, 4, axes=along, distinct=distinct).numpy()
            for data in (_data.ResidentData(torch.from_numpy(X)), streamed)
        ]
        np.testing.assert_array_equal(results[0], results[1])
        assert not (X[results[0]] == X[:, None, :]).all(axis=2).any()
        first, inverse = distinct
        np.testing.assert_array_equal(results[0], results[0][first][inverse])


def test_distinct_rows_merges_nothing_on_a_hash_collision(monkeypatch):
    """Rows are checked against their distinct row: should two different rows
    share a hash, no rows are merged at all."""
    X = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]], dtype=np.float32)
    assert _data.distinct_rows(X) is not None

    real_unique = np.unique

    def colliding_unique(values, **kwargs):  # every row hashed alike
        return real_unique(np.zeros_like(values), **kwargs)

    monkeypatch.setattr(_data.np, "unique", colliding_unique)
    assert _data.distinct_rows(X) is None


def test_too_many_neighbours_are_rejected():
    with pytest.raises(ValueError, match="between 1 and n_samples - 1 = 3"):
        _data.neighbor_indices(_data.ResidentData(torch.zeros(4, 2)), 4)


@pytest.mark.parametrize("cls", [IICClustering, DeepClusterEstimator])
def test_neighbours_are_searched_once_per_fit(cls, monkeypatch):
    calls = []
    search = _data.neighbor_indices

    def counted(data, n_neighbors, **kwargs):
        calls.append(n_neighbors)
        return search(data, n_neighbors, **kwargs)

    monkeypatch.setattr(_data, "neighbor_indices", counted)
    X = np.random.default_rng(0).random((80, 4))
    cls(3, max_epochs=2, device="cpu", random_state=0).fit(X)
    # IIC's vector default: neighbours as partners and, from the same search,
    # the lengths of the adversarial perturbations
    assert calls == [10]


def test_map_samples_chunks_by_device():
    """Predictions run in chunks of 256 on the CPU (a convolution's maps stay
    in the caches) and of INFERENCE_BATCH elsewhere; the results are the same."""
    assert _data.inference_batch(torch.device("cpu")) == 256
    assert _data.CPU_INFERENCE_BATCH == 256
    assert _data.inference_batch("cuda") == _data.INFERENCE_BATCH > 256
    X = torch.arange(1000.0).reshape(500, 2)
    sizes = []

    def double(x):
        sizes.append(len(x))
        return 2 * x

    out = _data.map_samples(double, _data.ResidentData(X), torch.device("cpu"))
    assert sizes == [256, 244]
    assert torch.equal(out, 2 * X)


def test_small_integer_images_become_float32_without_a_float64_copy():
    """uint8 images went through float64 (scikit-learn's first dtype), twice
    the float32 copy in memory and a precision check they cannot fail: 60,000
    MNIST images took 1.2 to 2.5 s and 376 MB at peak, now 0.5 s and 188 MB."""
    import tracemalloc

    from skiic._validation import check_input

    X = np.random.default_rng(0).integers(0, 256, (5000, 1, 28, 28), dtype=np.uint8)
    tracemalloc.start()
    flat, shape = check_input(IICClustering(10), X, reset=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert flat.dtype == np.float32 and shape == (1, 28, 28)
    np.testing.assert_array_equal(flat, X.reshape(5000, -1))
    assert peak < 1.5 * flat.nbytes, (peak, flat.nbytes)
