"""skiic: deep clustering estimators with the scikit-learn API."""

from ._autoencoder import AutoEncoderEmbedder
from ._iic import IICClustering

__version__ = "0.1.0.dev0"

__all__ = ["AutoEncoderEmbedder", "IICClustering", "__version__"]
