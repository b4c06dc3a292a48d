"""Behaviour every estimator shares, tested once for each of the three.

Each test runs for IICClustering, DeepClusterEstimator and
AutoEncoderEmbedder (the ``case`` fixture): persistence, devices, seeding,
input and parameter checks, pandas output, failures. What only one estimator
does, and how well it does it, is tested in that estimator's own module.
"""

import pickle
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from bad_input import BAD_INPUTS
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from torch import nn

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic.exceptions import ConvergenceWarning, TrainingError
from skiic.networks import MLPBackbone

# Every method that takes samples (score included); each estimator has a subset.
SAMPLE_METHODS = ("predict", "predict_proba", "transform", "score")


@dataclass(frozen=True)
class Case:
    """One estimator: how to make a small, fast one, and what it outputs."""

    cls: type
    params: dict
    output: str  # "predict" for the clusterers, "transform" for the autoencoder
    n_outputs: int  # columns of transform

    def make(self, **params):
        return self.cls(**{**self.params, **params})

    def methods(self, model):
        """The methods of ``model`` that take samples."""
        return [m for m in SAMPLE_METHODS if hasattr(model, m)]


SMALL = dict(max_epochs=3, device="cpu", random_state=0)
CASES = [
    pytest.param(
        Case(
            IICClustering,
            # five fresh heads: the head selection runs, at a tenth of its cost
            dict(n_clusters=3, n_init=1, n_heads=2, n_head_inits=5, **SMALL),
            output="predict",
            n_outputs=3,
        ),
        id="IICClustering",
    ),
    pytest.param(
        Case(
            DeepClusterEstimator,
            dict(n_clusters=3, **SMALL),
            output="predict",
            n_outputs=16,  # n_components
        ),
        id="DeepClusterEstimator",
    ),
    pytest.param(
        Case(
            AutoEncoderEmbedder,
            dict(n_components=2, batch_size=64, **SMALL),
            output="transform",
            n_outputs=2,
        ),
        id="AutoEncoderEmbedder",
    ),
]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return request.param


@pytest.fixture(scope="module")
def blobs():
    """Three well separated blobs in 3-D, 120 samples, and their labels."""
    return make_blobs(n_samples=120, n_features=3, centers=3, random_state=0)


@pytest.fixture(scope="module")
def fitted(case, blobs):
    X, _ = blobs
    return case.make().fit(X)


def square_images(n_samples=40, seed=0):
    """(n, 1, 8, 8) images: a bright square at a random place on noise."""
    rng = np.random.default_rng(seed)
    images = 0.1 * rng.random((n_samples, 1, 8, 8))
    for image, (top, left) in zip(images, rng.integers(0, 6, (n_samples, 2))):
        image[:, top : top + 3, left : left + 3] += 1.0
    return images.astype(np.float32)


def output(model, case, X):
    return getattr(model, case.output)(X)


def fitted_arrays(model):
    """The public fitted attributes that are arrays or numbers."""
    return {
        name: value
        for name, value in vars(model).items()
        if name.endswith("_")
        and not name.startswith("_")
        and isinstance(value, (np.ndarray, int, float))
    }


def history(model):
    """The training history without its timings."""
    return [
        {key: value for key, value in epoch.items() if "dur" not in key}
        for epoch in model.history_
    ]


class _NaNModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 8)

    def forward(self, x):
        return self.linear(x) * float("nan")


# ----------------------------------------------------------------- persistence
def test_pickle_round_trip(case, blobs, fitted):
    X, _ = blobs
    restored = pickle.loads(pickle.dumps(fitted))
    for method in case.methods(fitted):
        np.testing.assert_array_equal(
            getattr(restored, method)(X), getattr(fitted, method)(X), err_msg=method
        )
    if hasattr(fitted, "inverse_transform"):
        Z = fitted.transform(X)
        np.testing.assert_array_equal(
            restored.inverse_transform(Z), fitted.inverse_transform(Z)
        )


def test_model_fitted_on_any_device_predicts_on_cpu(case, blobs, device):
    X, _ = blobs
    model = case.make(device=device).fit(X)
    restored = pickle.loads(pickle.dumps(model))
    restored.set_params(device="cpu")
    if hasattr(model, "predict"):
        np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    # CUDA inference runs under bf16 autocast: about three significant digits
    tol = 1e-3 if device == "cpu" else 3e-2
    Z = model.transform(X)
    np.testing.assert_allclose(restored.transform(X), Z, rtol=0, atol=tol)
    if hasattr(model, "inverse_transform"):
        np.testing.assert_allclose(
            restored.inverse_transform(Z),
            model.inverse_transform(Z),
            rtol=0,
            atol=10 * tol * X.std(),
        )


def test_cuda_model_falls_back_to_cpu_where_no_gpu(case, blobs, fitted):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    X, _ = blobs
    model = pickle.loads(pickle.dumps(fitted))
    model.device = "cuda"  # as if it had been fitted on a GPU machine
    for method in case.methods(fitted):
        np.testing.assert_array_equal(
            getattr(model, method)(X), getattr(fitted, method)(X), err_msg=method
        )
    if hasattr(fitted, "labels_"):
        np.testing.assert_array_equal(model.predict(X), fitted.labels_)
    if hasattr(fitted, "inverse_transform"):
        Z = fitted.transform(X)
        np.testing.assert_array_equal(
            model.inverse_transform(Z), fitted.inverse_transform(Z)
        )
    with pytest.raises(ValueError, match="CUDA is not available"):
        clone(model).fit(X)


# ----------------------------------------------------------------- training
def test_custom_module_is_copied_not_trained_in_place(case, blobs):
    X, _ = blobs
    backbone = nn.Sequential(nn.Linear(3, 16), nn.ReLU())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = case.make(module=backbone).fit(X)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert model.module is backbone  # the parameter is stored untouched
    assert model.module_.backbone is not backbone
    # the copy is the one that trained
    trained = model.module_.backbone.state_dict()
    assert any(not torch.equal(trained[key], before[key]) for key in before)


class _PooledOverSamples(nn.Module):
    """One row for the whole batch: 2-D, but not one row per sample."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 8)

    def forward(self, x):
        return self.linear(x).mean(dim=0, keepdim=True)


@pytest.mark.parametrize(
    "module, message",
    [
        (
            nn.Linear(2, 16),
            "could not take a batch of samples of shape 3, the input .*: mat1",
        ),
        (
            nn.LSTM(3, 8),
            r"one tensor of shape \(n_samples, width\); .* returned a tuple",
        ),
        (
            _PooledOverSamples(),
            r"\(n_samples, width\); for 2 samples it returned shape \(1, 8\)",
        ),
        (MLPBackbone(5), "could not take a batch of samples of shape 3"),
        (nn.Identity(), None),
    ],
    ids=["wrong-width", "tuple", "pooled-over-samples", "skiic-backbone", "identity"],
)
def test_custom_module_that_cannot_take_the_input_is_named(
    case, blobs, module, message
):
    """A user's module is tried on the training input before training: a
    wrong input width (even with nn.Linear's out_features) or a tuple output
    is a ValueError that says so, not a torch error from inside training."""
    X, _ = blobs
    if message is None:  # the check passes a module that does take the input
        case.make(module=module).fit(X)
        return
    with pytest.raises(ValueError, match=message):
        case.make(module=module).fit(X)


def test_same_seed_same_result_and_global_rng_untouched(case, blobs):
    X, _ = blobs
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    first = case.make().fit(X)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    second = case.make().fit(X)
    first_arrays, second_arrays = fitted_arrays(first), fitted_arrays(second)
    assert first_arrays.keys() == second_arrays.keys()
    for name, value in first_arrays.items():
        np.testing.assert_array_equal(second_arrays[name], value, err_msg=name)
    np.testing.assert_equal(history(second), history(first))
    for method in case.methods(first):
        np.testing.assert_array_equal(
            getattr(second, method)(X), getattr(first, method)(X), err_msg=method
        )
    other = case.make(random_state=1).fit(X)
    assert not np.allclose(other.transform(X), first.transform(X))
    for name, value in fitted_arrays(other).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert not np.array_equal(value, first_arrays[name]), name


def test_ignores_y_and_warns_nothing_on_clean_data(case, blobs):
    X, y = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = case.make().fit(X, y)
    assert model.n_iter_ == case.params["max_epochs"]
    without_y = case.make().fit(X)
    np.testing.assert_array_equal(output(model, case, X), output(without_y, case, X))


def test_divergence_is_an_error(case, blobs):
    X, _ = blobs
    with pytest.raises(TrainingError, match="diverged|untrained network"):
        case.make(module=_NaNModule()).fit(X)


# ----------------------------------------------------------------- pandas
def test_feature_names_and_pandas_output(case, blobs, fitted):
    pd = pytest.importorskip("pandas")
    X, _ = blobs
    names = fitted.get_feature_names_out()
    prefix = case.cls.__name__.lower()
    assert names.tolist() == [f"{prefix}{i}" for i in range(case.n_outputs)]
    # The names follow the fitted output, not a parameter changed since.
    param = "n_clusters" if case.cls is IICClustering else "n_components"
    changed = pickle.loads(pickle.dumps(fitted))
    changed.set_params(**{param: case.n_outputs + 3})
    assert changed.get_feature_names_out().tolist() == names.tolist()
    assert changed.transform(X).shape == (len(X), case.n_outputs)
    model = clone(fitted).set_output(transform="pandas")
    frame = model.fit_transform(X)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == names.tolist()
    again = model.transform(X)
    assert isinstance(again, pd.DataFrame) and list(again.columns) == names.tolist()
    np.testing.assert_array_equal(again.to_numpy(), frame.to_numpy())
    if hasattr(model, "inverse_transform"):
        np.testing.assert_allclose(
            model.inverse_transform(frame), model.inverse_transform(frame.to_numpy())
        )


def test_pandas_input_keeps_feature_names(case, blobs):
    pd = pytest.importorskip("pandas")
    X, _ = blobs
    frame = pd.DataFrame(X, columns=["x", "y", "z"])
    model = case.make().fit(frame)
    assert model.feature_names_in_.tolist() == ["x", "y", "z"]
    assert model.transform(frame).shape == (len(X), case.n_outputs)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = output(model, case, X)
    np.testing.assert_array_equal(output(model, case, frame), from_array)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("X, error, message", BAD_INPUTS)
def test_bad_input_is_rejected(case, X, error, message):
    with pytest.raises(error, match=message):
        case.make().fit(X)


def test_methods_before_fit_raise_not_fitted(case):
    model = case.make()
    methods = case.methods(model)
    if hasattr(model, "inverse_transform"):
        methods.append("inverse_transform")
    assert case.output in methods
    for method in methods:
        with pytest.raises(NotFittedError):
            getattr(model, method)(np.ones((4, 3)))


def test_predict_checks_the_input(case, fitted):
    for method in case.methods(fitted):
        with pytest.raises(ValueError, match="X has 5 features"):
            getattr(fitted, method)(np.ones((4, 5)))
        with pytest.raises(ValueError, match="NaN"):
            getattr(fitted, method)(np.array([[0.0, np.nan, 1.0]]))


def test_image_shape_change_at_predict(case):
    X = square_images()
    model = case.make().fit(X)
    assert model.input_shape_ == (1, 8, 8)
    for method in case.methods(model):
        with pytest.raises(ValueError, match=r"fitted on images of shape \(1, 8, 8\)"):
            getattr(model, method)(X.reshape(len(X), 1, 4, 16))
        with pytest.raises(ValueError, match="0 sample"):
            getattr(model, method)(X[:0])


def test_images_given_to_a_model_fitted_on_vectors_are_named(case):
    """Vectors of 64 features, then images of 8x8: the model was fitted on
    rows and cannot know them as images (they were flattened silently)."""
    X = square_images()
    model = case.make().fit(X.reshape(len(X), -1))
    for method in case.methods(model):
        for images in (X, X[:, 0]):
            with pytest.raises(ValueError, match="fitted on vectors of 64 features"):
                getattr(model, method)(images)


def test_channels_last_images_are_pointed_out(case):
    """(n, H, W, C) arrays, as image libraries store them, would be read as C
    = H channels of W pixels: a warning says so and how to fix it, for 4-D X
    and for input_shape; channels-first images fit without one."""
    X = square_images()
    last = np.ascontiguousarray(X.transpose(0, 2, 3, 1))  # (n, 8, 8, 1)
    with pytest.warns(UserWarning, match=r"\(8, 8, 1\): 8 channels of 8x1 .*moveaxis"):
        case.make().fit(last)
    with pytest.warns(UserWarning, match=r"input_shape is \(C, H, W\) = \(8, 8, 1\)"):
        case.make(input_shape=(8, 8, 1)).fit(last.reshape(len(X), -1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # a short fit's
        case.make().fit(X)


def test_input_shape_must_match_the_features(case):
    X = np.random.default_rng(0).random((20, 64))
    with pytest.raises(ValueError, match="input_shape=.* describes 49 values"):
        case.make(input_shape=(1, 7, 7)).fit(X)
    with pytest.raises(ValueError, match="three positive ints"):
        case.make(input_shape=(8, 8)).fit(X)
    with pytest.raises(ValueError, match="does not match the shape of the images"):
        case.make(input_shape=(1, 4, 16)).fit(X.reshape(20, 1, 8, 8))


# ----------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params",
    [
        dict(max_epochs=0),
        dict(max_epochs="forever"),
        dict(batch_size=1),
        dict(lr=0.0),
        dict(device=3),
        dict(devices="all"),
        dict(device_memory_limit=-1),
        dict(module="resnet"),
        dict(augmentation="strong"),
        dict(n_neighbors=True),
        dict(max_epochs=True),  # bools are not counts (scikit-learn takes 1)
        dict(batch_size=True),
        dict(n_threads=True),
        dict(device_memory_limit=False),
    ],
    ids=str,
)
def test_invalid_parameters(case, params):
    (name,) = params
    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match=f"'{name}' parameter of {case.cls.__name__}"):
        case.make(**params).fit(X)


def test_nested_parameters_need_an_object_with_settings(case):
    from skiic.augment import ImageAugmentation

    model = case.make()
    with pytest.raises(ValueError, match="augmentation__rotation: augmentation="):
        model.set_params(augmentation__rotation=5.0)
    # A class has set_params too, but not settings of its own.
    with pytest.raises(ValueError, match="is not an object with settings"):
        case.make(augmentation=ImageAugmentation).set_params(augmentation__rotation=5.0)
    # Given in the same call, the object is set first and then changed.
    model.set_params(augmentation=ImageAugmentation(), augmentation__rotation=5.0)
    assert model.augmentation == ImageAugmentation(rotation=5.0)
    assert model.get_params()["augmentation__rotation"] == 5.0


def test_a_missing_numbered_gpu(monkeypatch):
    """On a one-GPU machine: fitting on cuda:1 is refused by name, predicting
    with a model fitted there runs on cuda:0."""
    from skiic._device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="'cuda:1' .* CUDA devices are cuda:0"):
        resolve_device("cuda:1")
    assert resolve_device("cuda:1", for_fit=False) == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_unknown_device(case):
    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match="device='tpu'"):
        case.make(device="tpu").fit(X)


@pytest.mark.parametrize("device", ["meta", "xpu"])
def test_a_device_torch_cannot_compute_on_here(case, device):
    """A device type torch knows but cannot use here (an xpu without XPU
    support; meta, which holds no values) is refused by name at fit, as a
    missing GPU is, where torch's AssertionError came out; a model predicts
    on the CPU instead."""
    from skiic._device import resolve_device

    if device == "xpu" and hasattr(torch, "xpu") and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    X = np.random.default_rng(0).random((20, 3))
    with pytest.raises(ValueError, match=f"device='{device}' .* cannot be used"):
        case.make(device=device).fit(X)
    assert resolve_device(device, for_fit=False) == torch.device("cpu")
