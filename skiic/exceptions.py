"""Exceptions and warnings raised by skiic."""

from sklearn.exceptions import ConvergenceWarning

__all__ = ["ConvergenceWarning", "TrainingError"]


class TrainingError(RuntimeError):
    """Training failed: the loss diverged or the clustering collapsed.

    Raised by ``fit`` instead of returning a model that would silently give
    nonsense. ``GridSearchCV`` records such a fit with its ``error_score``.

    Examples
    --------
    >>> from skiic.exceptions import TrainingError
    >>> issubclass(TrainingError, RuntimeError)
    True
    """
