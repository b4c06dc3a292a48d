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


def test_duplicates_are_neighbours_but_never_the_sample_itself():
    X = torch.tensor([[0.0], [0.0], [0.0], [5.0]])
    found = _data.neighbor_indices(_data.ResidentData(X), 2)
    assert all(i not in row for i, row in enumerate(found.tolist()))
    assert set(found[0].tolist()) == {1, 2}


def test_too_many_neighbours_are_rejected():
    with pytest.raises(ValueError, match="between 1 and n_samples - 1 = 3"):
        _data.neighbor_indices(_data.ResidentData(torch.zeros(4, 2)), 4)


@pytest.mark.parametrize("cls", [IICClustering, DeepClusterEstimator])
def test_neighbours_are_searched_once_per_fit(cls, monkeypatch):
    calls = []
    search = _data.neighbor_indices

    def counted(data, n_neighbors):
        calls.append(n_neighbors)
        return search(data, n_neighbors)

    monkeypatch.setattr(_data, "neighbor_indices", counted)
    X = np.random.default_rng(0).random((80, 4))
    cls(3, max_epochs=2, device="cpu", random_state=0).fit(X)
    assert calls == [10]
