"""The self-labelling stage (skiic._selflabel) and IICClustering's use of it."""

import numpy as np
import pytest
import torch
from test_iic import FAST, bar_images

from skiic import IICClustering
from skiic._data import ResidentData
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
    for _ in range(3):
        objective.on_epoch_begin(Trainer)
        shares.append(objective._share)
        drawn = torch.cat([idx for (idx,), _ in objective.batches(1000, 100, "cpu")])
        assert len(drawn) == 1000
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


def test_iic_without_self_labelling_has_no_stage():
    X, _ = bar_images((1, 8, 8))
    model = IICClustering(3, self_labelling=False, **FAST).fit(X)
    assert not any("confident" in epoch for epoch in model.history_)
    assert len(model.history_) == FAST["max_epochs"]


def test_vector_self_labelling_uses_adversarial_views():
    X = np.vstack([np.random.default_rng(0).normal(c, 0.3, (60, 2)) for c in (0, 3)])
    model = IICClustering(
        2, self_labelling=True, **dict(FAST, max_epochs=10, n_neighbors=0)
    ).fit(X)
    assert sum("confident" in epoch for epoch in model.history_) == 4
    assert matched_accuracy(np.repeat([0, 1], 60), model.labels_) == 1.0
