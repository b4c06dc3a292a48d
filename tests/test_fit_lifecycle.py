"""What happens around a fit, for every estimator: input that cannot be trained
on, interrupts, failed refits, divergence and collapse."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from torch import nn

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic.augment import VectorAugmentation
from skiic.exceptions import ConvergenceWarning, TrainingError

FAST = dict(max_epochs=2, batch_size=32, device="cpu", random_state=0)
ESTIMATORS = {
    "IICClustering": lambda **kw: IICClustering(3, **{**FAST, **kw}),
    "DeepClusterEstimator": lambda **kw: DeepClusterEstimator(3, **{**FAST, **kw}),
    "AutoEncoderEmbedder": lambda **kw: AutoEncoderEmbedder(2, **{**FAST, **kw}),
}
each_estimator = pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS)


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(120, n_features=4, centers=3, random_state=0)
    return X


def output(model, X):
    """What the fitted model gives for X: labels, or codes for the autoencoder."""
    return (
        model.transform(X)
        if isinstance(model, AutoEncoderEmbedder)
        else (model.predict(X))
    )


class _MustNotRun(nn.Module):
    """A backbone that fails the test if training ever reaches it."""

    def __init__(self, width=4):
        super().__init__()
        self.linear = nn.Linear(width, 8)

    def forward(self, x):
        raise AssertionError("training started on input that should be rejected")


class _NaNAfterFit(nn.Module):
    """A backbone whose output is NaN: training fails in its first epoch."""

    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, 8)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


class _Constant(nn.Module):
    """A backbone that ignores its input: every sample gets the same features."""

    def __init__(self):
        super().__init__()
        self.features = nn.Parameter(torch.randn(8))

    def forward(self, x):
        return self.features.expand(x.shape[0], -1)


# ---------------------------------------------------------------- bad input
@each_estimator
@pytest.mark.parametrize(
    "X",
    [np.full((30, 4), 7.0), np.tile(np.arange(4.0), (30, 1))],
    ids=["constant", "duplicates"],
)
def test_identical_samples_are_rejected_before_training(make, X):
    with pytest.raises(ValueError, match="All 30 samples of X are identical"):
        make(module=_MustNotRun()).fit(X)


@each_estimator
def test_detail_that_float32_cannot_hold_is_named(make, blobs):
    """1e6 + 1e-3 x: distinct in float64, one value in float32."""
    with pytest.warns(UserWarning, match="2 of the 2 features of X vary too little"):
        with pytest.raises(ValueError, match="identical in float32"):
            make(module=_MustNotRun()).fit(1e6 + 1e-3 * blobs[:, :2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ordinary data: no such warning
        make(max_epochs=1).fit(blobs * 1e3 + 1e4)


@each_estimator
def test_values_beyond_float32_are_rejected(make, blobs):
    with pytest.raises(ValueError, match="beyond float32's range.*Rescale"):
        make(module=_MustNotRun()).fit(blobs * 1e300)


@each_estimator
@pytest.mark.parametrize("kind", ["vectors", "images"])
def test_values_whose_span_float32_cannot_hold_are_rejected(make, blobs, kind):
    """Every value fits in float32, but their span does not: centring or
    scaling would overflow (the scale fell back to 1 with a RuntimeWarning,
    and the training to NaN, or scikit-learn named an infinity X lacks)."""
    if kind == "vectors":
        centred = blobs - blobs.mean(axis=0)
        X = centred / np.abs(centred).max(axis=0) * 3.3e38
    else:
        X = np.random.default_rng(0).uniform(-3.3e38, 3.3e38, size=(30, 1, 4, 4))
    with pytest.raises(ValueError, match="X's values span .* more than float32"):
        make(module=_MustNotRun()).fit(X)


@each_estimator
def test_values_that_vary_below_float32s_normal_range_are_rejected(make, blobs):
    """Subnormal spreads (about 1e-39) were left unscaled: the network saw
    every sample as zero."""
    with pytest.raises(ValueError, match="vary by about .* below the smallest"):
        make(module=_MustNotRun()).fit(blobs * 1e-39)
    make(max_epochs=1).fit(blobs * 1e-30)  # small, but float32 scales it


@each_estimator
def test_nan_is_named_where_assume_finite_skips_the_check(make, blobs):
    """scikit-learn's assume_finite=True skips its own check; the input
    statistics still name the NaN (a reshape error came out of the neighbour
    search, or the autoencoder's first loss was NaN)."""
    import sklearn

    for dtype in (np.float64, np.float32):
        for bad in (np.nan, np.inf):
            X = blobs.astype(dtype)
            X[5, 1] = bad
            with sklearn.config_context(assume_finite=True):
                with warnings.catch_warnings():
                    warnings.simplefilter("error", RuntimeWarning)
                    with pytest.raises(ValueError, match="NaN or inf.*assume_fin"):
                        make(module=_MustNotRun()).fit(X)


@each_estimator
def test_nested_lists_of_images_are_images(make):
    images = np.random.default_rng(0).random((30, 1, 6, 6))
    model = make().fit(images.tolist())
    assert model.input_shape_ == (1, 6, 6)
    np.testing.assert_array_equal(output(model, images.tolist()), output(model, images))


# --------------------------------------------------------- atomic fits
def _fitted_state(model):
    return {
        name: value for name, value in vars(model).items() if name.endswith("_")
    } | {name: getattr(model, name) for name in ("_offset", "_scale")}


@each_estimator
@pytest.mark.parametrize("width", [4, 32], ids=["same-width", "other-width"])
def test_failed_refit_leaves_the_previous_fit(make, blobs, width):
    model = make().fit(blobs)
    before = _fitted_state(model)
    expected = output(model, blobs)
    other = np.random.default_rng(1).normal(scale=50.0, size=(60, width))
    with pytest.raises(TrainingError, match="diverged|untrained network"):
        model.set_params(module=_NaNAfterFit(width)).fit(other)
    after = _fitted_state(model)
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert after[name] is value, name
    np.testing.assert_array_equal(output(model, blobs), expected)


@each_estimator
def test_failed_first_fit_leaves_the_estimator_unfitted(make, blobs):
    model = make(module=_NaNAfterFit(4))
    with pytest.raises(TrainingError):
        model.fit(blobs)
    assert not [name for name in vars(model) if name.endswith("_")]
    with pytest.raises(NotFittedError):
        output(model, blobs)


@pytest.mark.parametrize(
    "make",
    [ESTIMATORS["IICClustering"], ESTIMATORS["DeepClusterEstimator"]],
    ids=["IICClustering", "DeepClusterEstimator"],
)
def test_collapse_is_an_error_and_sets_nothing(make, blobs):
    model = make(module=_Constant())
    with pytest.raises(TrainingError, match="collapse"):
        model.fit(blobs)
    assert not hasattr(model, "labels_")


# ----------------------------------------------------------- divergence
@pytest.mark.parametrize(
    "make",
    [ESTIMATORS["DeepClusterEstimator"], ESTIMATORS["AutoEncoderEmbedder"]],
    ids=["DeepClusterEstimator", "AutoEncoderEmbedder"],
)
def test_a_runaway_loss_is_divergence_naming_the_learning_rate(make, blobs):
    # IIC's loss is bounded (a mutual information): it degenerates instead,
    # which the next test covers.
    with pytest.raises(TrainingError, match=r"diverged.*lr=1e\+06"):
        make(lr=1e6, max_epochs=4).fit(blobs * 100)


def test_a_candidate_blown_up_in_its_last_step_fails_when_it_trains_on():
    """IIC's default restarts train candidates, then continue the best: its
    loss is measured against the candidate's start (the continuation's own
    first batch, 4.8e14 here, let it pass as a success with a warning)."""
    X, _ = make_blobs(200, n_features=4, centers=3, random_state=0)
    with pytest.raises(TrainingError, match=r"diverged.*lr=1e\+08"):
        IICClustering(3, lr=1e8, max_epochs=5, random_state=0, device="cpu").fit(X)


@pytest.mark.parametrize("latent", ["linear", "whitened"])
def test_weights_blown_up_in_the_last_step_are_divergence(latent):
    """No loss sees the last step's weights: one epoch at lr=1e30 returned NaN
    codes as a success."""
    X, _ = make_blobs(100, n_features=4, centers=3, random_state=0)
    model = AutoEncoderEmbedder(
        2, lr=1e30, max_epochs=1, latent=latent, device="cpu", random_state=0
    )
    with pytest.raises(TrainingError, match=r"diverged.*lr=1e\+30"):
        model.fit(X)


@pytest.mark.parametrize(
    "make",
    [ESTIMATORS["IICClustering"], ESTIMATORS["DeepClusterEstimator"]],
    ids=["IICClustering", "DeepClusterEstimator"],
)
def test_divergence_in_self_labelling_names_the_fits_epoch_and_lr(
    make, blobs, monkeypatch
):
    from skiic import _selflabel

    forward = _selflabel.SelfLabelObjective.forward
    monkeypatch.setattr(
        _selflabel.SelfLabelObjective,
        "forward",
        lambda self, module, idx: forward(self, module, idx) * float("nan"),
    )
    model = make(self_labelling=True, lr=0.002)
    with pytest.raises(TrainingError) as error:
        model.fit(blobs)
    message = str(error.value)
    assert "epoch 3" in message  # after the two of FAST
    assert "lr=0.002 (a tenth of it in the self-labelling stage)" in message


class _WithInfiniteBuffer(nn.Module):
    """A model that keeps an infinite bound on purpose."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 8)
        self.register_buffer("floor", torch.tensor(float("-inf")))

    def forward(self, x):
        return torch.maximum(self.linear(x), self.floor)


def test_an_infinite_buffer_of_a_users_module_is_not_divergence(blobs):
    IICClustering(3, module=_WithInfiniteBuffer(), **FAST).fit(blobs)


def test_a_loss_that_never_improves_warns_at_the_callers_line(blobs):
    # Neighbour pairs: a bounded loss, which degenerates at this lr (the
    # adversarial term of the vector default can run away instead).
    pairs = dict(augmentation=VectorAugmentation(), n_neighbors=10, n_init=1)
    model = IICClustering(3, **{**FAST, **pairs, "max_epochs": 4, "lr": 1e6})
    with pytest.warns(ConvergenceWarning) as record:
        try:
            model.fit(blobs)
        except TrainingError:
            pytest.skip("diverged outright on this machine: nothing left to warn")
    assert {w.filename for w in record} == {__file__}


def test_fewer_clusters_warning_names_the_callers_line():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]]), 20, axis=0)
    with pytest.warns(ConvergenceWarning, match="Only 2 of n_clusters=3") as record:
        IICClustering(3, **dict(FAST, max_epochs=10)).fit(X)
    assert record[0].filename == __file__


def test_clean_training_warns_nothing(blobs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for make in ESTIMATORS.values():
            make(max_epochs=5).fit(blobs)


# ------------------------------------------------------------- interrupts
_INTERRUPTED_FIT = """
import sys
import numpy as np
from skiic import {name}
X = np.random.default_rng(0).random((2000, 8))
model = {name}({args}, max_epochs=10_000, device="cpu", random_state=0, verbose=1)
print("fitting", flush=True)
try:
    model.fit(X)
except KeyboardInterrupt:
    fitted = [n for n in vars(model) if n.endswith("_")]
    print("interrupted; fitted attributes:", fitted, flush=True)
    sys.exit(3)
print("finished", flush=True)
"""


def _interruptible():
    """Ctrl-C's default in the child: a suite started in the background (``&``
    in a script) hands its children SIGINT ignored, and Python then installs
    no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_until_epoch(stream, epoch):
    """Read the progress table until the line of ``epoch`` (its first column)."""
    for line in stream:
        if line.split()[:1] == [str(epoch)]:
            return
    raise AssertionError(f"the fit ended before epoch {epoch}")


@pytest.mark.parametrize(
    "name, args",
    [
        ("IICClustering", "3, n_init=3"),
        ("DeepClusterEstimator", "3"),
        ("AutoEncoderEmbedder", "2"),
    ],
    ids=["IICClustering-n_init=3", "DeepClusterEstimator", "AutoEncoderEmbedder"],
)
def test_ctrl_c_stops_a_fit_and_leaves_it_unfitted(name, args):
    code = textwrap.dedent(_INTERRUPTED_FIT.format(name=name, args=args))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=_interruptible,
    )
    try:
        assert process.stdout.readline().strip() == "fitting"
        _read_until_epoch(process.stdout, 1)  # in training
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        rest, _ = process.communicate(timeout=60)
        stopped_after = time.monotonic() - start
    finally:
        process.kill()
    assert process.returncode == 3, rest
    assert "interrupted; fitted attributes: []" in rest
    assert stopped_after < 10


@each_estimator
def test_failed_fit_gives_back_the_draws_of_a_random_state(make, blobs):
    rng = np.random.RandomState(0)
    expected = np.random.RandomState(0).randint(1000)
    with pytest.raises(TrainingError):
        make(module=_NaNAfterFit(4), random_state=rng).fit(blobs)
    assert rng.randint(1000) == expected


def test_a_nan_before_training_does_not_blame_the_learning_rate(blobs):
    with pytest.raises(TrainingError, match="untrained network's loss is already"):
        IICClustering(3, module=_NaNAfterFit(4), **FAST).fit(blobs)
