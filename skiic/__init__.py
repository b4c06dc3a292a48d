"""skiic: deep clustering estimators with the scikit-learn API."""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

__all__ = [
    "AutoEncoderEmbedder",
    "DeepClusterEstimator",
    "IICClustering",
    "__version__",
]

# The estimators import torch, which takes seconds: they are imported when
# first used, so that `skiic --help` and skiic.metrics answer at once.
_ESTIMATOR_MODULES = {
    "AutoEncoderEmbedder": "._autoencoder",
    "DeepClusterEstimator": "._deepcluster",
    "IICClustering": "._iic",
}

if TYPE_CHECKING:  # static analysers and IDEs see the names as imports
    from ._autoencoder import AutoEncoderEmbedder
    from ._deepcluster import DeepClusterEstimator
    from ._iic import IICClustering


def __getattr__(name):
    if name in _ESTIMATOR_MODULES:
        module = importlib.import_module(_ESTIMATOR_MODULES[name], __name__)
        value = getattr(module, name)
        globals()[name] = value  # later look-ups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
