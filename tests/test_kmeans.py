"""The torch k-means of skiic._kmeans against scikit-learn's KMeans."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from skiic._kmeans import assign, kmeans, kmeans_plusplus


def _data(name):
    if name == "digits":
        from sklearn.datasets import load_digits

        X = load_digits().data
        # integer pixels tie exactly in distance; float rounding then decides
        # ties differently in each implementation, so break them
        X = X + np.random.default_rng(0).normal(scale=0.01, size=X.shape)
    else:
        X, _ = make_blobs(n_samples=500, centers=6, n_features=5, random_state=1)
    return X.astype(np.float32)


@pytest.mark.parametrize("n_clusters", [3, 10, 40], ids=lambda k: f"k={k}")
@pytest.mark.parametrize("name", ["digits", "blobs"])
def test_lloyd_from_the_same_centres_matches_sklearn(name, n_clusters):
    X = _data(name)
    init = X[np.random.default_rng(0).choice(len(X), n_clusters, replace=False)]
    ref = KMeans(n_clusters, init=init, n_init=1, algorithm="lloyd").fit(X)
    ours = kmeans(torch.from_numpy(X), n_clusters, init=torch.from_numpy(init))
    assert adjusted_rand_score(ref.labels_, ours.labels.numpy()) == 1.0
    assert np.allclose(ours.centers.numpy(), ref.cluster_centers_, atol=1e-3)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-4)
    assert ours.n_iter == ref.n_iter_


@pytest.mark.parametrize("n_clusters", [4, 10, 50], ids=lambda k: f"k={k}")
@pytest.mark.parametrize("name", ["digits", "blobs"])
def test_kmeans_plusplus_reaches_sklearns_inertia(name, n_clusters):
    X = _data(name)
    ref = KMeans(n_clusters, n_init=5, random_state=0).fit(X)
    torch.manual_seed(0)
    ours = kmeans(torch.from_numpy(X), n_clusters, n_init=5)
    # different random draws: the same quality, up to a small tolerance
    assert ours.inertia <= ref.inertia_ * 1.02
    assert ours.inertia >= ref.inertia_ * 0.95
    labels, distances = assign(torch.from_numpy(X), ours.centers)
    assert torch.equal(labels, ours.labels)
    assert float(distances.double().sum()) == pytest.approx(ours.inertia, rel=1e-5)
    assert len(torch.unique(ours.labels)) == n_clusters


def test_empty_cluster_takes_the_farthest_sample_as_sklearn_does():
    X, _ = make_blobs(n_samples=200, centers=3, random_state=0)
    X = X.astype(np.float32)
    init = X[:3].copy()
    init[2] = 1e4  # no sample is closest to this centre: empty after one step
    ref = KMeans(3, init=init, n_init=1, algorithm="lloyd").fit(X)
    ours = kmeans(torch.from_numpy(X), 3, init=torch.from_numpy(init))
    assert np.bincount(ref.labels_).min() > 0
    assert torch.bincount(ours.labels, minlength=3).min() > 0
    assert adjusted_rand_score(ref.labels_, ours.labels.numpy()) == 1.0
    assert ours.inertia == pytest.approx(ref.inertia_, rel=1e-4)


def test_relocation_after_one_step_is_the_farthest_sample():
    X = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    init = torch.tensor([[1.0], [100.0]])
    result = kmeans(X, 2, init=init, max_iter=1)
    # the sample farthest from the only used centre (1.0) is 10.0
    assert result.centers.ravel().tolist() == [1.0, 10.0]


def test_labels_and_inertia_match_the_returned_centres_after_a_relocation():
    """Duplicated points leave clusters empty in successive steps; the labels
    must still be each sample's nearest returned centre, and the inertia
    theirs (they once kept the labels from before a relocation: 0.0 reported
    for a true 1.0)."""
    X = torch.tensor([3.0, 1, 0, 0, 0, 0, 0, 2, 1, 0, 0, 2])[:, None]
    init = torch.tensor([-2.2704, 6.0167, 2.6246, 3.0287, 5.0993])[:, None]
    result = kmeans(X, 5, init=init)
    nearest, distances = assign(X, result.centers)
    assert torch.equal(result.labels, nearest)
    spread = float(((X - result.centers[result.labels]) ** 2).sum())
    assert result.inertia == pytest.approx(spread, abs=1e-6)
    assert result.inertia == pytest.approx(float(distances.sum()), abs=1e-6)


def test_fewer_distinct_samples_than_clusters():
    X = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    torch.manual_seed(0)
    result = kmeans(X, 4, n_init=2)
    assert torch.isfinite(result.centers).all()
    assert len(torch.unique(result.labels)) == 2
    assert result.inertia == 0.0


def test_identical_samples():
    X = torch.ones(6, 3)
    result = kmeans(X, 3)
    assert torch.isfinite(result.centers).all() and result.inertia == 0.0


def test_seeded_runs_repeat():
    X = torch.from_numpy(_data("digits"))
    torch.manual_seed(3)
    first = kmeans(X, 10, n_init=2)
    torch.manual_seed(3)
    second = kmeans(X, 10, n_init=2)
    assert torch.equal(first.labels, second.labels)
    assert torch.equal(first.centers, second.centers)
    torch.manual_seed(4)
    other = kmeans(X, 10, n_init=2)
    assert not torch.equal(first.centers, other.centers)


def test_kmeans_plusplus_picks_distinct_spread_samples():
    X, _ = make_blobs(n_samples=300, centers=5, cluster_std=0.1, random_state=2)
    X = torch.from_numpy(X.astype(np.float32))
    torch.manual_seed(0)
    centers = kmeans_plusplus(X, 5)
    # each centre is a sample, and the five well separated blobs get one each
    assert all(bool((X == c).all(dim=1).any()) for c in centers)
    labels, _ = assign(X, centers)
    assert len(torch.unique(labels)) == 5


def test_chunked_assignment_equals_unchunked():
    X = torch.randn(1000, 8)
    centers = torch.randn(7, 8)
    labels, distances = assign(X, centers, chunk_size=64)
    full = torch.cdist(X, centers) ** 2
    assert torch.equal(labels, full.argmin(dim=1))
    assert torch.allclose(distances, full.min(dim=1).values, atol=1e-4)


def test_runs_on_the_device_of_the_data(device):
    X = torch.from_numpy(_data("blobs")).to(device)
    torch.manual_seed(0)
    result = kmeans(X, 6, n_init=2)
    assert result.labels.device.type == device
    assert result.centers.device.type == device
    ref = KMeans(6, n_init=2, random_state=0).fit(X.cpu().numpy())
    assert result.inertia == pytest.approx(ref.inertia_, rel=0.02)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_clusters=0), "n_clusters=0"),
        (dict(n_clusters=11), "n_samples=10 should be >= n_clusters=11"),
        (dict(n_clusters=2, init="random"), "init must be"),
        (dict(n_clusters=2, init=torch.zeros(3, 2)), "init has shape"),
        (dict(n_clusters=2, init=torch.zeros(2, 2), n_init=2), "n_init must be 1"),
    ],
    ids=["zero", "too-many", "init-name", "init-shape", "init-n_init"],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kmeans(torch.rand(10, 2), **kwargs)
