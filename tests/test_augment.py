"""Second views: image transforms, virtual adversarial perturbations and neighbours."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from skiic.augment import (
    ImageAugmentation,
    VectorAugmentation,
    VirtualAdversarial,
    _elastic_field,
    kl_divergence,
    nearest_neighbors,
    random_affine,
)


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 4096])
def test_nearest_neighbors_distances_match_sklearn(chunk_size):
    """Blocks smaller than k, uneven last blocks and one block alike."""
    X = np.random.default_rng(0).normal(size=(70, 6)).astype(np.float32)
    dist, idx = nearest_neighbors(
        torch.from_numpy(X), 4, chunk_size=chunk_size, return_distance=True
    )
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=5).fit(X).kneighbors(X)
    assert np.array_equal(idx.numpy(), ref_idx[:, 1:])
    np.testing.assert_allclose(dist.numpy(), ref_dist[:, 1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk_size", [64, 4096])
def test_nearest_neighbors_far_from_the_origin(chunk_size):
    """Points 0.02 apart around (37.77, -122.42), in float32: norms that dwarf
    the distances no longer cancel them away (recall was 0.02)."""
    rng = np.random.default_rng(0)
    X = (np.array([37.77, -122.42]) + rng.normal(scale=0.02, size=(500, 2))).astype(
        np.float32
    )
    dist, idx = nearest_neighbors(
        torch.from_numpy(X), 5, chunk_size=chunk_size, return_distance=True
    )
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X)
    assert np.mean(idx.numpy() == ref_idx[:, 1:]) > 0.99
    np.testing.assert_allclose(dist.numpy(), ref_dist[:, 1:], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [2, 4096])
def test_nearest_neighbors_never_return_the_sample_itself(chunk_size):
    X = torch.tensor([[0.0], [0.0], [0.0], [5.0], [5.0]])
    idx = nearest_neighbors(X, 2, chunk_size=chunk_size).tolist()
    assert all(i not in row for i, row in enumerate(idx))
    assert set(idx[0]) == {1, 2} and idx[3][0] == 4 and idx[4][0] == 3


def test_radius_is_eps_times_the_distance_to_the_kth_neighbour():
    X = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    radius = VirtualAdversarial(eps=0.5, n_neighbors=2).radius(X)
    # second-nearest neighbours: 0 -> 3 (3), 1 -> 3 (2), 3 -> 0 (3), 7 -> 1 (6)
    np.testing.assert_allclose(radius.numpy(), [1.5, 1.0, 1.5, 3.0])
    # fewer samples than n_neighbors + 1: the farthest other sample counts
    assert VirtualAdversarial(n_neighbors=10, eps=1.0).radius(X[:2]).tolist() == [1, 1]


def test_noise_floor_radius_is_the_length_beyond_the_nearest_neighbour():
    """eps * sqrt(d_k^2 - d_1^2), with the distances of scikit-learn's search;
    noise features shared by all pairs add to both and cancel."""
    X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    dist = NearestNeighbors(n_neighbors=4).fit(X).kneighbors(X)[0]
    radius = VirtualAdversarial(eps=0.5, n_neighbors=3, noise_floor=True).radius(
        torch.from_numpy(X)
    )
    expected = 0.5 * np.sqrt(dist[:, 3] ** 2 - dist[:, 1] ** 2)
    np.testing.assert_allclose(radius.numpy(), expected, rtol=1e-4, atol=1e-5)
    # on a line: second-nearest minus nearest, in quadrature
    line = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    floored = VirtualAdversarial(eps=1.0, n_neighbors=2, noise_floor=True)
    np.testing.assert_allclose(
        floored.radius(line).numpy(), np.sqrt([9 - 1, 4 - 1, 9 - 4, 36 - 16]), rtol=1e-6
    )


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
    )


def test_perturbation_has_the_radius_and_raises_the_divergence():
    net = _net()
    x = torch.randn(32, 5)
    radius = torch.linspace(0.2, 1.0, 32)
    vat = VirtualAdversarial(xi=1.0)
    moved = vat.perturb(lambda z: [net(z)], x, radius)
    assert not moved.requires_grad
    np.testing.assert_allclose((moved - x).norm(dim=1).numpy(), radius, rtol=1e-4)
    # a random move of the same length changes the prediction less
    random = x + radius[:, None] * torch.nn.functional.normalize(torch.randn_like(x))
    with torch.no_grad():
        clean = net(x)
        per_sample = [
            (clean.softmax(1) * (clean.log_softmax(1) - net(z).log_softmax(1))).sum(1)
            for z in (moved, random)
        ]
    assert per_sample[0].mean() > 2 * per_sample[1].mean()


def test_perturbation_is_fixed_by_the_probe_and_sums_over_heads():
    net = _net()
    torch.manual_seed(1)
    other = torch.nn.Linear(5, 3)  # a second head group of two sub-heads
    x, radius = torch.randn(8, 5), torch.full((8,), 0.3)
    probe = torch.randn(8, 5)
    vat = VirtualAdversarial()

    def two_heads(z):
        logits = other(z)
        return [net(z), torch.stack([logits, 2 * logits])]

    a = vat.perturb(two_heads, x, radius, probe=probe)
    b = vat.perturb(two_heads, x, radius, probe=probe, clean=two_heads(x))
    assert torch.allclose(a, b)
    assert not torch.allclose(a, vat.perturb(two_heads, x, radius))
    # by hand: one power iteration on the divergence summed over every head
    step = (probe / probe.norm(dim=1, keepdim=True)).requires_grad_(True)
    divergence = sum(
        kl_divergence(c.detach(), m)
        for c, m in zip(two_heads(x), two_heads(x + vat.xi * step))
    )
    (grad,) = torch.autograd.grad(divergence, step)
    expected = x + 0.3 * grad / grad.norm(dim=1, keepdim=True)
    torch.testing.assert_close(a, expected, atol=1e-5, rtol=1e-4)
    # each head group alone points elsewhere
    for alone in (lambda z: [net(z)], lambda z: two_heads(z)[1:]):
        assert not torch.allclose(
            a, vat.perturb(alone, x, radius, probe=probe), atol=1e-3
        )


def test_kl_divergence():
    p = torch.tensor([[2.0, 0.0, -1.0]])
    assert float(kl_divergence(p, p)) == pytest.approx(0.0, abs=1e-7)
    q = torch.zeros(1, 3)
    probs = p.softmax(1)[0].numpy()
    expected = float((probs * np.log(probs * 3)).sum())
    assert float(kl_divergence(p, q)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(eps=0), "eps must be a positive number"),
        (dict(eps=float("nan")), "eps must be a positive number"),
        (dict(xi=-1), "xi must be a positive number"),
        (dict(weight=-0.5), "weight must be a non-negative number"),
        (dict(eps=True), "eps must be a positive number"),
        (dict(weight=False), "weight must be a non-negative number"),
        (dict(n_neighbors=0), "n_neighbors must be a positive integer"),
        (dict(n_neighbors=2.5), "n_neighbors must be a positive integer"),
        (dict(noise_floor=1), "noise_floor must be True or False"),
    ],
)
def test_invalid_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        VirtualAdversarial(**params)


def test_repr_and_equality():
    vat = VirtualAdversarial(eps=0.25)
    assert (
        repr(vat)
        == "VirtualAdversarial(eps=0.25, n_neighbors=10, xi=10.0, weight=10.0, "
        "noise_floor=False)"
    )
    assert vat == VirtualAdversarial(eps=0.25) != VirtualAdversarial()


def test_perturbation_leaves_batchnorm_running_statistics_alone():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    ).train()
    x = torch.randn(16, 5)
    net(x)

    def running():
        return [net[1].running_mean.clone(), net[1].running_var.clone()]

    kept = running()
    VirtualAdversarial().perturb(lambda z: [net(z)], x, torch.ones(16))
    # a plain callable: its passes do update the statistics (far-off probe)
    assert not torch.allclose(kept[1], running()[1])
    with torch.no_grad():
        net[1].running_mean.copy_(kept[0])
        net[1].running_var.copy_(kept[1])

    class Heads(torch.nn.Module):  # a module, as the estimator passes it
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, z):
            return [self.net(z)]

    VirtualAdversarial().perturb(Heads().train(), x, torch.ones(16))
    assert all(torch.equal(a, b) for a, b in zip(kept, running()))
    assert net.training


def test_rotation_turns_non_square_images_without_distorting_them():
    """A disk in a 41x81 image stays a disk under any rotation: the angle is
    one angle in pixels, not stretched by the grid's per-axis coordinates
    (which turned vertical strokes by 49 degrees and horizontal ones by 16
    when 30 were drawn)."""
    height, width = 41, 81
    ys, xs = torch.meshgrid(
        torch.arange(height).float() - height // 2,
        torch.arange(width).float() - width // 2,
        indexing="ij",
    )
    disk = ((xs.square() + ys.square()) <= 12**2).float().expand(16, 1, -1, -1)
    torch.manual_seed(0)
    turned = random_affine(
        disk.contiguous(), rotation=30, scale=(1, 1), shear=0, translation=0
    )
    for image in turned[:, 0]:
        mass = float(image.sum())
        assert mass == pytest.approx(float(disk[0, 0].sum()), rel=0.02)
        cx, cy = (image * xs).sum() / mass, (image * ys).sum() / mass
        xx = float((image * (xs - cx).square()).sum()) / mass
        yy = float((image * (ys - cy).square()).sum()) / mass
        assert xx == pytest.approx(yy, rel=0.03)


def _coordinate_images(n, size=48):
    """Images whose two channels hold the x and the y grid coordinate."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y]).expand(n, 2, size, size).contiguous()


@pytest.mark.parametrize("strength", [0.02, 0.05])
def test_elastic_displacement_has_the_requested_length_and_is_smooth(strength):
    torch.manual_seed(0)
    images = _coordinate_images(16)
    moved = random_affine(
        images, rotation=0, scale=(1, 1), shear=0, translation=0, elastic=strength
    )
    # each pixel now holds the coordinate it was sampled from: the difference
    # is its displacement (in grid units, where the image side is 2)
    shift = (moved - images)[:, :, 8:-8, 8:-8]  # away from the clamped border
    rms = shift.pow(2).sum(dim=1).mean().sqrt() / 2  # over the batch
    assert abs(rms - strength) < 0.2 * strength
    step = (shift[..., 1:] - shift[..., :-1]).abs().mean()
    assert step < 0.25 * shift.abs().mean()  # white noise: about 1.1
    # every image gets its own field
    assert not torch.allclose(moved[0], moved[1])


def test_elastic_field_of_each_image_has_the_requested_length():
    field = _elastic_field(5, (12, 30), 0.05, torch.device("cpu"))
    assert field.shape == (5, 12, 30, 2)
    rms = field.pow(2).sum(dim=-1).mean(dim=(1, 2)).sqrt()
    torch.testing.assert_close(rms, torch.full((5,), 2 * 0.05))  # side: 2 units


def test_elastic_off_draws_nothing_and_changes_nothing():
    images = torch.rand(4, 1, 12, 12)
    torch.manual_seed(3)
    plain = ImageAugmentation()(images)
    after_plain = torch.rand(1)
    torch.manual_seed(3)
    off = ImageAugmentation(elastic=0.0)(images)
    assert torch.equal(plain, off) and torch.equal(torch.rand(1), after_plain)
    torch.manual_seed(3)
    assert not torch.allclose(ImageAugmentation(elastic=0.05)(images), plain)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(rotation=-5), "rotation must be a non-negative number"),
        (dict(elastic=float("inf")), "elastic must be a non-negative number"),
        (dict(noise="0.1"), "noise must be a non-negative number"),
        (dict(binarize=1.5), "binarize must be a non-negative number at most 1"),
        (dict(contrast=1.5), "contrast must be a non-negative number at most 1"),
        (dict(shear=90), "shear must be below 90 degrees"),
        (dict(scale=(1.1, 0.9)), r"scale must be a pair \(low, high\)"),
        (dict(scale=(0, 1)), r"scale must be a pair \(low, high\)"),
        (dict(scale=1.0), r"scale must be a pair \(low, high\)"),
    ],
)
def test_invalid_image_augmentation(params, message):
    with pytest.raises(ValueError, match=message):
        ImageAugmentation(**params)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(noise=-0.1), "noise must be a non-negative number"),
        (dict(mask=1.2), "mask must be a non-negative number at most 1"),
    ],
)
def test_invalid_vector_augmentation(params, message):
    with pytest.raises(ValueError, match=message):
        VectorAugmentation(**params)


@pytest.mark.parametrize(
    "scale", [[0.8, 1.2], np.array([0.8, 1.2]), torch.tensor([0.8, 1.2]), (1, 2)]
)
def test_scale_takes_any_pair_of_numbers(scale):
    augment = ImageAugmentation(scale=scale)
    assert augment.scale == pytest.approx((float(scale[0]), float(scale[1])))
    assert augment(torch.rand(2, 1, 8, 8)).shape == (2, 1, 8, 8)


def test_image_augmentation_repr_keeps_the_signature_order():
    text = repr(ImageAugmentation(elastic=0.05))
    assert text.endswith("binarize=0.0, elastic=0.05)")
    assert ImageAugmentation(elastic=0.05) != ImageAugmentation()


@pytest.mark.parametrize(
    "augment",
    [ImageAugmentation(rotation=5.0, elastic=0.03), VectorAugmentation(noise=0.2),
     VirtualAdversarial(eps=0.3)],
    ids=lambda a: type(a).__name__,
)  # fmt: skip
def test_settings_have_get_params_and_set_params(augment):
    from sklearn.base import clone

    params = augment.get_params()
    assert type(augment)(**params) == augment
    copy = clone(augment)
    assert copy == augment and copy is not augment
    name = next(iter(params))
    assert copy.set_params(**{name: 0.5}) is copy
    assert copy.get_params()[name] == 0.5 and augment.get_params() == params
    # A bad value is refused as __init__ refuses it, and changes nothing.
    with pytest.raises(ValueError, match=f"{name} must be"):
        copy.set_params(**{name: -1.0})
    assert copy.get_params()[name] == 0.5
    with pytest.raises(ValueError, match="Invalid parameter 'colour'"):
        copy.set_params(colour=1.0)


def test_settings_pickled_before_a_setting_existed_compare_by_their_defaults():
    old = ImageAugmentation()
    del old.__dict__["elastic"]  # as unpickled from before ``elastic`` existed
    assert old == ImageAugmentation()
    assert repr(old) == repr(ImageAugmentation())
