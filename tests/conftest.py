"""Shared fixtures: a fixed seed for every test and a device fixture."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """n_threads="auto" as on a quiet machine: other jobs on the machine (or the
    other half of a parallel test run) must not change a test's thread count,
    on which the last digits of torch's results depend."""
    from skiic import _device

    monkeypatch.setattr(_device, "_busy_elsewhere", lambda: 0)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Start every test from the same global RNG state (as skorch's suite does)."""
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Run a test on each available device; CUDA is skipped where absent.

    The CUDA run carries the ``gpu`` marker: ``pytest -m gpu`` selects the GPU
    tests, ``-m "not gpu"`` leaves them out.
    """
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    return request.param


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits: X (1797, 64) in [0, 16] and y."""
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


@pytest.fixture(scope="session")
def digits_kmeans_accuracy(digits):
    """Matched accuracy of ``KMeans(10, n_init=10)`` on the 64 digit pixels
    (about 0.79): the baseline the quality tests must clear."""
    from sklearn.cluster import KMeans

    from skiic.metrics import matched_accuracy

    X, y = digits
    return matched_accuracy(y, KMeans(10, n_init=10, random_state=0).fit(X).labels_)
