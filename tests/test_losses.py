"""Tests for skiic.losses against a NumPy reference written from the paper."""

import math

import numpy as np
import pytest
import torch

from skiic.losses import IICLoss, iic_loss, joint_distribution, mutual_information


def reference_iic_loss(p1, p2, alpha=1.0):
    """Slow NumPy IIC loss: Ji et al., eq. (3) with the marginal terms weighted."""
    n, k = p1.shape
    joint = np.zeros((k, k))
    for i in range(n):
        joint += np.outer(p1[i], p2[i])
    joint /= n
    joint = (joint + joint.T) / 2
    joint /= joint.sum()
    joint = np.maximum(joint, np.finfo(np.float32).eps)
    pi = joint.sum(axis=1)
    pj = joint.sum(axis=0)
    total = 0.0
    for a in range(k):
        for b in range(k):
            total -= joint[a, b] * (
                math.log(joint[a, b])
                - alpha * math.log(pi[a])
                - alpha * math.log(pj[b])
            )
    return total


def random_assignments(rng, n, k, sharpness):
    logits = rng.normal(size=(n, k)) * sharpness
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 10.0], ids=["paper", "alpha2", "alpha10"])
@pytest.mark.parametrize(
    "n, k", [(5, 2), (64, 10), (200, 3)], ids=["5x2", "64x10", "200x3"]
)
@pytest.mark.parametrize("sharpness", [0.1, 3.0], ids=["flat", "sharp"])
def test_iic_loss_matches_reference(alpha, n, k, sharpness):
    rng = np.random.default_rng(0)
    p1 = random_assignments(rng, n, k, sharpness)
    p2 = random_assignments(rng, n, k, sharpness)
    expected = reference_iic_loss(p1, p2, alpha)
    got = iic_loss(torch.tensor(p1), torch.tensor(p2), alpha=alpha)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_independent_fair_coins_share_nothing():
    p = torch.full((10, 2), 0.5)
    assert mutual_information(p, p).item() == pytest.approx(0.0, abs=1e-6)


def test_identical_fair_coins_share_log2():
    p = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    assert mutual_information(p, p).item() == pytest.approx(math.log(2), abs=1e-5)
    assert iic_loss(p, p).item() == pytest.approx(-math.log(2), abs=1e-5)


def test_alpha_adds_marginal_entropy():
    rng = np.random.default_rng(1)
    p1 = torch.tensor(random_assignments(rng, 50, 4, 2.0))
    p2 = torch.tensor(random_assignments(rng, 50, 4, 2.0))
    joint = joint_distribution(p1, p2)
    marginal = joint.sum(dim=1)
    entropy = -(marginal * marginal.log()).sum()
    # loss(alpha) = -MI - 2 (alpha - 1) H(marginal): P is symmetric
    diff = iic_loss(p1, p2, alpha=3.0) - iic_loss(p1, p2, alpha=1.0)
    assert diff.item() == pytest.approx(-4 * entropy.item(), rel=1e-5)


def test_perfect_agreement_reaches_the_bound():
    k = 5
    p = torch.eye(k).repeat(4, 1)
    for alpha in (1.0, 2.0):
        assert iic_loss(p, p, alpha=alpha).item() == pytest.approx(
            -(2 * alpha - 1) * math.log(k),
            abs=1e-4,  # eps-clamped empty cells
        )


def test_leading_dimensions_are_batched():
    rng = np.random.default_rng(2)
    p1 = torch.tensor(np.stack([random_assignments(rng, 30, 4, 1.0) for _ in range(3)]))
    p2 = torch.tensor(np.stack([random_assignments(rng, 30, 4, 1.0) for _ in range(3)]))
    batched = iic_loss(p1, p2, alpha=2.0)
    assert batched.shape == (3,)
    for h in range(3):
        assert batched[h].item() == pytest.approx(
            iic_loss(p1[h], p2[h], alpha=2.0).item()
        )


def test_joint_distribution_is_symmetric_and_normalised():
    rng = np.random.default_rng(3)
    p1 = torch.tensor(random_assignments(rng, 40, 6, 1.0))
    p2 = torch.tensor(random_assignments(rng, 40, 6, 1.0))
    joint = joint_distribution(p1, p2)
    assert torch.allclose(joint, joint.T)
    assert joint.sum().item() == pytest.approx(1.0)


def test_gradient_is_finite_for_hard_assignments():
    logits = torch.tensor([[50.0, -50.0], [-50.0, 50.0]], requires_grad=True)
    p = logits.softmax(dim=1)
    iic_loss(p, p).backward()
    assert torch.isfinite(logits.grad).all()


def test_module_form_matches_function():
    p1 = torch.softmax(torch.randn(20, 3), dim=1)
    p2 = torch.softmax(torch.randn(20, 3), dim=1)
    assert IICLoss(alpha=2.0)(p1, p2).item() == pytest.approx(
        iic_loss(p1, p2, alpha=2.0).item()
    )
    assert "alpha=2.0" in repr(IICLoss(alpha=2.0))


@pytest.mark.parametrize(
    "p1, p2",
    [
        (torch.ones(3), torch.ones(3)),
        (torch.ones(3, 2), torch.ones(3, 3)),
        (torch.ones(0, 2), torch.ones(0, 2)),
    ],
    ids=["1d", "mismatch", "empty"],
)
def test_bad_shapes_are_rejected(p1, p2):
    with pytest.raises(ValueError, match="p1 and p2"):
        iic_loss(p1, p2)
