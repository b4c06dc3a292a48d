"""MatchedConfusionMatrixDisplay: the picture of the matched confusion matrix."""

from __future__ import annotations

from itertools import product

import numpy as np

from .._plotting import import_pyplot
from ._cluster import matched_confusion_matrix

__all__ = ["MatchedConfusionMatrixDisplay"]


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
                    # The user's text_kw overrides these, as in scikit-learn.
                    **{
                        "ha": "center",
                        "va": "center",
                        "color": color,
                        **(text_kw or {}),
                    },
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
                given = (
                    f"{names.size} names"
                    if names.ndim == 1
                    else f"shape {names.shape}; it needs one name a class,"
                )
                raise ValueError(
                    f"display_labels has {given} for {classes.size} classes."
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
