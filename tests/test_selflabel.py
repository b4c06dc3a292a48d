"""The self-labelling stage (skiic._selflabel) and the clusterers' use of it."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from test_iic import FAST, bar_images

from skiic import DeepClusterEstimator, IICClustering
from skiic._data import ResidentData
from skiic._deepcluster import _CentroidClassifier, _Whitening
from skiic._kmeans import assign
from skiic._selflabel import SelfLabelObjective, confident_samples, self_label_epochs
from skiic.metrics import matched_accuracy


def test_confident_samples_take_each_clusters_largest_margins():
    logits = torch.tensor(
        [[5.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 9.0], [0.0, 0.5]]
    )
    chosen, targets = confident_samples(logits, 0.5)
    assert targets.tolist() == [0, 0, 0, 1, 1, 1]
    # cluster 0: margins 5, 1, 3 -> two of three (ceil); cluster 1: 2, 9, 0.5
    assert chosen.tolist() == [0, 2, 3, 4]
    everything, _ = confident_samples(logits, 1.0)
    assert everything.tolist() == list(range(6))


def test_confident_samples_keep_one_of_every_cluster():
    logits = torch.eye(3)[[0, 0, 0, 0, 1, 2]] * torch.arange(1.0, 7.0)[:, None]
    chosen, _ = confident_samples(logits, 0.01)
    assert chosen.tolist() == [3, 4, 5]


def test_epochs_are_a_fraction_of_the_main_training():
    assert self_label_epochs(1) == 1
    assert self_label_epochs(50) == 20


def test_batches_are_balanced_over_clusters_and_grow_with_the_epochs():
    """Nine samples of cluster 0 for one of cluster 1: drawn about equally;
    the confident share grows from ``start`` to ``end``."""
    torch.manual_seed(0)
    x = torch.cat([torch.randn(900, 2) + 4, torch.randn(100, 2) - 4])
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
        module.bias.zero_()
    objective = SelfLabelObjective(
        ResidentData(x),
        logits=lambda m, v: m(v),
        augment=lambda m, v, idx, shard: v,
        n_clusters=2,
        epochs=3,
        start=0.2,
        end=0.8,
    )

    class Trainer:  # what the objective reads of skorch's trainer
        module_, device = module, "cpu"

    shares = []
    for epoch in range(3):
        objective.on_epoch_begin(Trainer)
        shares.append(objective._share)
        drawn = torch.cat([idx for (idx,), _ in objective.batches(1000, 100, "cpu")])
        assert len(drawn) == 1000
        # only the chosen targets: each cluster's share of largest margins
        margin = 2 * x.sum(dim=1).abs()  # the two logits are +-(x0 + x1)
        cluster = (x.sum(dim=1) < 0).long()
        expected = set()
        for c in (0, 1):
            members = torch.nonzero(cluster == c).squeeze(1)
            keep = int(np.ceil((0.2 + 0.3 * epoch) * len(members)))
            order = margin[members].argsort(descending=True)
            expected |= set(members[order[:keep]].tolist())
        assert set(drawn.tolist()) <= expected
        from_small = (drawn >= 900).float().mean()
        assert 0.4 < from_small < 0.6
    assert shares == pytest.approx([0.2, 0.5, 0.8], abs=0.01)


def test_iic_self_labelling_trains_on_confident_samples():
    """With self_labelling=True the history goes on with the stage's epochs,
    whose confident share grows; the labels stay good."""
    X, y = bar_images((1, 8, 8))
    model = IICClustering(3, self_labelling=True, **dict(FAST, max_epochs=20))
    model.fit(X)
    stage = [epoch for epoch in model.history_ if "confident" in epoch]
    assert len(stage) == self_label_epochs(20) == len(model.history_) - 20
    shares = [epoch["confident"] for epoch in stage]
    assert shares == sorted(shares) and shares[0] < shares[-1]
    assert matched_accuracy(y, model.labels_) >= 0.9
    assert np.array_equal(model.predict(X), model.labels_)


@pytest.mark.parametrize("cls", [IICClustering, DeepClusterEstimator])
def test_the_stage_trains_at_a_tenth_of_lr(cls, monkeypatch):
    """The main training at ``lr``, the self-labelling stage at a tenth of it,
    with the stage's objective."""
    from skiic import _base

    trainings = []
    train = _base._engine.train

    def spy(module, objective, **kwargs):
        trainings.append((type(objective).__name__, kwargs["lr"]))
        return train(module, objective, **kwargs)

    monkeypatch.setattr(_base._engine, "train", spy)
    X, _ = bar_images((1, 8, 8))
    params = dict(device="cpu", random_state=0, max_epochs=5, lr=0.004)
    cls(3, self_labelling=True, **params).fit(X)
    *main, stage = trainings
    assert main and all(lr == 0.004 for _, lr in main)
    assert stage == ("SelfLabelObjective", pytest.approx(0.0004))


def test_iic_without_self_labelling_has_no_stage():
    X, _ = bar_images((1, 8, 8))
    model = IICClustering(3, self_labelling=False, **FAST).fit(X)
    assert not any("confident" in epoch for epoch in model.history_)
    assert len(model.history_) == FAST["max_epochs"]


def test_vector_self_labelling_uses_adversarial_views(monkeypatch):
    """The stage trains on the samples' adversarial views: one more
    perturbation per stage step than the same fit without the stage."""
    from skiic.augment import VirtualAdversarial

    calls = []
    perturb = VirtualAdversarial.perturb

    def counting(self, *args, **kwargs):
        calls.append(1)
        return perturb(self, *args, **kwargs)

    monkeypatch.setattr(VirtualAdversarial, "perturb", counting)
    X = np.vstack([np.random.default_rng(0).normal(c, 0.3, (60, 2)) for c in (0, 3)])
    params = dict(FAST, max_epochs=10, n_neighbors=0)
    without = IICClustering(2, self_labelling=False, **params).fit(X)
    n_without, calls[:] = len(calls), []
    model = IICClustering(2, self_labelling=True, **params).fit(X)
    stage = sum("confident" in epoch for epoch in model.history_)
    assert stage == 4
    # 120 samples: one step per epoch
    assert len(calls) - n_without == stage
    assert not np.array_equal(
        model.predict_proba(X), without.predict_proba(X)
    )  # the stage trained the network
    assert matched_accuracy(np.repeat([0, 1], 60), model.labels_) == 1.0


def test_centroid_classifier_logits_rank_the_centres_by_distance():
    """DeepCluster's stage classifies by the nearest k-means centre: the argmax
    is the nearest centre, and the top-two margin is the gap between the two
    smallest squared distances over the temperature."""
    torch.manual_seed(0)
    backbone = torch.nn.Linear(5, 8)
    x = torch.randn(50, 5)
    with torch.no_grad():
        whitening = _Whitening.fit(backbone(x), 4)
        z = whitening(backbone(x))
    centers = torch.randn(3, 4)
    classifier = _CentroidClassifier(backbone, whitening, centers, temperature=0.1)
    logits = classifier(x).detach()
    labels, _ = assign(z, centers)
    assert torch.equal(logits.argmax(dim=1), labels)
    squared = torch.cdist(z, centers) ** 2
    nearest = squared.sort(dim=1).values
    top = logits.topk(2, dim=1).values
    torch.testing.assert_close(
        top[:, 0] - top[:, 1],
        (nearest[:, 1] - nearest[:, 0]) / 0.1,
        atol=1e-4,
        rtol=1e-4,
    )
    # the whitening is fixed, the centres and the backbone train
    trained = {name for name, p in classifier.named_parameters() if p.requires_grad}
    assert trained == {"centers", "backbone.weight", "backbone.bias"}


def test_deepcluster_self_labelling_continues_the_same_training():
    """The main training is the one without the stage (same seed); the stage
    adds its epochs, with a growing confident share, and moves the network;
    predict agrees with labels_ and the clusters stay right."""
    X, y = make_blobs(n_samples=300, centers=4, cluster_std=0.8, random_state=3)
    params = dict(max_epochs=10, device="cpu", random_state=0)
    without = DeepClusterEstimator(4, self_labelling=False, **params).fit(X)
    model = DeepClusterEstimator(4, self_labelling=True, **params).fit(X)
    assert not any("confident" in epoch for epoch in without.history_)
    np.testing.assert_allclose(
        model.history_[:10, "train_loss"], without.history_[:, "train_loss"]
    )
    stage = [epoch for epoch in model.history_ if "confident" in epoch]
    assert len(stage) == 2 == len(model.history_) - 10
    shares = [epoch["confident"] for epoch in stage]
    assert shares[0] == pytest.approx(0.5, abs=0.01) and shares[-1] > shares[0]
    assert not np.allclose(model.transform(X), without.transform(X))
    assert model.cluster_centers_.shape == (4, model.n_components_)
    assert np.array_equal(model.predict(X), model.labels_)
    assert matched_accuracy(y, model.labels_) >= 0.95


def test_deepcluster_auto_self_labels_images_only():
    """self_labelling="auto": a stage for images (one epoch of five here),
    none for the same pixels as vectors."""
    X, _ = bar_images((1, 8, 8))
    params = dict(max_epochs=5, device="cpu", random_state=0)
    images = DeepClusterEstimator(3, **params).fit(X)
    assert sum("confident" in epoch for epoch in images.history_) == 1
    assert images.n_iter_ == 6
    assert np.array_equal(images.predict(X), images.labels_)
    vectors = DeepClusterEstimator(3, **params).fit(X.reshape(len(X), -1))
    assert not any("confident" in epoch for epoch in vectors.history_)


@pytest.mark.parametrize("value", [True, False])
def test_numpy_bools_turn_the_stage_on_and_off_as_bools_do(value):
    """A grid built with ``np.array([True, False])`` hands numpy bools."""
    from skiic._deepcluster import _resolve_self_labelling as deepcluster_epochs
    from skiic._iic import _resolve_self_labelling as iic_epochs

    assert iic_epochs(np.bool_(value), 20) == iic_epochs(value, 20)
    assert (iic_epochs(value, 20) > 0) == value
    for images in (False, True):
        stage = deepcluster_epochs(np.bool_(value), 20, images=images)
        assert stage == deepcluster_epochs(value, 20, images=images)
        assert (stage > 0) == value
