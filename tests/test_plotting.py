"""Tests of the pictures: MatchedConfusionMatrixDisplay and plot_history."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic.metrics import MatchedConfusionMatrixDisplay, matched_confusion_matrix
from skiic.plotting import plot_history

plt = pytest.importorskip("matplotlib.pyplot")

Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
# Cluster 7 is class 0, cluster 3 class 1, cluster 5 class 2; cluster 9 is
# extra (more clusters than classes).
Y_PRED = np.array([7, 7, 3, 3, 3, 3, 5, 5, 9, 5])


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(n_samples=120, centers=3, cluster_std=0.6, random_state=0)


def test_from_predictions_draws_the_matched_matrix():
    disp = MatchedConfusionMatrixDisplay.from_predictions(Y_TRUE, Y_PRED)
    expected, classes, clusters = matched_confusion_matrix(
        Y_TRUE, Y_PRED, return_labels=True
    )
    np.testing.assert_array_equal(disp.confusion_matrix, expected)
    assert disp.cluster_labels.tolist() == [7, 3, 5, 9]
    np.testing.assert_array_equal(disp.display_labels, classes)
    np.testing.assert_array_equal(disp.im_.get_array(), expected)
    assert disp.ax_.figure is disp.figure_
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == ["7", "3", "5", "9"]
    assert [t.get_text() for t in disp.ax_.get_yticklabels()] == ["0", "1", "2"]
    assert "Hungarian" in disp.ax_.get_xlabel()
    assert disp.ax_.get_ylabel() == "True label"
    assert disp.text_.shape == (3, 4)
    assert [t.get_text() for t in disp.text_[2]] == ["0", "0", "3", "1"]
    # Matched clusters face their class: the diagonal is the matching.
    assert np.trace(disp.confusion_matrix) == 2 + 4 - 1 + 3


def test_text_kw_overrides_the_cell_text_defaults():
    disp = MatchedConfusionMatrixDisplay.from_predictions(
        Y_TRUE, Y_PRED, text_kw={"color": "red", "ha": "left", "fontsize": 7}
    )
    for text in disp.text_.ravel():
        assert text.get_color() == "red"
        assert text.get_horizontalalignment() == "left"
        assert text.get_fontsize() == 7


def test_unmatched_clusters_and_classes_are_set_apart():
    more = MatchedConfusionMatrixDisplay.from_predictions(Y_TRUE, Y_PRED)
    (line,) = more.ax_.lines
    assert line.get_xdata()[0] == pytest.approx(2.5)  # after the 3 matched columns
    fewer = MatchedConfusionMatrixDisplay.from_predictions(Y_PRED, Y_TRUE)
    assert fewer.confusion_matrix.shape == (4, 3)
    (line,) = fewer.ax_.lines
    assert line.get_ydata()[0] == pytest.approx(2.5)
    square = MatchedConfusionMatrixDisplay.from_predictions(Y_TRUE, Y_TRUE)
    assert len(square.ax_.lines) == 0


def test_display_labels_follow_the_matched_rows():
    # Sorted classes 0, 1, 2 are named a, b, c. With class 2 as the largest
    # unmatched class, rows are reordered; names must move with them.
    y_true = np.array([2, 2, 2, 0, 0, 1])
    y_pred = np.array([4, 4, 4, 8, 8, 8])
    disp = MatchedConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, display_labels=["a", "b", "c"]
    )
    _, classes, _ = matched_confusion_matrix(y_true, y_pred, return_labels=True)
    names = {0: "a", 1: "b", 2: "c"}
    assert disp.display_labels.tolist() == [names[c] for c in classes]
    ticks = [t.get_text() for t in disp.ax_.get_yticklabels()]
    assert ticks == [names[c] for c in classes]
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        MatchedConfusionMatrixDisplay.from_predictions(
            y_true, y_pred, display_labels=["a", "b"]
        )
    # Three names, but in a row of a table: its shape is what is wrong.
    with pytest.raises(ValueError, match=r"shape \(1, 3\); it needs one name"):
        MatchedConfusionMatrixDisplay.from_predictions(
            y_true, y_pred, display_labels=[["a", "b", "c"]]
        )


def test_plot_options():
    fig, ax = plt.subplots()
    disp = MatchedConfusionMatrixDisplay.from_predictions(
        Y_TRUE,
        Y_PRED,
        normalize="true",
        ax=ax,
        colorbar=False,
        values_format=".1f",
        cmap="Blues",
        xticks_rotation="vertical",
        im_kw={"vmin": 0, "vmax": 1},
    )
    assert disp.ax_ is ax and disp.figure_ is fig
    assert len(fig.axes) == 1  # no colour bar
    np.testing.assert_allclose(disp.confusion_matrix.sum(axis=1), 1.0)
    assert disp.text_[0, 0].get_text() == "0.7"
    assert disp.im_.get_cmap().name == "Blues"
    assert disp.im_.get_clim() == (0, 1)
    assert disp.ax_.get_xticklabels()[0].get_rotation() == 90
    disp.plot(include_values=False)
    assert disp.text_ is None


def test_init_and_plot_like_sklearn():
    disp = MatchedConfusionMatrixDisplay(np.array([[3, 1], [0, 2]]))
    assert disp.plot() is disp
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == ["0", "1"]
    with pytest.raises(ValueError, match="cluster_labels has 3 entries"):
        MatchedConfusionMatrixDisplay(np.eye(2), cluster_labels=["x", "y", "z"]).plot()
    with pytest.raises(ValueError, match="must be 2-D"):
        MatchedConfusionMatrixDisplay(np.ones(3)).plot()


def test_from_estimator(blobs):
    X, y = blobs
    model = make_pipeline(StandardScaler(), KMeans(3, n_init=3, random_state=0))
    model.fit(X)
    disp = MatchedConfusionMatrixDisplay.from_estimator(model, X, y)
    expected = matched_confusion_matrix(y, model.predict(X))
    np.testing.assert_array_equal(disp.confusion_matrix, expected)
    with pytest.raises(TypeError, match="labels_ to MatchedConfusionMatrixDisplay"):
        MatchedConfusionMatrixDisplay.from_estimator(
            AgglomerativeClustering(3).fit(X), X, y
        )


@pytest.fixture(scope="module")
def deepcluster(blobs):
    X, _ = blobs
    return DeepClusterEstimator(3, max_epochs=3, device="cpu", random_state=0).fit(X)


def test_plot_history_deepcluster_draws_the_stability_curve(deepcluster):
    loss_ax, nmi_ax = plot_history(deepcluster)
    (loss,) = loss_ax.lines
    (stability,) = nmi_ax.lines
    np.testing.assert_array_equal(loss.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(loss.get_ydata(), deepcluster.history_[:, "train_loss"])
    values = np.array(deepcluster.history_[:, "pseudo_label_nmi"], dtype=float)
    np.testing.assert_allclose(stability.get_ydata(), values)
    assert np.isnan(values[0]) and np.isfinite(values[1:]).all()
    # Each y-axis is coloured like its curve.
    assert nmi_ax.yaxis.label.get_color() == stability.get_color()
    assert loss_ax.yaxis.label.get_color() == loss.get_color()
    assert loss.get_color() != stability.get_color()
    assert loss_ax.get_title() == "DeepClusterEstimator: history_"


def test_plot_history_on_a_busy_ax_colours_the_loss_axis_like_its_curve(
    deepcluster,
):
    _, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color="red")  # the user's own line comes first
    loss_ax, _ = plot_history(deepcluster, ax=ax)
    loss = loss_ax.lines[-1]
    assert loss_ax.yaxis.label.get_color() == loss.get_color() != "red"


def test_plot_history_shades_the_self_labelling_stage(blobs):
    """The stage's epochs have a loss but no NMI: each curve covers the
    epochs that record it, and the stage is shaded."""
    X, _ = blobs
    model = DeepClusterEstimator(
        3, max_epochs=5, self_labelling=True, device="cpu", random_state=0
    ).fit(X)
    loss_ax, nmi_ax = plot_history(model)
    (loss,) = loss_ax.lines
    (stability,) = nmi_ax.lines
    np.testing.assert_array_equal(loss.get_xdata(), [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(stability.get_xdata(), [1, 2, 3, 4, 5])
    (shade,) = loss_ax.patches
    left, right = shade.get_x(), shade.get_x() + shade.get_width()
    assert (left, right) == pytest.approx((5.5, 6.5))
    assert [t.get_text() for t in loss_ax.texts] == ["self-labelling"]
    plt.close(loss_ax.figure)


def test_plot_history_iic_and_pipeline_and_given_axes(blobs):
    X, _ = blobs
    pipe = make_pipeline(
        StandardScaler(),
        IICClustering(3, max_epochs=6, n_head_inits=0, device="cpu", random_state=0),
    ).fit(X)
    fig, ax = plt.subplots()
    axes = plot_history(pipe, ax=ax)
    assert axes == [ax]
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), pipe[-1].history_[:, "train_loss"])
    assert ax.get_legend() is None
    assert ax.get_title() == "IICClustering: history_"


def test_plot_history_autoencoder_shows_validation_loss(blobs):
    X, _ = blobs
    embedder = AutoEncoderEmbedder(
        n_components=2, max_epochs=3, early_stopping=True, device="cpu", random_state=0
    ).fit(X)
    (ax,) = plot_history(make_pipeline(embedder, KMeans(3, n_init=1)))
    train, valid = ax.lines
    assert valid.get_label() == "valid_loss"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["train_loss", "valid_loss"]
    np.testing.assert_allclose(valid.get_ydata(), embedder.history_[:, "valid_loss"])


def test_plot_history_errors(blobs):
    with pytest.raises(NotFittedError, match="not fitted"):
        plot_history(DeepClusterEstimator(3))
    with pytest.raises(NotFittedError, match="not fitted"):
        plot_history(make_pipeline(StandardScaler(), IICClustering(3)))
    with pytest.raises(TypeError, match="keeps no training history"):
        plot_history(KMeans(3))


@pytest.mark.parametrize(
    "draw",
    [
        lambda: MatchedConfusionMatrixDisplay(np.eye(2)).plot(),
        lambda: MatchedConfusionMatrixDisplay.from_predictions(Y_TRUE, Y_PRED),
        lambda: MatchedConfusionMatrixDisplay.from_estimator(
            KMeans(2, n_init=1).fit(np.eye(4)), np.eye(4), [0, 0, 1, 1]
        ),
    ],
    ids=["plot", "from_predictions", "from_estimator"],
)
def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch, draw):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "skiic\[plot\]"'):
        draw()


def test_plot_history_without_matplotlib(monkeypatch, deepcluster):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="plot_history needs matplotlib"):
        plot_history(deepcluster)


def test_importing_skiic_does_not_import_matplotlib():
    code = (
        "import sys, skiic, skiic.metrics, skiic.plotting, skiic.__main__\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
