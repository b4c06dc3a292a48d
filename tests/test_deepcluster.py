"""Behaviour and quality of DeepClusterEstimator.

What the three estimators share (persistence, devices, seeding, input and
parameter checks, pandas output) is tested in test_estimators.py.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from skorch.history import History
from torch import nn

from skiic import DeepClusterEstimator
from skiic._deepcluster import (
    _WHITEN_EPS,
    _DeepClusterNetwork,
    _DeepClusterObjective,
    _nmi,
    _PseudoLabelBatches,
    _Whitening,
)
from skiic.augment import VirtualAdversarial
from skiic.exceptions import ConvergenceWarning, TrainingError
from skiic.metrics import matched_accuracy, nmi

FAST = dict(max_epochs=3, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=300, centers=4, cluster_std=0.8, random_state=3)


@pytest.fixture(scope="module")
def fitted_blobs(blobs):
    X, _ = blobs
    return DeepClusterEstimator(4, max_epochs=8, device="cpu", random_state=0).fit(X)


@pytest.fixture(scope="module")
def fitted_digits(digits):
    """The defaults on the 8x8 digit images (the quality reference)."""
    X, _ = digits
    model = DeepClusterEstimator(10, device="cpu", random_state=0)
    return model.fit(X.reshape(-1, 1, 8, 8))


# ----------------------------------------------------------------- quality
def test_digits_images_beat_kmeans(digits, fitted_digits, digits_kmeans_accuracy):
    """Defaults on the digit images: well above KMeans' 0.79 matched accuracy."""
    _, y = digits
    accuracy = matched_accuracy(y, fitted_digits.labels_)
    assert accuracy >= 0.88
    assert accuracy > digits_kmeans_accuracy + 0.05
    assert nmi(y, fitted_digits.labels_) >= 0.82


def test_pseudo_label_nmi_rises(fitted_digits):
    """The paper's stability curve: consecutive pseudo-labels agree more and more."""
    curve = np.asarray(fitted_digits.history_[:, "pseudo_label_nmi"])
    assert np.isnan(curve[0]) and np.all(np.isfinite(curve[1:]))
    assert np.all((curve[1:] > 0) & (curve[1:] <= 1))
    assert curve[-5:].mean() >= curve[1] + 0.03
    # the training loss on the pseudo-labels falls as the features settle
    loss = np.asarray(fitted_digits.history_[:, "train_loss"])
    assert loss[-5:].mean() < loss[:5].mean() - 0.3


def test_pca_pipeline_on_digit_vectors(digits):
    X, y = digits
    pipe = make_pipeline(
        PCA(30, random_state=0), DeepClusterEstimator(10, device="cpu", random_state=0)
    )
    labels = pipe.fit_predict(X)
    baseline = make_pipeline(
        PCA(30, random_state=0), KMeans(10, n_init=10, random_state=0)
    ).fit_predict(X)
    assert matched_accuracy(y, labels) >= 0.83
    assert matched_accuracy(y, labels) > matched_accuracy(y, baseline) + 0.03
    assert np.array_equal(pipe.predict(X), labels)


def test_blobs_are_recovered(blobs, fitted_blobs):
    _, y = blobs
    assert matched_accuracy(y, fitted_blobs.labels_) >= 0.95


def test_virtual_adversarial_term_on_vectors(blobs, monkeypatch, capsys):
    """augmentation=VirtualAdversarial(): one neighbour search serves the
    neighbour swap (3) and the step length (the 10th neighbour), every
    training step computes adversarial views without its far-off probe
    touching BatchNorm's running statistics, and the blobs are found."""
    from skiic import _data

    searches, steps, statistics_kept = [], [], []
    search, perturb = _data.neighbor_indices, VirtualAdversarial.perturb

    def counting_search(data, k, **kwargs):
        searches.append(k)
        return search(data, k, **kwargs)

    def running(forward):
        if not isinstance(forward, torch.nn.Module):  # a plain function's are lost
            return []
        return [b.clone() for n, b in forward.named_buffers() if "running" in n]

    def counting_perturb(self, forward, x, radius, **kwargs):
        steps.append(radius)
        before = running(forward)
        moved = perturb(self, forward, x, radius, **kwargs)
        after = running(forward)
        statistics_kept.append(
            bool(before) and all(torch.equal(a, b) for a, b in zip(before, after))
        )
        return moved

    monkeypatch.setattr(_data, "neighbor_indices", counting_search)
    monkeypatch.setattr(VirtualAdversarial, "perturb", counting_perturb)
    X, y = blobs
    model = DeepClusterEstimator(
        4,
        n_neighbors=3,
        augmentation=VirtualAdversarial(eps=0.5),
        max_epochs=8,
        verbose=1,
        device="cpu",
        random_state=0,
    ).fit(X)
    assert searches == [10]
    printed = capsys.readouterr().out
    assert "searching the 10 nearest neighbours of 300 samples" in printed
    assert len(steps) == model.n_iter_ * 30  # 30 steps an epoch on small data
    assert all(torch.all(r > 0) for r in steps)
    assert all(statistics_kept)
    assert matched_accuracy(y, model.labels_) >= 0.95
    # the settings reach a grid search
    model.set_params(augmentation__eps=0.25)
    assert model.get_params()["augmentation__eps"] == 0.25


def test_copies_of_a_sample_never_replace_it(monkeypatch):
    """Rows given many times: the swap draws among the distinct rows, so a
    sample is replaced by another point, never by its copy (which would leave
    it as it is: the wine given 11 times scored 0.65 to 0.70 over three seeds
    that way, and 0.87 to 0.94 with copies counted once, one thread)."""
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    from skiic import _data

    found = []
    search = _data.neighbor_indices

    def keeping_search(data, k, **kwargs):
        found.append(search(data, k, **kwargs))
        return found[-1]

    monkeypatch.setattr(_data, "neighbor_indices", keeping_search)
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    tiled, labels = np.tile(X, (11, 1)), np.tile(y, 11)
    model = DeepClusterEstimator(3, device="cpu", n_threads=1, random_state=1)
    model.fit(tiled)
    neighbors = found[-1]  # the outer call (it searches the distinct rows)
    assert neighbors.shape == (len(tiled), 10)
    partners = tiled[neighbors.numpy()]
    assert not (partners == tiled[:, None, :]).all(axis=2).any()
    assert matched_accuracy(labels, model.labels_) > 0.85  # 0.876


# ----------------------------------------------------------------- sklearn API
def test_fitted_attributes(blobs, fitted_blobs):
    X, _ = blobs
    model = fitted_blobs
    assert model.labels_.shape == (300,) and model.labels_.dtype == np.int64
    assert model.n_features_in_ == 2 and model.input_shape_ is None
    assert model.n_iter_ == 8 == len(model.history_)
    assert model.n_pseudo_classes_ == 30  # "auto": 10 per cluster, >= 10 samples each
    assert model.n_components_ == 16
    assert model.cluster_centers_.shape == (4, 16)
    for key in ("train_loss", "pseudo_label_nmi", "kmeans_inertia"):
        assert key in model.history_[-1]
    largest = np.asarray(model.history_[:, "largest_pseudo_class"])
    assert np.all((largest >= 1 / 30) & (largest < 0.5))
    assert next(model.module_.parameters()).device.type == "cpu"
    assert model.module_.head.out_features == 30
    # clusters are numbered by decreasing size
    assert np.all(np.diff(np.bincount(model.labels_)) <= 0)


def test_predict_transform_and_score_agree(blobs, fitted_blobs):
    X, _ = blobs
    model = fitted_blobs
    assert np.array_equal(model.predict(X), model.labels_)
    Xt = model.transform(X)
    assert Xt.shape == (300, 16)
    assert np.allclose(np.linalg.norm(Xt, axis=1), 1, atol=1e-5)
    sq = ((Xt[:, None, :] - model.cluster_centers_[None]) ** 2).sum(axis=2)
    assert np.array_equal(sq.argmin(axis=1), model.labels_)
    # score is minus the inertia, as KMeans' score
    assert model.score(X) == pytest.approx(-model.inertia_, rel=1e-4)
    assert model.score(X) == pytest.approx(-sq.min(axis=1).sum(), rel=1e-4)
    assert model.score(X[:10]) > model.score(X)


def test_predict_on_new_data(blobs):
    X, y = blobs
    model = DeepClusterEstimator(4, **dict(FAST, max_epochs=8)).fit(X[:200])
    assert matched_accuracy(y[200:], model.predict(X[200:])) >= 0.95


def test_n_components_is_capped_at_a_custom_module_width(blobs):
    X, _ = blobs
    backbone = nn.Sequential(nn.Linear(2, 8), nn.ReLU())
    model = DeepClusterEstimator(4, module=backbone, **FAST).fit(X)
    assert model.n_components == 16
    assert model.n_components_ == 8  # capped at the feature width
    assert model.cluster_centers_.shape == (4, 8)
    assert model.transform(X).shape == (300, 8)


def test_grid_search_without_labels_uses_score(blobs):
    X, _ = blobs
    search = GridSearchCV(
        DeepClusterEstimator(4, **dict(FAST, max_epochs=2)),
        {"balancing": ["sampling", "weights"]},
        cv=2,
    ).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and np.all(scores <= 0)


@pytest.mark.parametrize("balancing", ["weights", None])
def test_other_balancings_cluster_blobs(blobs, balancing):
    X, y = blobs
    model = DeepClusterEstimator(4, balancing=balancing, **dict(FAST, max_epochs=8))
    assert matched_accuracy(y, model.fit(X).labels_) >= 0.95


def test_more_pseudo_classes_than_clusters(blobs):
    X, y = blobs
    model = DeepClusterEstimator(4, n_pseudo_classes=12, **dict(FAST, max_epochs=8))
    model.fit(X)
    assert model.n_pseudo_classes_ == 12 and model.module_.head.out_features == 12
    assert model.cluster_centers_.shape[0] == 4
    assert matched_accuracy(y, model.labels_) >= 0.95


def test_auto_pseudo_classes_on_small_data():
    X = np.random.default_rng(0).random((25, 3))
    model = DeepClusterEstimator(2, **FAST).fit(X)
    assert model.n_pseudo_classes_ == 2  # 25 samples: at least 10 per class
    assert DeepClusterEstimator(3, **FAST).fit(X[:12]).n_pseudo_classes_ == 3


def test_images_flat_with_input_shape(digits):
    X, _ = digits
    X = X[:300]
    model = DeepClusterEstimator(5, **FAST).fit(X.reshape(-1, 1, 8, 8))
    flat = DeepClusterEstimator(5, input_shape=(1, 8, 8), **FAST).fit(X)
    assert model.input_shape_ == flat.input_shape_ == (1, 8, 8)
    assert np.array_equal(flat.labels_, model.labels_)
    assert np.array_equal(model.predict(X), model.labels_)
    assert type(model.module_.backbone).__name__ == "ConvBackbone"


def test_cpu_trains_fewer_steps_on_large_images(monkeypatch):
    """Images larger than 16x16 on a CPU: about 500 steps instead of 750
    (measured on MNIST); small images, vectors, and a GPU keep 750."""
    X = np.zeros((2560, 400), dtype=np.float32)  # 30 steps an epoch
    model = DeepClusterEstimator(5, device="cpu")
    assert model._make_plan(X, (1, 20, 20), None).max_epochs == 17
    assert model._make_plan(X[:, :256], (1, 16, 16), None).max_epochs == 25
    assert model._make_plan(X, None, None).max_epochs == 25
    monkeypatch.setattr(DeepClusterEstimator, "_fits_on_cpu", lambda self: False)
    assert model._make_plan(X, (1, 20, 20), None).max_epochs == 25


# ----------------------------------------------------------------- internals
def test_balanced_sampling_is_uniform_over_pseudo_classes():
    labels = torch.cat([torch.zeros(900), torch.ones(90), torch.full((10,), 2)]).long()
    objective = SimpleNamespace(labels=labels, n_pseudo_classes=4)  # class 3 empty
    torch.manual_seed(0)
    batches = _PseudoLabelBatches(objective, 3000, 100, balanced=True)
    idx = torch.cat(list(batches))
    assert len(batches) == 30 and idx.numel() == 3000
    share = torch.bincount(labels[idx], minlength=4).double() / idx.numel()
    assert torch.allclose(share[:3], torch.full((3,), 1 / 3).double(), atol=0.03)
    assert share[3] == 0
    # the small class is drawn with replacement; every member of it appears
    assert set(idx[labels[idx] == 2].tolist()) == set(range(990, 1000))


def test_unbalanced_epochs_are_shuffled_passes():
    objective = SimpleNamespace(labels=torch.zeros(100).long(), n_pseudo_classes=1)
    batches = _PseudoLabelBatches(objective, 100, 10, balanced=False)
    idx = torch.cat(list(batches))
    assert len(batches) == 10 and sorted(idx.tolist()) == list(range(100))
    longer = _PseudoLabelBatches(objective, 250, 10, balanced=False)
    counts = torch.bincount(torch.cat(list(longer)), minlength=100)
    assert len(longer) == 25 and counts.min() >= 2 and counts.max() <= 3


def test_epoch_begin_reclusters_and_reinitialises_the_head():
    data = torch.from_numpy(
        make_blobs(n_samples=120, centers=3, random_state=0)[0].astype(np.float32)
    )
    torch.manual_seed(0)
    module = _DeepClusterNetwork(nn.Sequential(nn.Linear(2, 8), nn.ReLU()), 8, 6)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1)
    trainer = SimpleNamespace(module_=module, optimizer_=optimizer, history=History())
    objective = _DeepClusterObjective(
        data,
        n_pseudo_classes=6,
        n_components=4,
        balancing="weights",
        augment=None,
    )
    for _ in range(2):
        trainer.history.new_epoch()
        objective.on_epoch_begin(trainer)
        loss = objective(module, (torch.arange(120), data))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head_before = module.head.weight.detach().clone()
    trainer.history.new_epoch()
    objective.on_epoch_begin(trainer)
    assert not torch.equal(module.head.weight, head_before)
    assert all(p not in optimizer.state for p in module.head.parameters())
    assert all(p in optimizer.state for p in module.backbone.parameters())
    assert objective.labels.shape == (120,) and objective.labels.max() < 6
    counts = torch.bincount(objective.labels, minlength=6).float()
    assert torch.allclose(objective.class_weights, 1 / counts)
    # the loss is the class-weighted mean cross-entropy
    assert len(set(counts.tolist())) > 1  # unequal classes: the weights matter
    weights = objective.class_weights[objective.labels]
    each = torch.nn.functional.cross_entropy(
        module(data).float(), objective.labels, reduction="none"
    )
    torch.testing.assert_close(
        objective(module, (torch.arange(120), data)),
        (each * weights).sum() / weights.sum(),
    )
    row = trainer.history[-1]
    assert 0 < row["pseudo_label_nmi"] <= 1 and row["kmeans_inertia"] > 0
    assert np.isnan(trainer.history[0]["pseudo_label_nmi"])


def test_final_partition_keeps_the_best_of_ten_kmeans_runs(blobs, monkeypatch):
    """Every epoch's k-means starts once; the final partition of the trained
    features is the best of 10 initialisations."""
    from skiic import _deepcluster

    starts = []
    kmeans = _deepcluster.kmeans

    def spy(*args, **kwargs):
        starts.append(kwargs.get("n_init", 1))
        return kmeans(*args, **kwargs)

    monkeypatch.setattr(_deepcluster, "kmeans", spy)
    X, _ = blobs
    DeepClusterEstimator(4, **dict(FAST, max_epochs=3)).fit(X)
    assert starts[-1] == 10
    assert len(starts) >= 2 and all(n == 1 for n in starts[:-1])


@pytest.mark.parametrize("k", [2, 5, 17])
def test_nmi_matches_sklearn(k):
    rng = np.random.default_rng(k)
    a = rng.integers(0, k, 500)
    b = np.where(rng.random(500) < 0.6, a, rng.integers(0, k, 500))
    ours = float(_nmi(torch.from_numpy(a), torch.from_numpy(b), k))
    assert ours == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-10)
    same = float(_nmi(torch.zeros(5).long(), torch.zeros(5).long(), 3))
    assert same == normalized_mutual_info_score([0] * 5, [0] * 5) == 1.0


def test_whitening_decorrelates_and_normalises():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(
        (rng.standard_normal((2000, 6)) @ rng.standard_normal((6, 6))).astype(
            np.float32
        )
    )
    whitening = _Whitening.fit(features, 3)
    projected = (features - whitening.mean) @ whitening.matrix
    cov = torch.cov(projected.T.double())
    # no correlation, and variance lambda / (lambda + eps * lambda_max): one
    # up to the regularisation of the smaller components
    eigenvalues = torch.linalg.eigvalsh(torch.cov(features.T.double())).flip(0)[:3]
    expected = eigenvalues / (eigenvalues + _WHITEN_EPS * eigenvalues[0])
    assert torch.allclose(cov.diagonal(), expected, rtol=1e-3)
    assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-5)
    assert torch.allclose(whitening(features).norm(dim=1), torch.ones(2000))
    with pytest.raises(TrainingError, match="same features"):
        _Whitening.fit(torch.ones(10, 4), 2)
    with pytest.raises(TrainingError, match="not finite"):
        _Whitening.fit(torch.full((10, 4), float("nan")), 2)


# ----------------------------------------------------------------- bad input
def test_fewer_samples_than_clusters():
    X = np.random.default_rng(0).random((5, 3))
    with pytest.raises(ValueError, match="n_samples=5 should be >= n_clusters=10"):
        DeepClusterEstimator(10, **FAST).fit(X)


def test_pseudo_classes_must_fit_clusters_and_samples():
    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(
        ValueError, match="n_pseudo_classes=2 should be >= n_clusters=3"
    ):
        DeepClusterEstimator(3, n_pseudo_classes=2, **FAST).fit(X)
    with pytest.raises(
        ValueError, match="n_samples=20 should be >= n_pseudo_classes=50"
    ):
        DeepClusterEstimator(3, n_pseudo_classes=50, **FAST).fit(X)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_clusters=0), "n_clusters"),
        (dict(n_pseudo_classes=0), "n_pseudo_classes"),
        (dict(n_pseudo_classes="many"), "n_pseudo_classes"),
        (dict(n_components=0), "n_components"),
        (dict(balancing="oversample"), "balancing"),
        (dict(n_neighbors=-1), "n_neighbors"),
        (dict(self_labelling="yes"), "self_labelling"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_invalid_parameters(params, message):
    if message.isidentifier():  # scikit-learn's check names the parameter
        message = f"'{message}' parameter of DeepClusterEstimator"
    with pytest.raises(ValueError, match=message):
        DeepClusterEstimator(**{**FAST, "n_clusters": 3, **params}).fit(
            np.random.default_rng(0).random((20, 2))
        )


# ----------------------------------------------------------------- failures
def test_fewer_clusters_than_asked_warns():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 20, axis=0)
    with pytest.warns(ConvergenceWarning, match="Only 2 of n_clusters=3"):
        model = DeepClusterEstimator(3, **FAST).fit(X)
    assert set(model.labels_) == {0, 1}


def test_whitening_names_features_that_diverged_or_collapsed():
    """Checked from the column means and the covariance, without a pass over
    the features of their own (half the whitening's time at 10,000 x 512)."""
    from skiic._deepcluster import _Whitening

    features = torch.randn(500, 32, generator=torch.Generator().manual_seed(0)) + 2
    whitening = _Whitening.fit(features, 8)
    codes = (features - whitening.mean) @ whitening.matrix
    cov = np.cov(codes.numpy().T)  # decorrelated, at most unit variance (eps)
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-3)
    assert 0.5 < cov[0, 0] <= 1.0 + 1e-4 and np.all(np.diag(cov) <= 1.0 + 1e-4)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = features.clone()
        broken[7, 3] = bad
        with pytest.raises(TrainingError, match="features are not finite"):
            _Whitening.fit(broken, 8)
    with pytest.raises(TrainingError, match="maps every sample to the same"):
        _Whitening.fit(torch.full((50, 32), 3.0), 8)
    # Finite, but their squares are not (linalg.eigh failed to converge).
    with pytest.raises(TrainingError, match="too large for float32"):
        _Whitening.fit(features * 1e20, 8)
