"""Clustering metrics against known classes, their label checks and scorers."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import make_scorer, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.utils import check_consistent_length, column_or_1d

__all__ = [
    "cluster_mapping",
    "matched_accuracy",
    "matched_accuracy_scorer",
    "matched_confusion_matrix",
    "nmi",
    "nmi_scorer",
]


def nmi(labels_true, labels_pred, *, average_method="arithmetic"):
    """Normalised mutual information between classes and clusters.

    A thin wrapper of :func:`sklearn.metrics.normalized_mutual_info_score`
    with the labels checked the same way as the other metrics here.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth classes.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.
    average_method : {"min", "geometric", "arithmetic", "max"}, \
            default="arithmetic"
        How the two entropies are averaged in the denominator.

    Returns
    -------
    score : float
        Between 0 (independent) and 1 (the same partition).

    See Also
    --------
    matched_accuracy : Accuracy after matching clusters to classes.

    Examples
    --------
    >>> from skiic.metrics import nmi
    >>> nmi([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    return float(
        normalized_mutual_info_score(
            labels_true, labels_pred, average_method=average_method
        )
    )


def matched_accuracy(labels_true, labels_pred):
    """Accuracy of the clustering after the best one-to-one cluster-class matching.

    Clusters are paired with classes by the Hungarian algorithm so that the
    number of samples whose cluster is paired with their class is as large as
    possible; that number over ``n_samples`` is the score. With more clusters
    than classes, the unpaired clusters count as errors; with fewer, the
    unpaired classes do.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth classes.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    score : float
        Between 0 and 1; 1 when the clustering equals the classes up to a
        renaming of the clusters.

    See Also
    --------
    cluster_mapping : The matching itself.
    matched_confusion_matrix : The contingency table in matched order.
    nmi : Normalised mutual information.

    Examples
    --------
    The score does not change when the clusters are renamed:

    >>> from skiic.metrics import matched_accuracy
    >>> matched_accuracy([0, 0, 1, 1, 2, 2], [2, 2, 0, 0, 1, 1])
    1.0
    >>> matched_accuracy([0, 0, 1, 1, 2, 2], [5, 5, 7, 7, 7, 7])
    0.6666666666666666
    """
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    table = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / labels_true.shape[0])


def cluster_mapping(labels_true, labels_pred):
    """The cluster-to-class matching that :func:`matched_accuracy` uses.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth classes.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.

    Returns
    -------
    mapping : dict
        ``{cluster: class}`` (Python scalars, by increasing cluster) for every
        cluster paired with a class. Clusters left unpaired (more clusters
        than classes) are absent.

    Examples
    --------
    >>> from skiic.metrics import cluster_mapping
    >>> cluster_mapping(["a", "a", "b", "b"], [1, 1, 0, 0])
    {0: 'b', 1: 'a'}
    """
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    classes, true_idx = np.unique(labels_true, return_inverse=True)
    clusters, pred_idx = np.unique(labels_pred, return_inverse=True)
    table = contingency_matrix(true_idx, pred_idx)
    rows, cols = linear_sum_assignment(table, maximize=True)
    pairs = sorted(zip(cols, rows))
    return {_python(clusters[c]): _python(classes[r]) for c, r in pairs}


def matched_confusion_matrix(
    labels_true, labels_pred, *, normalize=None, return_labels=False
):
    """Contingency table with clusters reordered to face their matched class.

    Rows are classes and columns clusters. Rows and columns are ordered so that
    the Hungarian matching lies on the diagonal: first the matched pairs, in
    the sorted order of their class, then the unmatched classes (rows) and the
    unmatched clusters (columns) by decreasing size. ``trace / n_samples`` of
    the raw counts is :func:`matched_accuracy`.

    Parameters
    ----------
    labels_true : array-like of shape (n_samples,)
        Ground-truth classes.
    labels_pred : array-like of shape (n_samples,)
        Cluster labels.
    normalize : {"true", "pred", "all"}, default=None
        Normalise counts over rows ("true"), columns ("pred") or all cells, as
        in :func:`sklearn.metrics.confusion_matrix`; ``None`` keeps counts.
    return_labels : bool, default=False
        Also return the class of each row and the cluster of each column.

    Returns
    -------
    matrix : ndarray of shape (n_classes, n_clusters)
        The reordered contingency table.
    classes : ndarray of shape (n_classes,)
        Class of each row; only returned when ``return_labels=True``.
    clusters : ndarray of shape (n_clusters,)
        Cluster of each column; only returned when ``return_labels=True``.

    Examples
    --------
    >>> from skiic.metrics import matched_confusion_matrix
    >>> matched_confusion_matrix([0, 0, 1, 1, 1], [7, 7, 3, 3, 7])
    array([[2, 0],
           [1, 2]])
    >>> _, classes, clusters = matched_confusion_matrix(
    ...     [0, 0, 1, 1, 1], [7, 7, 3, 3, 7], return_labels=True)
    >>> clusters.tolist()
    [7, 3]
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(
            "normalize must be one of None, 'true', 'pred' or 'all'; "
            f"got {normalize!r}."
        )
    labels_true, labels_pred = _check_labels(labels_true, labels_pred)
    classes, true_idx = np.unique(labels_true, return_inverse=True)
    clusters, pred_idx = np.unique(labels_pred, return_inverse=True)
    table = contingency_matrix(true_idx, pred_idx)
    rows, cols = linear_sum_assignment(table, maximize=True)
    row_order = _matched_first(rows, table.sum(axis=1))
    col_order = _matched_first(cols, table.sum(axis=0))
    matrix = table[np.ix_(row_order, col_order)]
    if normalize is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            if normalize == "true":
                matrix = matrix / matrix.sum(axis=1, keepdims=True)
            elif normalize == "pred":
                matrix = matrix / matrix.sum(axis=0, keepdims=True)
            else:
                matrix = matrix / matrix.sum()
        matrix = np.nan_to_num(matrix)
    if return_labels:
        return matrix, classes[row_order], clusters[col_order]
    return matrix


matched_accuracy_scorer = make_scorer(matched_accuracy)
matched_accuracy_scorer.__doc__ = """Scorer: matched accuracy of ``predict``.

For ``GridSearchCV(scoring=...)`` with labels.

Examples
--------
>>> from sklearn.cluster import KMeans
>>> from sklearn.datasets import make_blobs
>>> from skiic.metrics import matched_accuracy_scorer
>>> X, y = make_blobs(n_samples=60, centers=3, cluster_std=0.5, random_state=0)
>>> km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
>>> matched_accuracy_scorer(km, X, y)
1.0
"""

nmi_scorer = make_scorer(nmi)
nmi_scorer.__doc__ = """Scorer: NMI of ``predict``, for ``GridSearchCV(scoring=...)``.

Examples
--------
>>> from sklearn.cluster import KMeans
>>> from sklearn.datasets import make_blobs
>>> from skiic.metrics import nmi_scorer
>>> X, y = make_blobs(n_samples=60, centers=3, cluster_std=0.5, random_state=0)
>>> km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
>>> nmi_scorer(km, X, y)
1.0
"""

# doctest does not search instances such as the scorers: run their examples.
__test__ = {
    "matched_accuracy_scorer": matched_accuracy_scorer.__doc__,
    "nmi_scorer": nmi_scorer.__doc__,
}


def _check_labels(labels_true, labels_pred):
    """Validate a pair of label vectors the same way for every metric."""
    labels_true = _label_array(labels_true, "labels_true")
    labels_pred = _label_array(labels_pred, "labels_pred")
    check_consistent_length(labels_true, labels_pred)
    if labels_true.shape[0] == 0:
        raise ValueError(
            "labels_true and labels_pred are empty; need at least one label."
        )
    for name, labels in (("labels_true", labels_true), ("labels_pred", labels_pred)):
        if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
            raise ValueError(f"{name} contains NaN or infinity.")
        if labels.dtype.kind == "c":
            raise ValueError(f"{name} is complex; labels must be integers or strings.")
        if labels.dtype.kind == "O":
            missing = [_is_missing(value) for value in labels]
            if any(missing):
                raise ValueError(
                    f"{name} contains missing labels (None, NaN or pd.NA) at "
                    f"{sum(missing)} of {len(labels)} positions; drop those "
                    "samples or give them a label of their own."
                )
            try:
                np.unique(labels)
            except TypeError:
                kinds = sorted({type(value).__name__ for value in labels})
                raise ValueError(
                    f"{name} mixes labels that cannot be ordered "
                    f"({', '.join(kinds)}); use labels of one type, such as "
                    "strings or integers."
                ) from None
    return labels_true, labels_pred


def _label_array(labels, name):
    """``labels`` as a 1-d array. A list of strings and numbers stays one of
    objects (numpy would make ``1`` and ``"1"`` one string label); bytes are
    decoded (scikit-learn's NMI takes no bytes, the other metrics would)."""
    if isinstance(labels, (list, tuple)):
        kinds = {isinstance(value, (str, bytes)) for value in labels}
        if len(kinds) > 1:
            labels = np.asarray(labels, dtype=object)
    labels = column_or_1d(labels)
    if labels.dtype.kind == "S":
        try:
            labels = np.char.decode(labels, "utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"{name} holds bytes that are not UTF-8 text; decode them to "
                "strings first."
            ) from None
    return labels


def _is_missing(value) -> bool:
    """None, NaN, or pandas' NA (which is neither equal nor unequal to itself)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except TypeError:
        return True


def _python(value):
    """A label as a plain Python value: numpy scalars become int, str, ...;
    the elements of object arrays already are Python objects."""
    return value.item() if isinstance(value, np.generic) else value


def _matched_first(matched, sizes):
    """Order indices: the matched ones as given, then the rest by decreasing size."""
    rest = np.setdiff1d(np.arange(sizes.shape[0]), matched)
    rest = rest[np.argsort(-sizes[rest], kind="stable")]
    return np.concatenate([matched, rest]).astype(np.intp)
