"""Pictures of training: the per-epoch log of a fitted estimator.

Plotting needs matplotlib, an optional dependency (``pip install
"skiic[plot]"``); importing this module does not import it. The matched
confusion matrix is drawn by :class:`skiic.metrics.MatchedConfusionMatrixDisplay`.
"""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError

from ._plotting import import_pyplot

__all__ = ["plot_history"]

_NMI_KEY = "pseudo_label_nmi"
_NMI_COLOR = "tab:green"
# Epochs of a self-labelling stage record the share of targets under this key.
_STAGE_KEY, _STAGE_COLOR = "confident", "0.92"


def plot_history(estimator, *, ax=None):
    """Plot the training loss per epoch from a fitted estimator's ``history_``.

    Draws ``train_loss`` against the epoch; ``valid_loss`` too when the
    history has it (:class:`~skiic.AutoEncoderEmbedder` with
    ``early_stopping=True``); and for :class:`~skiic.DeepClusterEstimator`,
    ``pseudo_label_nmi``, the NMI between the pseudo-labels of consecutive
    epochs, on a second y-axis on the right (the first epoch has none); each
    y-axis then takes the colour of its curve. Each curve covers the epochs
    that record it; the epochs of a self-labelling stage (those that record
    ``confident``) are shaded and labelled.

    Parameters
    ----------
    estimator : estimator instance
        A fitted :class:`~skiic.IICClustering`,
        :class:`~skiic.DeepClusterEstimator` or
        :class:`~skiic.AutoEncoderEmbedder`, or a fitted
        :class:`~sklearn.pipeline.Pipeline` holding one (the last step with a
        ``history_`` is plotted).
    ax : matplotlib Axes, default=None
        Axes for the losses; ``None`` creates a new figure and axes.

    Returns
    -------
    axes : list of matplotlib Axes
        ``[ax]`` with the losses, followed by the right-hand axes of the
        pseudo-label NMI when it is drawn.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator has not been fitted.
    TypeError
        If neither the estimator nor a step of it keeps a training history.
    ImportError
        If matplotlib is not installed.

    See Also
    --------
    skiic.metrics.MatchedConfusionMatrixDisplay : Classes against clusters.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from sklearn.datasets import make_blobs
    >>> from skiic import DeepClusterEstimator
    >>> from skiic.plotting import plot_history
    >>> X, _ = make_blobs(n_samples=200, centers=3, random_state=0)
    >>> model = DeepClusterEstimator(3, max_epochs=3, random_state=0).fit(X)
    >>> axes = plot_history(model)
    >>> [ax.get_ylabel() for ax in axes]
    ['training loss', 'pseudo-label NMI (epoch t-1 vs t)']
    >>> plt.close(axes[0].figure)
    """
    history = _find_history(estimator)
    plt = import_pyplot("plot_history")
    if ax is None:
        _, ax = plt.subplots()
    (loss_line,) = ax.plot(
        *_curve(history, "train_loss"), marker=".", label="train_loss"
    )
    if any("valid_loss" in row for row in history):
        ax.plot(
            *_curve(history, "valid_loss"),
            marker=".",
            color="tab:orange",
            label="valid_loss",
        )
        ax.legend(loc="best")
    stage = [row["epoch"] for row in history if _STAGE_KEY in row]
    if stage:
        ax.axvspan(min(stage) - 0.5, max(stage) + 0.5, color=_STAGE_COLOR, zorder=0)
        ax.annotate(
            "self-labelling",
            xy=(min(stage) - 0.5, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize="small",
        )
    ax.set(xlabel="epoch", ylabel="training loss")
    axes = [ax]
    if any(_NMI_KEY in row for row in history):
        # A second y-axis; each axis is coloured like its curve, so no legend
        # is needed (one would hide one of the curves).
        nmi_ax = ax.twinx()
        nmi_ax.plot(
            *_curve(history, _NMI_KEY),
            marker=".",
            color=_NMI_COLOR,
            label=_NMI_KEY,
        )
        nmi_ax.set_ylabel("pseudo-label NMI (epoch t-1 vs t)", color=_NMI_COLOR)
        nmi_ax.tick_params(axis="y", colors=_NMI_COLOR)
        loss_color = loss_line.get_color()  # the given ax may hold other lines
        ax.set_ylabel("training loss", color=loss_color)
        ax.tick_params(axis="y", colors=loss_color)
        axes.append(nmi_ax)
    ax.set_title(f"{type(_owner(estimator)).__name__}: history_")
    return axes


def _owner(estimator):
    """The estimator, or the last step of a pipeline that keeps a history."""
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return estimator
    keeping = [step for _, step in steps if _keeps_history(step)]
    return keeping[-1] if keeping else estimator


def _keeps_history(estimator):
    """Whether ``estimator`` has a ``history_``, or will have one once fitted."""
    from . import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering

    skiic_types = (AutoEncoderEmbedder, DeepClusterEstimator, IICClustering)
    return hasattr(estimator, "history_") or isinstance(estimator, skiic_types)


def _find_history(estimator):
    """``history_`` of the estimator (or pipeline step), checked."""
    owner = _owner(estimator)
    if hasattr(owner, "history_"):
        return owner.history_
    if _keeps_history(owner):
        raise NotFittedError(
            f"This {type(owner).__name__} instance is not fitted yet. Call 'fit' "
            "before plotting its history."
        )
    raise TypeError(
        f"{type(estimator).__name__} keeps no training history (history_); "
        "plot_history needs a skiic estimator or a pipeline holding one."
    )


def _curve(history, key):
    """The epochs that record ``key`` and its values there, as float arrays
    (None -> NaN)."""
    rows = [row for row in history if key in row]
    epochs = np.array([row["epoch"] for row in rows], dtype=float)
    values = [np.nan if row[key] is None else row[key] for row in rows]
    return epochs, np.array(values, dtype=float)
