"""Metrics to compare a clustering with known classes, and scorers for searches.

Cluster ids are arbitrary, so every metric here is invariant to a permutation of
``labels_pred``. :func:`matched_accuracy` pairs clusters with classes one to one
by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on the
contingency table, which also works when the number of clusters differs from the
number of classes: clusters left without a class count as errors.
:class:`MatchedConfusionMatrixDisplay` draws the matched confusion matrix; it
needs matplotlib (``pip install "skiic[plot]"``), which is imported only when
a plot is drawn.
"""

from ._cluster import (
    cluster_mapping,
    matched_accuracy,
    matched_accuracy_scorer,
    matched_confusion_matrix,
    nmi,
    nmi_scorer,
)
from ._display import MatchedConfusionMatrixDisplay

__all__ = [
    "MatchedConfusionMatrixDisplay",
    "cluster_mapping",
    "matched_accuracy",
    "matched_accuracy_scorer",
    "matched_confusion_matrix",
    "nmi",
    "nmi_scorer",
]
