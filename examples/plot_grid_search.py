"""
=========================================================
Choosing alpha and overclustering with GridSearchCV
=========================================================

:class:`~skiic.IICClustering` has two knobs that change what it finds: ``alpha``
weighs the entropy of the cluster sizes in the loss (1 is the paper's mutual
information; larger values push towards clusters of equal size), and
``overclustering`` sets the size of the auxiliary head (``overclustering *
n_clusters`` clusters) that shapes the shared features.

Its ``score`` is the mutual information between the cluster assignments of two
views of held-out samples, so :class:`~sklearn.model_selection.GridSearchCV`
can rank parameters **without labels**. Here we run one search over a 3 x 3
grid on the digits (after :class:`~sklearn.decomposition.PCA`) and record two
scores for every setting: the unsupervised ``score``, which the search uses to
pick the winner, and the matched accuracy against the true digits
(:data:`skiic.metrics.matched_accuracy_scorer`), which a search *with* labels
would use instead. Both are drawn as heat maps.
"""

# %%
# The search
# ----------
# Every setting is trained on three quarters of the digits and scored on the
# last quarter (one split keeps the example within a minute on a CPU; use
# ``cv=5`` for real work). Training is shortened to 10 epochs with two
# sub-heads per head and no fresh heads (``n_head_inits=0``), which is enough
# to compare the settings, not to reach the best accuracy.
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, ShuffleSplit
from sklearn.pipeline import make_pipeline

from skiic import IICClustering
from skiic.metrics import matched_accuracy_scorer

X, y = load_digits(return_X_y=True)

pipeline = make_pipeline(
    PCA(n_components=30, random_state=0),
    IICClustering(
        n_clusters=10,
        max_epochs=10,
        n_init=1,
        n_heads=2,
        n_head_inits=0,
        random_state=0,
    ),
)
param_grid = {
    "iicclustering__alpha": [1.0, 2.0, 5.0],
    "iicclustering__overclustering": [1, 3, 5],
}


def mutual_information(estimator, X, y=None):
    """The estimator's own score: it never looks at ``y``."""
    return estimator.score(X)


search = GridSearchCV(
    pipeline,
    param_grid,
    scoring={
        "mutual_information": mutual_information,
        "matched_accuracy": matched_accuracy_scorer,
    },
    refit="mutual_information",  # choose without labels
    cv=ShuffleSplit(n_splits=1, test_size=0.25, random_state=0),
)
start = time.perf_counter()
search.fit(X, y)  # y only feeds the matched-accuracy column
seconds = time.perf_counter() - start
print(f"{len(search.cv_results_['params'])} settings and the refit in {seconds:.0f} s")
print("chosen without labels:", search.best_params_)

# %%
# The scores of every setting
# ---------------------------
# A ``ConvergenceWarning`` in the output above marks a fit that left some
# clusters empty, a sign that its ``alpha`` is too small for these data.
results = pd.DataFrame(search.cv_results_)
table = results[
    [
        "param_iicclustering__alpha",
        "param_iicclustering__overclustering",
        "mean_test_mutual_information",
        "mean_test_matched_accuracy",
        "mean_fit_time",
    ]
].rename(columns=lambda name: name.replace("param_iicclustering__", ""))
table.round(3)

# %%
# Heat maps
# ---------
# Left: what the unsupervised search sees. Right: what labels would say. The
# matched accuracy needs labels and is shown for comparison only; where the
# two maps agree, the unsupervised score is a safe guide.
alphas = param_grid["iicclustering__alpha"]
overclusterings = param_grid["iicclustering__overclustering"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for ax, key, title in [
    (axes[0], "mutual_information", "score: mutual information (no labels)"),
    (axes[1], "matched_accuracy", "matched accuracy (labels)"),
]:
    grid = (
        results.pivot_table(
            index="param_iicclustering__alpha",
            columns="param_iicclustering__overclustering",
            values=f"mean_test_{key}",
        )
        .reindex(index=alphas, columns=overclusterings)
        .to_numpy()
    )
    image = ax.imshow(grid, cmap="viridis")
    for (i, j), value in np.ndenumerate(grid):
        best = value == np.nanmax(grid)
        ax.text(
            j,
            i,
            f"{value:.2f}",
            ha="center",
            va="center",
            color="black" if value > np.nanmean(grid) else "white",
            fontweight="bold" if best else "normal",
        )
    ax.set(
        xticks=range(len(overclusterings)),
        xticklabels=overclusterings,
        yticks=range(len(alphas)),
        yticklabels=alphas,
        xlabel="overclustering",
        ylabel="alpha",
        title=title,
    )
    fig.colorbar(image, ax=ax, shrink=0.8)
plt.show()

# %%
# What to take from it
# --------------------
# The winner of the unsupervised search is refitted on all the data
# (``search.best_estimator_``), ready to ``predict``. With labels for some
# samples, pass ``scoring=matched_accuracy_scorer`` (or
# :data:`skiic.metrics.nmi_scorer`) and let the search use them instead.
labels = search.best_estimator_.predict(X)
print(f"refitted winner: {np.unique(labels).size} clusters on {len(X)} digits")
