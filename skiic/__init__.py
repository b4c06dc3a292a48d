"""skiic: deep clustering estimators with the scikit-learn API."""

from ._autoencoder import AutoEncoderEmbedder
from ._deepcluster import DeepClusterEstimator
from ._iic import IICClustering

__version__ = "0.1.0.dev0"

__all__ = [
    "AutoEncoderEmbedder",
    "DeepClusterEstimator",
    "IICClustering",
    "__version__",
]
