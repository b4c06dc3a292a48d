"""skiic: deep clustering estimators with the scikit-learn API."""

from ._iic import IICClustering

__version__ = "0.1.0.dev0"

__all__ = ["IICClustering", "__version__"]
