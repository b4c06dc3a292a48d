"""Tests for skiic.metrics."""

import itertools
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import GridSearchCV

from skiic.metrics import (
    cluster_mapping,
    matched_accuracy,
    matched_accuracy_scorer,
    matched_confusion_matrix,
    nmi,
    nmi_scorer,
)


def brute_force_accuracy(labels_true, labels_pred):
    """Best one-to-one matching by trying every injective assignment."""
    classes = np.unique(labels_true)
    clusters = np.unique(labels_pred)
    best = 0
    if len(clusters) <= len(classes):
        for perm in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, perm))
            best = max(
                best, sum(mapping[p] == t for t, p in zip(labels_true, labels_pred))
            )
    else:
        for perm in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(perm, classes))
            best = max(
                best, sum(mapping.get(p) == t for t, p in zip(labels_true, labels_pred))
            )
    return best / len(labels_true)


@pytest.mark.parametrize("n_classes", [2, 3, 4], ids=lambda k: f"{k}classes")
@pytest.mark.parametrize("n_clusters", [2, 3, 5], ids=lambda k: f"{k}clusters")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matched_accuracy_matches_brute_force(n_classes, n_clusters, seed):
    rng = np.random.default_rng(seed)
    labels_true = rng.integers(n_classes, size=40)
    labels_pred = rng.integers(n_clusters, size=40)
    assert matched_accuracy(labels_true, labels_pred) == pytest.approx(
        brute_force_accuracy(labels_true, labels_pred)
    )


def test_metrics_are_permutation_invariant():
    rng = np.random.default_rng(0)
    labels_true = rng.integers(5, size=100)
    labels_pred = np.where(
        rng.random(100) < 0.8, labels_true, rng.integers(5, size=100)
    )
    renamed = np.array([3, 0, 4, 1, 2])[labels_pred]
    assert matched_accuracy(labels_true, renamed) == matched_accuracy(
        labels_true, labels_pred
    )
    assert nmi(labels_true, renamed) == pytest.approx(nmi(labels_true, labels_pred))


def test_string_labels_are_accepted():
    assert matched_accuracy(["a", "a", "b"], ["x", "x", "y"]) == 1.0
    assert nmi(["a", "a", "b"], ["x", "x", "y"]) == pytest.approx(1.0)


def test_nmi_matches_sklearn():
    rng = np.random.default_rng(0)
    a, b = rng.integers(4, size=60), rng.integers(3, size=60)
    assert nmi(a, b) == pytest.approx(normalized_mutual_info_score(a, b))
    assert nmi(a, b, average_method="max") == pytest.approx(
        normalized_mutual_info_score(a, b, average_method="max")
    )


def test_cluster_mapping_pairs_clusters_with_classes():
    labels_true = [0, 0, 1, 1, 2, 2, 2]
    labels_pred = [5, 5, 9, 9, 9, 1, 1]
    assert cluster_mapping(labels_true, labels_pred) == {5: 0, 9: 1, 1: 2}


def test_cluster_mapping_leaves_extra_clusters_out():
    mapping = cluster_mapping([0, 0, 1, 1], [0, 1, 2, 2])
    assert mapping[2] == 1 and len(mapping) == 2


@pytest.mark.parametrize(
    "as_labels",
    [
        lambda v: np.array(v, dtype=object),
        lambda v: pd.Series(v),
        lambda v: pd.Categorical(v),
        lambda v: np.array(v),
    ],
    ids=["object", "series", "categorical", "str"],
)
def test_cluster_mapping_of_string_labels_in_any_container(as_labels):
    """Class names as pandas and object arrays hold them (plain Python
    strings, not numpy scalars) map like a numpy string array."""
    mapping = cluster_mapping(as_labels(["a", "a", "b", "c"]), [0, 0, 1, 2])
    assert mapping == {0: "a", 1: "b", 2: "c"}
    assert all(type(name) is str for name in mapping.values())


@pytest.mark.parametrize(
    "metric", [nmi, matched_accuracy, matched_confusion_matrix, cluster_mapping]
)
def test_labels_that_cannot_be_ordered_are_named(metric):
    mixed = np.array(["a", 1, "b", "a"], dtype=object)
    with pytest.raises(ValueError, match=r"labels_true mixes labels .*\(int, str\)"):
        metric(mixed, [0, 1, 1, 0])
    # As a list too: numpy would make 1 and "1" one string label.
    with pytest.raises(ValueError, match=r"labels_true mixes labels .*\(int, str\)"):
        metric([1, "1", 2, 2], [0, 1, 2, 2])


@pytest.mark.parametrize("metric", [nmi, matched_accuracy, cluster_mapping])
def test_bytes_labels_are_read_as_text_by_every_metric(metric):
    """scikit-learn's NMI refused them where the other metrics took them."""
    as_bytes = metric(np.array([b"a", b"b", b"a", b"c"]), [0, 1, 0, 1])
    as_text = metric(np.array(["a", "b", "a", "c"]), [0, 1, 0, 1])
    assert as_bytes == as_text


@pytest.mark.parametrize(
    "labels",
    [
        pd.Series(["a", "a", np.nan, "b"]),
        pd.Categorical(["a", "a", None, "b"]),
        np.array([1.0, 1.0, np.nan, 2.0], dtype=object),
        pd.array(["a", "a", pd.NA, "b"], dtype="string"),
    ],
    ids=["series-nan", "categorical-none", "object-nan", "string-na"],
)
@pytest.mark.parametrize("metric", [nmi, matched_accuracy, cluster_mapping])
def test_missing_labels_are_named(metric, labels):
    """Missing class labels are an error that says so, not a cluster of
    their own nor a complaint about mixed types."""
    with pytest.raises(ValueError, match="labels_true contains missing labels"):
        metric(labels, [0, 0, 1, 1])


def test_confusion_matrix_puts_matching_on_the_diagonal():
    labels_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    labels_pred = np.array([2, 2, 0, 1, 1, 0, 0, 3])
    matrix, classes, clusters = matched_confusion_matrix(
        labels_true, labels_pred, return_labels=True
    )
    assert matrix.shape == (3, 4)
    assert np.trace(matrix) / len(labels_true) == pytest.approx(
        matched_accuracy(labels_true, labels_pred)
    )
    assert classes.tolist() == [0, 1, 2]
    assert clusters.tolist() == [2, 1, 0, 3]
    assert matrix.sum() == len(labels_true)


def test_confusion_matrix_with_fewer_clusters_than_classes():
    matrix, classes, clusters = matched_confusion_matrix(
        [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1], return_labels=True
    )
    assert matrix.shape == (3, 2)
    assert np.trace(matrix[:2, :2]) == 4
    assert len(set(classes.tolist())) == 3


def test_confusion_matrix_puts_the_unmatched_last_by_decreasing_size():
    # two classes, four clusters: clusters 5 and 6 match; 8 (3 samples) and
    # 7 (1 sample) are left over, the larger first
    labels_true = [0] * 6 + [1] * 6
    labels_pred = [5] * 4 + [7] + [8] + [6] * 4 + [8] * 2
    _, _, clusters = matched_confusion_matrix(
        labels_true, labels_pred, return_labels=True
    )
    assert clusters.tolist() == [5, 6, 8, 7]
    # and the same for classes when clusters are fewer: classes 2 (1 sample)
    # and 3 (3 samples) are left over
    labels_true = [0] * 4 + [2] + [3] * 3 + [1] * 4
    labels_pred = [0] * 5 + [1] * 7
    matrix, classes, _ = matched_confusion_matrix(
        labels_true, labels_pred, return_labels=True
    )
    assert classes.tolist() == [0, 1, 3, 2]
    assert matrix.tolist() == [[4, 0], [0, 4], [0, 3], [1, 0]]


@pytest.mark.parametrize("normalize, axis", [("true", 1), ("pred", 0), ("all", None)])
def test_confusion_matrix_normalisation(normalize, axis):
    matrix = matched_confusion_matrix(
        [0, 0, 1, 1, 1], [1, 1, 0, 0, 1], normalize=normalize
    )
    sums = matrix.sum(axis=axis)
    assert np.allclose(sums, 1.0)


def test_confusion_matrix_rejects_unknown_normalisation():
    with pytest.raises(ValueError, match="normalize"):
        matched_confusion_matrix([0, 1], [0, 1], normalize="rows")


@pytest.mark.parametrize(
    "labels_true, labels_pred, message",
    [
        ([0, 1, 2], [0, 1], "inconsistent numbers of samples"),
        ([], [], "empty"),
        ([0.0, np.nan], [0, 1], "NaN"),
        ([[0, 1], [1, 0]], [0, 1], "1d array"),
    ],
    ids=["length", "empty", "nan", "2d"],
)
def test_bad_labels_are_rejected(labels_true, labels_pred, message):
    with pytest.raises(ValueError, match=message):
        matched_accuracy(labels_true, labels_pred)


def test_scorers_work_in_grid_search():
    X, y = make_blobs(n_samples=90, centers=3, random_state=0)
    search = GridSearchCV(
        KMeans(n_init=2, random_state=0),
        {"n_clusters": [2, 3, 5]},
        scoring={"acc": matched_accuracy_scorer, "nmi": nmi_scorer},
        refit="acc",
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"n_clusters": 3}
    assert search.best_score_ > 0.85


def test_scorers_compute_their_metric():
    """Each scorer gives its own metric of the estimator's predictions (on an
    imperfect clustering, where the two metrics differ)."""
    X, y = make_blobs(n_samples=90, centers=3, random_state=0)
    model = KMeans(2, n_init=2, random_state=0).fit(X)
    labels = model.predict(X)
    assert nmi_scorer(model, X, y) == pytest.approx(nmi(y, labels))
    assert matched_accuracy_scorer(model, X, y) == pytest.approx(
        matched_accuracy(y, labels)
    )
    assert abs(nmi(y, labels) - matched_accuracy(y, labels)) > 0.05


def test_public_names():
    import skiic.metrics

    assert sorted(skiic.metrics.__all__) == [
        "MatchedConfusionMatrixDisplay",
        "cluster_mapping",
        "matched_accuracy",
        "matched_accuracy_scorer",
        "matched_confusion_matrix",
        "nmi",
        "nmi_scorer",
    ]
    for name in skiic.metrics.__all__:
        assert getattr(skiic.metrics, name) is not None


def test_metrics_do_not_import_torch():
    # A bare stand-in for skiic/__init__.py, which imports the estimators.
    code = (
        "import importlib.util, sys, types\n"
        "package = types.ModuleType('skiic')\n"
        "spec = importlib.util.find_spec('skiic')\n"
        "package.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['skiic'] = package\n"
        "import skiic.metrics\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
