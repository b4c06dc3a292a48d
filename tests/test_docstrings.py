"""The estimators' docstrings document exactly their parameters and attributes."""

import inspect

import numpy as np
import pytest
from numpydoc.docscrape import ClassDoc

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering

ESTIMATORS = [IICClustering, DeepClusterEstimator, AutoEncoderEmbedder]
# Fitted attributes set only for some inputs (pandas column names).
CONDITIONAL_ATTRIBUTES = {"feature_names_in_"}


def _names(doc, section):
    return [item.name.split(" : ")[0] for item in doc[section]]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_parameter_is_documented_in_order(cls):
    documented = _names(ClassDoc(cls), "Parameters")
    signature = inspect.signature(cls.__init__)
    assert documented == [name for name in signature.parameters if name != "self"]


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_every_fitted_attribute_is_documented(cls):
    X = np.random.default_rng(0).random((40, 3))
    model = cls(max_epochs=1, device="cpu", random_state=0)
    if hasattr(model, "n_clusters"):
        model.set_params(n_clusters=2)
    else:
        model.set_params(n_components=2)
    model.fit(X)
    fitted = {
        name for name in vars(model) if name.endswith("_") and not name.startswith("_")
    }
    documented = set(_names(ClassDoc(cls), "Attributes"))
    assert fitted <= documented
    assert documented - fitted <= CONDITIONAL_ATTRIBUTES


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda cls: cls.__name__)
def test_docstring_points_to_the_user_guide(cls):
    assert "Read more in the :ref:`User Guide" in cls.__doc__
