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

from __future__ import annotations

from itertools import product

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import make_scorer, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.utils import check_consistent_length, column_or_1d

from ._plotting import import_pyplot

__all__ = [
    "MatchedConfusionMatrixDisplay",
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
    return {clusters[c].item(): classes[r].item() for c, r in pairs}


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


class MatchedConfusionMatrixDisplay:
    """Matched confusion matrix visualisation: classes against clusters.

    The picture of :func:`matched_confusion_matrix`: rows are the true
    classes, columns the clusters, reordered so that the cluster the
    Hungarian matching pairs with each class faces it on the diagonal. With
    more clusters than classes, the clusters left unmatched come last, right
    of a dashed line; with fewer, the unmatched classes come last, below it.

    It is recommended to create one with :meth:`from_predictions` or
    :meth:`from_estimator`, as scikit-learn's
    :class:`~sklearn.metrics.ConfusionMatrixDisplay`, whose conventions it
    follows. All parameters are stored as attributes. Plotting needs
    matplotlib (``pip install "skiic[plot]"``).

    Parameters
    ----------
    confusion_matrix : ndarray of shape (n_classes, n_clusters)
        The matched confusion matrix, as :func:`matched_confusion_matrix`
        returns it.
    display_labels : array-like of shape (n_classes,), default=None
        Name of the class of each row. ``None`` numbers the rows from 0.
    cluster_labels : array-like of shape (n_clusters,), default=None
        Name of the cluster of each column. ``None`` numbers the columns
        from 0.

    Attributes
    ----------
    im_ : matplotlib AxesImage
        Image of the matrix.
    text_ : ndarray of shape (n_classes, n_clusters), dtype=matplotlib Text, \
            or None
        The value written in each cell; ``None`` when ``include_values`` is
        False.
    ax_ : matplotlib Axes
        Axes with the matrix.
    figure_ : matplotlib Figure
        Figure holding the axes.

    See Also
    --------
    matched_confusion_matrix : The matrix drawn here.
    matched_accuracy : Sum of its diagonal over the number of samples.
    sklearn.metrics.ConfusionMatrixDisplay : The same picture for classifiers.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from skiic.metrics import MatchedConfusionMatrixDisplay
    >>> y_true = ["cat", "cat", "dog", "dog", "dog", "eel"]
    >>> y_pred = [2, 2, 0, 0, 2, 1]
    >>> disp = MatchedConfusionMatrixDisplay.from_predictions(y_true, y_pred)
    >>> disp.confusion_matrix
    array([[2, 0, 0],
           [1, 2, 0],
           [0, 0, 1]])
    >>> disp.cluster_labels.tolist()
    [2, 0, 1]
    >>> disp.ax_.get_xlabel()
    'Cluster (ordered by the Hungarian matching)'
    >>> plt.close(disp.figure_)
    """

    def __init__(self, confusion_matrix, *, display_labels=None, cluster_labels=None):
        self.confusion_matrix = confusion_matrix
        self.display_labels = display_labels
        self.cluster_labels = cluster_labels

    def plot(
        self,
        *,
        include_values=True,
        cmap="viridis",
        xticks_rotation="horizontal",
        values_format=None,
        ax=None,
        colorbar=True,
        im_kw=None,
        text_kw=None,
    ):
        """Plot the matrix.

        Parameters
        ----------
        include_values : bool, default=True
            Write the value of each cell.
        cmap : str or matplotlib Colormap, default="viridis"
            Colormap recognised by matplotlib.
        xticks_rotation : {"vertical", "horizontal"} or float, \
                default="horizontal"
            Rotation of the cluster labels.
        values_format : str, default=None
            Format specification of the values, e.g. ``".2f"``. ``None``
            uses ``"d"`` or ``".2g"``, whichever is shorter.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` creates a new figure and axes.
        colorbar : bool, default=True
            Add a colour bar.
        im_kw : dict, default=None
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.imshow`.
        text_kw : dict, default=None
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.text`.

        Returns
        -------
        display : MatchedConfusionMatrixDisplay
            This object, with ``figure_``, ``ax_``, ``im_`` and ``text_`` set.
        """
        plt = import_pyplot("MatchedConfusionMatrixDisplay.plot")
        matrix = np.asarray(self.confusion_matrix)
        if matrix.ndim != 2:
            raise ValueError(
                "confusion_matrix must be 2-D (n_classes, n_clusters); "
                f"got shape {matrix.shape}."
            )
        n_classes, n_clusters = matrix.shape
        row_names = _tick_labels(self.display_labels, n_classes, "display_labels")
        col_names = _tick_labels(self.cluster_labels, n_clusters, "cluster_labels")
        if ax is None:
            fig, ax = plt.subplots()
        else:
            fig = ax.figure

        self.im_ = ax.imshow(
            matrix, **{"interpolation": "nearest", "cmap": cmap, **(im_kw or {})}
        )
        self.text_ = None
        if include_values:
            self.text_ = np.empty(matrix.shape, dtype=object)
            dark, light = self.im_.cmap(0), self.im_.cmap(1.0)
            threshold = (matrix.max() + matrix.min()) / 2.0 if matrix.size else 0
            for i, j in product(range(n_classes), range(n_clusters)):
                value = matrix[i, j]
                color = light if value < threshold else dark
                self.text_[i, j] = ax.text(
                    j,
                    i,
                    _format_value(value, matrix.dtype, values_format),
                    **{"ha": "center", "va": "center", "color": color},
                    **(text_kw or {}),
                )
        # The Hungarian matching pairs min(n_classes, n_clusters) rows and
        # columns; a dashed line sets the unmatched ones apart.
        if n_clusters > n_classes:
            ax.axvline(n_classes - 0.5, color="0.5", linestyle="--", linewidth=1)
        elif n_classes > n_clusters:
            ax.axhline(n_clusters - 0.5, color="0.5", linestyle="--", linewidth=1)
        if colorbar:
            fig.colorbar(self.im_, ax=ax)
        ax.set(
            xticks=np.arange(n_clusters),
            yticks=np.arange(n_classes),
            xticklabels=col_names,
            yticklabels=row_names,
            xlabel="Cluster (ordered by the Hungarian matching)",
            ylabel="True label",
        )
        ax.set_xlim((-0.5, n_clusters - 0.5))
        ax.set_ylim((n_classes - 0.5, -0.5))
        plt.setp(ax.get_xticklabels(), rotation=xticks_rotation)
        self.figure_ = fig
        self.ax_ = ax
        return self

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_pred,
        *,
        normalize=None,
        display_labels=None,
        include_values=True,
        xticks_rotation="horizontal",
        values_format=None,
        cmap="viridis",
        ax=None,
        colorbar=True,
        im_kw=None,
        text_kw=None,
    ):
        """Plot the matched confusion matrix of true classes and cluster labels.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True classes.
        y_pred : array-like of shape (n_samples,)
            Cluster labels, e.g. ``labels_`` or the output of
            ``fit_predict``.
        normalize : {"true", "pred", "all"}, default=None
            Normalise over the classes (rows, ``"true"``), the clusters
            (columns, ``"pred"``) or all cells, as in
            :func:`matched_confusion_matrix`; ``None`` shows counts.
        display_labels : array-like of shape (n_classes,), default=None
            Names of the classes, in the sorted order of their values in
            ``y_true`` (``np.unique(y_true)``); they follow the rows as the
            matching reorders them. ``None`` shows the class values.
        include_values : bool, default=True
            Write the value of each cell.
        xticks_rotation : {"vertical", "horizontal"} or float, \
                default="horizontal"
            Rotation of the cluster labels.
        values_format : str, default=None
            Format specification of the values. ``None`` uses ``"d"`` or
            ``".2g"``, whichever is shorter.
        cmap : str or matplotlib Colormap, default="viridis"
            Colormap recognised by matplotlib.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` creates a new figure and axes.
        colorbar : bool, default=True
            Add a colour bar.
        im_kw : dict, default=None
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.imshow`.
        text_kw : dict, default=None
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.text`.

        Returns
        -------
        display : MatchedConfusionMatrixDisplay
            The plotted display; the column labels are the cluster labels in
            matched order.

        See Also
        --------
        MatchedConfusionMatrixDisplay.from_estimator : The same from a fitted
            clusterer and data.

        Examples
        --------
        More clusters than classes: the unmatched cluster comes last.

        >>> import matplotlib.pyplot as plt
        >>> from skiic.metrics import MatchedConfusionMatrixDisplay
        >>> disp = MatchedConfusionMatrixDisplay.from_predictions(
        ...     [0, 0, 0, 1, 1, 1], [5, 5, 9, 3, 3, 3], normalize="true")
        >>> disp.cluster_labels.tolist()
        [5, 3, 9]
        >>> [text.get_text() for text in disp.text_[0]]
        ['0.67', '0', '0.33']
        >>> plt.close(disp.figure_)
        """
        import_pyplot(f"{cls.__name__}.from_predictions")
        matrix, classes, clusters = matched_confusion_matrix(
            y_true, y_pred, normalize=normalize, return_labels=True
        )
        if display_labels is None:
            row_names = classes
        else:
            names = np.asarray(display_labels)
            if names.shape != classes.shape:
                raise ValueError(
                    f"display_labels has {names.size} names for {classes.size} classes."
                )
            row_names = names[np.searchsorted(np.sort(classes), classes)]
        display = cls(matrix, display_labels=row_names, cluster_labels=clusters)
        return display.plot(
            include_values=include_values,
            cmap=cmap,
            ax=ax,
            xticks_rotation=xticks_rotation,
            values_format=values_format,
            colorbar=colorbar,
            im_kw=im_kw,
            text_kw=text_kw,
        )

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        normalize=None,
        display_labels=None,
        include_values=True,
        xticks_rotation="horizontal",
        values_format=None,
        cmap="viridis",
        ax=None,
        colorbar=True,
        im_kw=None,
        text_kw=None,
    ):
        """Plot the matched confusion matrix of a fitted clusterer on ``X``.

        The clusters are ``estimator.predict(X)``. For a clusterer without
        ``predict`` (e.g. :class:`~sklearn.cluster.AgglomerativeClustering`),
        pass its ``labels_`` to :meth:`from_predictions`.

        Parameters
        ----------
        estimator : estimator instance
            Fitted clusterer with a ``predict`` method, or a fitted
            :class:`~sklearn.pipeline.Pipeline` ending in one.
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Data to cluster.
        y : array-like of shape (n_samples,)
            True classes of ``X``.
        normalize : {"true", "pred", "all"}, default=None
            Normalise over the classes (rows, ``"true"``), the clusters
            (columns, ``"pred"``) or all cells; ``None`` shows counts.
        display_labels : array-like of shape (n_classes,), default=None
            Names of the classes, in the sorted order of their values in
            ``y``. ``None`` shows the class values.
        include_values : bool, default=True
            Write the value of each cell.
        xticks_rotation : {"vertical", "horizontal"} or float, \
                default="horizontal"
            Rotation of the cluster labels.
        values_format : str, default=None
            Format specification of the values. ``None`` uses ``"d"`` or
            ``".2g"``, whichever is shorter.
        cmap : str or matplotlib Colormap, default="viridis"
            Colormap recognised by matplotlib.
        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` creates a new figure and axes.
        colorbar : bool, default=True
            Add a colour bar.
        im_kw : dict, default=None
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.imshow`.
        text_kw : dict, default=None
            Keyword arguments passed to :meth:`matplotlib.axes.Axes.text`.

        Returns
        -------
        display : MatchedConfusionMatrixDisplay
            The plotted display.

        See Also
        --------
        MatchedConfusionMatrixDisplay.from_predictions : The same from labels.

        Examples
        --------
        >>> import matplotlib.pyplot as plt
        >>> from sklearn.cluster import KMeans
        >>> from sklearn.datasets import make_blobs
        >>> from skiic.metrics import MatchedConfusionMatrixDisplay
        >>> X, y = make_blobs(n_samples=90, centers=3, cluster_std=0.5, random_state=0)
        >>> km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
        >>> disp = MatchedConfusionMatrixDisplay.from_estimator(km, X, y)
        >>> int(disp.confusion_matrix.trace())  # all 90 samples on the diagonal
        90
        >>> plt.close(disp.figure_)
        """
        name = f"{cls.__name__}.from_estimator"
        import_pyplot(name)
        if not hasattr(estimator, "predict"):
            raise TypeError(
                f"{name} needs an estimator with a predict method; "
                f"{type(estimator).__name__} has none. Pass its labels_ to "
                f"{cls.__name__}.from_predictions instead."
            )
        return cls.from_predictions(
            y,
            estimator.predict(X),
            normalize=normalize,
            display_labels=display_labels,
            include_values=include_values,
            xticks_rotation=xticks_rotation,
            values_format=values_format,
            cmap=cmap,
            ax=ax,
            colorbar=colorbar,
            im_kw=im_kw,
            text_kw=text_kw,
        )


matched_accuracy_scorer = make_scorer(matched_accuracy)
matched_accuracy_scorer.__doc__ = """Scorer: matched accuracy of ``predict``.

For ``GridSearchCV(scoring=...)`` with labels.

Examples
--------
>>> from sklearn.cluster import KMeans
>>> from sklearn.datasets import make_blobs
>>> from skiic.metrics import matched_accuracy_scorer
>>> X, y = make_blobs(n_samples=60, centers=3, random_state=0)
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
>>> X, y = make_blobs(n_samples=60, centers=3, random_state=0)
>>> km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
>>> nmi_scorer(km, X, y)
1.0
"""


def _check_labels(labels_true, labels_pred):
    """Validate a pair of label vectors the same way for every metric."""
    labels_true = column_or_1d(labels_true)
    labels_pred = column_or_1d(labels_pred)
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
    return labels_true, labels_pred


def _matched_first(matched, sizes):
    """Order indices: the matched ones as given, then the rest by decreasing size."""
    rest = np.setdiff1d(np.arange(sizes.shape[0]), matched)
    rest = rest[np.argsort(-sizes[rest], kind="stable")]
    return np.concatenate([matched, rest]).astype(np.intp)


def _tick_labels(labels, n, name):
    """Tick labels of a display axis: given ones checked, or 0 .. n-1."""
    if labels is None:
        return np.arange(n)
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} has {labels.size} entries for {n} rows or columns.")
    return labels


def _format_value(value, dtype, values_format):
    """A cell's text: ``values_format``, else the shorter of "d" and ".2g"."""
    if values_format is not None:
        return format(value, values_format)
    text = format(value, ".2g")
    if dtype.kind != "f":
        integer = format(value, "d")
        if len(integer) < len(text):
            text = integer
    return text
