"""Behaviour and quality of AutoEncoderEmbedder.

What the three estimators share (persistence, devices, seeding, input and
parameter checks, pandas output) is tested in test_estimators.py.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_s_curve, make_swiss_roll
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

from skiic import AutoEncoderEmbedder
from skiic.augment import ImageAugmentation, VectorAugmentation
from skiic.metrics import matched_accuracy, nmi
from skiic.networks import COMPACT_CHANNELS, AutoEncoder, ConvDecoder, MLPDecoder

FAST = dict(max_epochs=3, batch_size=64, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def roll():
    """A swiss roll: a 2-D manifold curled up in 3-D, 400 samples."""
    X, _ = make_swiss_roll(400, noise=0.05, random_state=0)
    return X


@pytest.fixture(scope="module")
def fitted_roll(roll):
    return AutoEncoderEmbedder(2, **dict(FAST, max_epochs=20)).fit(roll)


def blob_images(shape, n_samples=40, seed=0):
    """Images of a bright square at a random place on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    channels, height, width = shape
    images = 0.1 * rng.random((n_samples, channels, height, width))
    side = max(1, height // 3)
    for image, (top, left) in zip(
        images, rng.integers(0, [height - side + 1, width - side + 1], (n_samples, 2))
    ):
        image[:, top : top + side, left : left + side] += 1.0
    return (255 * images / images.max()).astype(np.float32)


# ----------------------------------------------------------------- quality
@pytest.mark.parametrize(
    "make", [make_swiss_roll, make_s_curve], ids=["swiss-roll", "s-curve"]
)
def test_reconstruction_beats_pca_on_a_curved_manifold(make):
    """Two codes describe a 2-D manifold in 3-D; two principal components cannot."""
    X, _ = make(500, noise=0.05, random_state=0)
    pca = PCA(2).fit(X)
    pca_error = np.mean((X - pca.inverse_transform(pca.transform(X))) ** 2)
    model = AutoEncoderEmbedder(2, **dict(FAST, max_epochs=50)).fit(X)
    assert -model.score(X) < 0.5 * pca_error


def test_digits_codes_keep_the_cluster_structure(digits):
    """KMeans on 10 codes of the digit images finds the digits about as well as
    on the 64 pixels (KMeans on the pixels: 0.79)."""
    X, y = digits
    kmeans = KMeans(10, n_init=10, random_state=0)
    embedder = AutoEncoderEmbedder(10, max_epochs=50, device="cpu", random_state=0)
    labels = make_pipeline(embedder, kmeans).fit_predict(X.reshape(-1, 1, 8, 8))
    # Seeds 0-7, one thread: on an AMD EPYC with oneDNN limited to AVX2,
    # accuracy 0.778 to 0.873 (median 0.817) and NMI 0.781 to 0.833; on an
    # Intel Xeon, with and without that limit, accuracy 0.755 to 0.880 and
    # NMI 0.726 to 0.810 (seed 0 there: NMI 0.748 to 0.762). The floors keep
    # a margin of about 0.03 below the worst of these 24 fits, for other CPUs
    # and thread counts. That the codes do not reliably beat the pixels is a
    # known weakness of the autoencoder.
    assert matched_accuracy(y, labels) > 0.72
    assert nmi(y, labels) > 0.70


def test_denoising_removes_noise():
    """Trained on noisy copies, the model maps noisy samples close to clean ones."""
    rng = np.random.default_rng(0)
    factors = rng.uniform(-1, 1, (600, 2))
    mixing = rng.standard_normal((4, 20))
    X = np.tanh(np.c_[factors, factors**2] @ mixing).astype(np.float32)
    noisy = X + 0.3 * rng.standard_normal(X.shape).astype(np.float32)
    scale = float(np.sqrt(X.var(axis=0).mean()))  # the estimator's vector scale

    def add_noise(batch):  # the same noise, in the scaled units the network sees
        return batch + (0.3 / scale) * torch.randn_like(batch)

    params = dict(FAST, max_epochs=60, batch_size=64)
    denoising = AutoEncoderEmbedder(4, augmentation=add_noise, **params).fit(X)
    plain = AutoEncoderEmbedder(4, augmentation=None, **params).fit(X)

    def error(model):
        return np.mean((model.inverse_transform(model.transform(noisy)) - X) ** 2)

    noise_error = np.mean((noisy - X) ** 2)
    assert error(denoising) < 0.3 * noise_error
    assert error(denoising) < error(plain)


def test_augmentation_corrupts_training_batches_only():
    X = blob_images((1, 8, 8), n_samples=40)
    seen = []

    def spy(batch):
        seen.append(tuple(batch.shape))
        return batch

    model = AutoEncoderEmbedder(3, augmentation=spy, **FAST).fit(X)
    assert len(seen) == model.n_iter_  # one batch of 40 per epoch
    assert all(shape == (40, 1, 8, 8) for shape in seen)
    model.transform(X)
    model.score(X)
    assert len(seen) == model.n_iter_


def test_default_augmentation_follows_the_input():
    images = AutoEncoderEmbedder()._resolve_augmentation((1, 8, 8))
    vectors = AutoEncoderEmbedder()._resolve_augmentation(None)
    assert images == ImageAugmentation()  # no elastic distortion at 8x8
    assert isinstance(vectors, VectorAugmentation)
    assert AutoEncoderEmbedder(augmentation=None)._resolve_augmentation(None) is None
    for shape in [(1, 16, 16), (3, 8, 40)]:  # a side of 16 or less: small
        assert AutoEncoderEmbedder()._resolve_augmentation(shape) == images


def test_default_augmentation_distorts_larger_images_elastically():
    """Above 16x16 "auto" trains exactly as the elastic image views do."""
    assert AutoEncoderEmbedder()._resolve_augmentation((3, 17, 40)) == (
        ImageAugmentation(elastic=0.07)
    )
    X = blob_images((1, 20, 20), n_samples=40)
    codes = [
        AutoEncoderEmbedder(3, augmentation=augmentation, **FAST).fit(X).transform(X)
        for augmentation in ["auto", ImageAugmentation(elastic=0.07), None]
    ]
    np.testing.assert_array_equal(codes[0], codes[1])
    assert not np.allclose(codes[0], codes[2])


# ----------------------------------------------------------------- sklearn API
def test_fitted_attributes(roll, fitted_roll):
    model = fitted_roll
    assert model.n_features_in_ == 3 and model.input_shape_ is None
    assert model.n_iter_ == 20 == len(model.history_)
    assert "train_loss" in model.history_[-1]
    assert "valid_loss" not in model.history_[-1]
    assert model.history_[-1, "train_loss"] < model.history_[0, "train_loss"]
    assert isinstance(model.module_, AutoEncoder)
    assert isinstance(model.module_.decoder, MLPDecoder)
    assert next(model.module_.parameters()).device.type == "cpu"
    assert not model.module_.training


def test_transform_and_inverse_transform(roll, fitted_roll):
    model = fitted_roll
    Z = model.transform(roll)
    assert Z.shape == (400, 2) and Z.dtype == np.float32
    assert np.array_equal(model.transform(roll), Z)
    # codes do not depend on the batching (evaluation mode)
    assert np.allclose(model.transform(roll[:7]), Z[:7], atol=1e-5)
    X_rec = model.inverse_transform(Z)
    assert X_rec.shape == roll.shape and X_rec.dtype == np.float32
    assert model.score(roll) == pytest.approx(-np.mean((roll - X_rec) ** 2), rel=1e-4)


def test_a_changed_parameter_leaves_the_fitted_codes_as_they_are(roll, fitted_roll):
    from sklearn.base import clone

    model = clone(fitted_roll).fit(roll).set_params(n_components=5)
    Z = model.transform(roll)
    assert model.get_feature_names_out().tolist() == [
        "autoencoderembedder0",
        "autoencoderembedder1",
    ]
    assert model.inverse_transform(Z).shape == roll.shape
    with pytest.raises(ValueError, match="codes of 2 features"):
        model.inverse_transform(np.zeros((3, 5)))


def test_fit_transform_equals_fit_then_transform(roll):
    first = AutoEncoderEmbedder(2, **FAST).fit_transform(roll)
    second = AutoEncoderEmbedder(2, **FAST).fit(roll).transform(roll)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("kind", ["vectors", "images"])
def test_inverse_transform_undoes_the_scaling(kind, roll):
    """Fitted on a * X + b, codes are unchanged and reconstructions follow."""
    if kind == "vectors":
        X = roll
        a, b = 37.5, -1000.0
    else:
        # Pixels on a grid of 1/256, a power of two and an integer shift: every
        # value of a * X + b, its range and its offset are exact in float32, so
        # the scaled images are the same bits and so is all of training.
        X = np.round(blob_images((1, 8, 8)) * 256) / 256
        a, b = 32.0, -1024.0
    # vectors: the per-feature means differ in the last bit (float64 sums cast
    # to float32); few epochs, so that those rounding differences stay small
    params = dict(FAST, max_epochs=30 if kind == "images" else 3)
    model = AutoEncoderEmbedder(2, **params).fit(X)
    moved = AutoEncoderEmbedder(2, **params).fit(a * X + b)
    Z = model.transform(X)
    atol = 1e-6 if kind == "images" else 1e-3
    np.testing.assert_allclose(moved.transform(a * X + b), Z, rtol=0, atol=atol)
    X_rec = model.inverse_transform(Z)
    moved_rec = moved.inverse_transform(Z)
    assert moved_rec.shape == X_rec.shape == X.shape
    assert np.allclose(moved_rec, a * X_rec + b, rtol=1e-4, atol=1e-2 * a)
    # the reconstructions live in the units of X, not the scaled ones
    assert abs(moved_rec.mean() - (a * X + b).mean()) < 0.2 * a * X.std()


def test_image_reconstructions_keep_pixel_range(digits):
    X, _ = digits
    images = X[:300].reshape(-1, 1, 8, 8)
    model = AutoEncoderEmbedder(8, **dict(FAST, max_epochs=30)).fit(images)
    X_rec = model.inverse_transform(model.transform(images))
    assert X_rec.shape == images.shape
    assert -1.0 < X_rec.min() and X_rec.max() < 17.0  # digits' pixels are 0..16
    assert abs(X_rec.mean() - images.mean()) < 0.5
    # well below the error of the mean image (the pixels' own variance)
    assert -model.score(images) < 0.6 * images.var(axis=0).mean()


@pytest.mark.parametrize("shape", [(-1, 1, 8, 8), (-1, 8, 8)])
def test_images_as_nested_lists_are_reconstructed_as_images(digits, shape):
    X, _ = digits
    images = X[:60].reshape(shape)
    model = AutoEncoderEmbedder(2, **dict(FAST, max_epochs=1)).fit(images.tolist())
    assert model.input_shape_ == (1, 8, 8)
    X_rec = model.inverse_transform(model.transform(images.tolist()))
    assert X_rec.shape == images.shape


def test_tanh_latent_is_bounded(roll):
    model = AutoEncoderEmbedder(2, latent="tanh", **FAST).fit(roll)
    Z = model.transform(roll * 100)  # far outside the training data
    assert np.all(np.abs(Z) <= 1.0)
    linear = AutoEncoderEmbedder(2, **FAST).fit(roll).transform(roll * 100)
    assert np.abs(linear).max() > 1.0


def test_whitened_codes_are_decorrelated_and_decode_like_linear_ones(roll):
    """latent="whitened" (the default): identity covariance on the training
    data; the same network as "linear" (same seed), so the reconstructions
    agree."""
    X = np.hstack([roll, roll[:, :1] ** 2])
    whitened = AutoEncoderEmbedder(3, **FAST).fit(X)
    Z = whitened.transform(X)
    np.testing.assert_allclose(Z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(Z, rowvar=False, ddof=0), np.eye(3), atol=1e-3)
    linear = AutoEncoderEmbedder(3, latent="linear", **FAST).fit(X)
    np.testing.assert_allclose(
        whitened.inverse_transform(Z),
        linear.inverse_transform(linear.transform(X)),
        atol=1e-4,
    )
    assert whitened.score(X) == pytest.approx(linear.score(X))


def test_code_whitening_survives_a_dead_component():
    from skiic._autoencoder import code_whitening

    codes = np.random.default_rng(0).normal(size=(200, 3)) * [3.0, 1.0, 0.0]
    mean, forward, backward = code_whitening(codes)
    assert np.all(np.isfinite(forward))
    np.testing.assert_allclose(
        (codes - mean) @ forward @ backward + mean, codes, atol=1e-5
    )
    whitened = (codes - mean) @ forward
    np.testing.assert_allclose(whitened.std(axis=0), [1, 1, 0], atol=1e-5)


def test_codes_of_fewer_samples_than_components_stay_in_scale():
    """8 samples span 7 of 10 code directions: new data along the other three
    keeps the scale of the largest (divided by their near-zero variance it
    came out hundreds of times larger than the training codes)."""
    X, _ = make_blobs(40, n_features=20, centers=3, random_state=0)
    model = AutoEncoderEmbedder(10, max_epochs=3, random_state=0).fit(X[:8])
    trained = np.abs(model.transform(X[:8])).max()
    assert np.abs(model.transform(X[8:])).max() < 10 * trained
    # still undone exactly: the same network, with linear codes
    linear = clone(model).set_params(latent="linear").fit(X[:8])
    np.testing.assert_allclose(
        model.inverse_transform(model.transform(X[8:])),
        linear.inverse_transform(linear.transform(X[8:])),
        atol=1e-3,
    )


@pytest.mark.parametrize("convs", [0, -1, 1.5, True])
def test_conv_networks_need_a_convolution_a_stage(convs):
    """convs_per_stage=0 built a decoder of 64 channels for 1-channel images
    and a backbone that only pools."""
    from skiic.networks import ConvBackbone

    for build in (
        lambda: ConvBackbone((1, 8, 8), convs_per_stage=convs),
        lambda: ConvDecoder(2, (1, 8, 8), convs_per_stage=convs),
    ):
        with pytest.raises(ValueError, match="convs_per_stage must be an int"):
            build()
    ConvBackbone((1, 8, 8), convs_per_stage=np.int64(2))  # NumPy ints are ints


def test_custom_module_on_images_gets_a_dense_decoder():
    X = blob_images((1, 8, 8))
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU())
    model = AutoEncoderEmbedder(2, module=backbone, **FAST).fit(X)
    assert model.input_shape_ == (1, 8, 8)
    assert isinstance(model.module_.decoder, MLPDecoder)
    assert model.inverse_transform(model.transform(X)).shape == X.shape


# ----------------------------------------------------------------- early stopping
def test_early_stopping_stops_early_and_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 30))  # noise: held-out error soon stops falling
    model = AutoEncoderEmbedder(
        8,
        early_stopping=True,
        n_iter_no_change=3,
        augmentation=None,
        **dict(FAST, max_epochs=300, batch_size=16, lr=1e-2),
    ).fit(X)
    valid = model.history_[:, "valid_loss"]
    assert model.n_iter_ < 300 and len(valid) == model.n_iter_
    best = int(np.argmin(valid))
    assert best == model.n_iter_ - 1 - 3  # stopped three epochs after the best
    # the kept weights are the best epoch's: refitting for best + 1 epochs
    # without early stopping but on the same split gives the same network.
    best_epoch_model = clone(model).set_params(
        max_epochs=best + 1, n_iter_no_change=10_000
    )
    best_epoch_model.fit(X)
    assert np.allclose(best_epoch_model.transform(X), model.transform(X), atol=1e-5)


def test_tol_is_the_relative_decrease_that_counts(roll):
    """An improvement must lower the held-out error by ``tol`` of its best:
    with tol=1 nothing after the first epoch counts, with tol=0 any decrease."""
    params = dict(FAST, early_stopping=True, n_iter_no_change=2, max_epochs=12)
    strict = AutoEncoderEmbedder(2, tol=1.0, **params).fit(roll)
    assert strict.n_iter_ == 3  # the first epoch, then two without improvement
    valid = (
        AutoEncoderEmbedder(2, tol=0.0, **params).fit(roll).history_[:, "valid_loss"]
    )
    assert len(valid) > 3 and min(valid[1:]) < valid[0]


def test_early_stopping_records_valid_loss_only_when_on(roll):
    model = AutoEncoderEmbedder(2, early_stopping=True, **FAST).fit(roll)
    assert all("valid_loss" in epoch for epoch in model.history_)
    assert model.n_iter_ == 3


def test_early_stopping_needs_samples_to_hold_out():
    X = np.random.default_rng(0).random((10, 3))
    with pytest.raises(ValueError, match="validation_fraction=0.1 splits 10 samples"):
        AutoEncoderEmbedder(2, early_stopping=True, **FAST).fit(X)


# ------------------------------------------------------ neighbours as inputs
def test_neighbour_inputs_are_neighbours_of_training_samples_only():
    """With n_neighbors, each training input is one of the sample's nearest
    training neighbours; held-out samples are never inputs."""
    from sklearn.neighbors import NearestNeighbors

    from skiic import _data
    from skiic._autoencoder import _ReconstructionObjective

    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.standard_normal((50, 3)).astype(np.float32))
    train = torch.arange(0, 50, 2)  # the odd samples are held out
    data = _data.ResidentData(X)
    neighbors = _data.neighbor_indices_among(data, train, 4)
    expected = NearestNeighbors(n_neighbors=5).fit(X[train]).kneighbors()[1]
    assert neighbors.tolist() == expected[:, :4].tolist()
    objective = _ReconstructionObjective(data, train, None, neighbors=neighbors)
    seen = []
    for (idx, source), (clean, inputs) in objective.batches(25, 8, "cpu"):
        for sample, partner in zip(idx.tolist(), source.tolist()):
            position = sample // 2
            assert partner in train[neighbors[position]].tolist()
        assert torch.equal(clean, X[idx]) and torch.equal(inputs, X[source])
        seen += idx.tolist()
    assert sorted(seen) == train.tolist()  # every training sample, once


def test_training_reconstructs_each_sample_from_its_neighbour():
    """The loss is the error of decoding the neighbour into the sample."""
    from skiic import _data
    from skiic._autoencoder import _ReconstructionObjective

    X = torch.from_numpy(np.random.default_rng(0).random((30, 4)).astype(np.float32))
    data = _data.ResidentData(X)
    train = torch.arange(30)
    neighbors = _data.neighbor_indices_among(data, train, 2)
    objective = _ReconstructionObjective(data, train, None, neighbors=neighbors)
    module = nn.Linear(4, 4)
    for batch in objective.batches(30, 10, "cpu"):
        (idx, source), _ = batch
        assert not torch.equal(idx, source)
        expected = torch.nn.functional.mse_loss(module(X[source]), X[idx])
        assert torch.allclose(objective.forward(module, batch), expected)


def test_neighbour_search_runs_once_per_fit_and_is_announced(monkeypatch, capsys):
    from skiic import _data

    calls = []
    search = _data.neighbor_indices

    def counting(data, n_neighbors, **kwargs):
        calls.append((data.n_samples, n_neighbors))
        return search(data, n_neighbors, **kwargs)

    monkeypatch.setattr(_data, "neighbor_indices", counting)
    X = np.random.default_rng(0).random((60, 5))
    AutoEncoderEmbedder(2, n_neighbors=3, verbose=1, **FAST).fit(X)
    AutoEncoderEmbedder(2, n_neighbors=3, early_stopping=True, **FAST).fit(X)
    AutoEncoderEmbedder(2, **FAST).fit(X)  # off by default
    assert calls == [(60, 3), (54, 3)]
    assert "searching the 3 nearest neighbours of 60 samples" in capsys.readouterr().out


def test_copies_of_a_training_sample_are_never_its_neighbours(monkeypatch, capsys):
    """Rows given several times: the neighbours are searched among the
    distinct training rows, so a sample's input is never its own copy."""
    from skiic import _data

    found = []
    search = _data.neighbor_indices_among

    def keeping_search(data, rows, k, **kwargs):
        found.append((rows.numpy(), search(data, rows, k, **kwargs).numpy()))
        return torch.from_numpy(found[-1][1])

    monkeypatch.setattr(_data, "neighbor_indices_among", keeping_search)
    X = np.tile(np.random.default_rng(0).random((15, 4)), (6, 1))
    model = AutoEncoderEmbedder(2, n_neighbors=8, early_stopping=True, verbose=1)
    model.set_params(**dict(FAST, max_epochs=20)).fit(X)
    out = capsys.readouterr().out
    assert "searching the 8 nearest neighbours of 81 samples (15 distinct)" in out
    train, neighbors = found[-1]  # the outer call: positions in the training rows
    assert train.shape == (81,) and neighbors.shape == (81, 8)
    partners = X[train][neighbors]
    assert not (partners == X[train][:, None, :]).all(axis=2).any()


def test_neighbour_inputs_on_streamed_data_match_resident_ones(tmp_path):
    X = np.random.default_rng(0).random((80, 6)).astype(np.float32)
    stored = np.lib.format.open_memmap(
        tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=X.shape
    )
    stored[:] = X
    stored.flush()
    params = dict(FAST, n_neighbors=4, early_stopping=True)
    resident = AutoEncoderEmbedder(3, **params).fit(X)
    streamed = AutoEncoderEmbedder(3, **params).fit(stored)
    assert streamed.streamed_ and not resident.streamed_
    assert np.allclose(streamed.transform(X), resident.transform(X), atol=1e-4)


def test_neighbour_inputs_on_flat_digits_give_codes_that_cluster(digits):
    """Flat digits with neighbours as inputs: a floor on how well KMeans finds
    the digits in the codes (on the pixels: NMI 0.74, matched accuracy 0.79)."""
    X, y = digits
    embedder = AutoEncoderEmbedder(10, n_neighbors=20, max_epochs=80, random_state=0)
    kmeans = KMeans(10, n_init=10, random_state=0)
    labels = make_pipeline(embedder, kmeans).fit_predict(X)
    # Seeds 0-3, one thread: NMI 0.790 to 0.810 (0.717 to 0.813 without the
    # neighbours), accuracy 0.823 to 0.870; seed 0 on two threads 0.737, as
    # the partition KMeans finds on the codes moves: the NMI floor keeps 0.04
    # below the worst seed, the accuracy floor more.
    assert nmi(y, labels) > 0.75
    assert matched_accuracy(y, labels) > 0.70


# ----------------------------------------------------------------- searches
def test_grid_search_prefers_more_components():
    X, _ = make_s_curve(300, noise=0.01, random_state=0)
    search = GridSearchCV(
        AutoEncoderEmbedder(**dict(FAST, max_epochs=30, augmentation=None)),
        {"n_components": [1, 2]},
        cv=2,
    ).fit(X)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(scores < 0)
    assert search.best_params_ == {"n_components": 2}


def test_pipeline_with_kmeans(roll):
    pipe = make_pipeline(AutoEncoderEmbedder(2, **FAST), KMeans(3, n_init=2))
    labels = pipe.fit_predict(roll)
    assert labels.shape == (400,) and set(labels) == {0, 1, 2}


# ----------------------------------------------------------------- input shapes
@pytest.mark.parametrize(
    "shape", [(1, 8, 8), (1, 16, 16), (1, 28, 28), (3, 32, 32), (2, 15, 9)], ids=str
)
def test_image_shapes_are_reconstructed_exactly(shape):
    X = blob_images(shape, n_samples=24)
    model = AutoEncoderEmbedder(4, **dict(FAST, max_epochs=2, batch_size=24)).fit(X)
    assert model.input_shape_ == shape
    assert model.n_features_in_ == int(np.prod(shape))
    assert isinstance(model.module_.decoder, ConvDecoder)
    Z = model.transform(X)
    assert Z.shape == (24, 4)
    assert model.inverse_transform(Z).shape == X.shape
    assert np.array_equal(model.transform(X.reshape(24, -1)), Z)


def test_flat_and_three_d_images():
    X = blob_images((1, 8, 8))
    model = AutoEncoderEmbedder(3, **FAST).fit(X[:, 0])  # (n, H, W)
    assert model.input_shape_ == (1, 8, 8)
    Z = model.transform(X[:, 0])
    assert model.inverse_transform(Z).shape == (40, 8, 8)
    flat = AutoEncoderEmbedder(3, input_shape=(1, 8, 8), **FAST).fit(X.reshape(40, 64))
    assert flat.input_shape_ == (1, 8, 8)
    assert np.array_equal(flat.transform(X.reshape(40, 64)), Z)
    assert flat.inverse_transform(Z).shape == (40, 64)
    assert np.allclose(
        flat.inverse_transform(Z), model.inverse_transform(Z).reshape(40, 64)
    )


# ----------------------------------------------------------------- bad input
def test_inverse_transform_checks_the_codes(fitted_roll):
    with pytest.raises(ValueError, match="X has 3 features, but inverse_transform"):
        fitted_roll.inverse_transform(np.ones((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fitted_roll.inverse_transform(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="Expected 2D array"):
        fitted_roll.inverse_transform(np.ones(2))


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_components=0), "n_components"),
        (dict(n_components=True), "'n_components' parameter .* not a bool"),
        (dict(latent="relu"), "latent"),
        (dict(early_stopping="yes"), "early_stopping"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(n_iter_no_change=0), "n_iter_no_change"),
        (dict(tol=-1.0), "tol"),
        (dict(n_neighbors=-1), "n_neighbors"),
        (dict(n_neighbors="auto"), "n_neighbors"),
        (dict(n_neighbors=2.0), "n_neighbors"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_invalid_parameters(params, message):
    if message.isidentifier():  # scikit-learn's check names the parameter
        message = f"'{message}' parameter of AutoEncoderEmbedder"
    with pytest.raises(ValueError, match=message):
        AutoEncoderEmbedder(**{**FAST, **params}).fit(
            np.random.default_rng(0).random((20, 2))
        )


def test_cpu_images_train_the_compact_network(monkeypatch):
    """Images on a CPU: the compact network, and about 800 steps instead of
    3,000 when larger than 16x16; vectors, and a GPU, keep the defaults."""
    X = np.zeros((2560, 400), dtype=np.float32)  # 10 steps an epoch
    model = AutoEncoderEmbedder(2, device="cpu")
    large = model._make_plan(X, (1, 20, 20), None)
    small = model._make_plan(X[:, :256], (1, 16, 16), None)
    vectors = model._make_plan(X, None, None)
    assert (large.compact, large.max_epochs) == (True, 80)
    assert (small.compact, small.max_epochs) == (True, 200)
    assert (vectors.compact, vectors.max_epochs) == (False, 200)
    noise = np.random.default_rng(0).random((64, 1, 8, 8))
    fitted = AutoEncoderEmbedder(2, **FAST).fit(noise)
    convs = [m for m in fitted.module_.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(COMPACT_CHANNELS[: len(convs)])
    monkeypatch.setattr(AutoEncoderEmbedder, "_fits_on_cpu", lambda self: False)
    on_gpu = model._make_plan(X, (1, 20, 20), None)
    assert (on_gpu.compact, on_gpu.max_epochs) == (False, 200)
