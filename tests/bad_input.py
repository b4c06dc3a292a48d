"""Malformed training data every estimator must reject, with the error it raises.

Used by tests/test_estimators.py for every estimator: each entry is
``(X, error, message)`` where ``message`` is a regular expression the error
message must match.
"""

import numpy as np
import pytest
import scipy.sparse as sp

BAD_INPUTS = [
    pytest.param(np.array([[0.0, np.nan]] * 20), ValueError, "NaN", id="nan"),
    pytest.param(np.array([[0.0, np.inf]] * 20), ValueError, "infinity", id="inf"),
    pytest.param(np.empty((0, 3)), ValueError, "0 sample", id="empty"),
    pytest.param(np.empty((0, 8, 8)), ValueError, "0 sample", id="empty-3d"),
    pytest.param(np.empty((0, 1, 8, 8)), ValueError, "0 sample", id="empty-4d"),
    pytest.param(np.ones((1, 3)), ValueError, "1 sample", id="one-sample"),
    pytest.param(np.arange(20.0), ValueError, "Expected 2D array", id="1d"),
    pytest.param(np.zeros((4, 2, 2, 2, 2)), ValueError, "5 dimensions", id="5d"),
    pytest.param(np.array([["a", "b"]] * 20), ValueError, "string", id="strings"),
    pytest.param(
        np.ones((20, 2)) + 1j, ValueError, "Complex data not supported", id="complex"
    ),
    pytest.param(
        sp.random(20, 5, density=0.5, format="csr", random_state=0),
        TypeError,
        "Sparse data",
        id="sparse",
    ),
]
