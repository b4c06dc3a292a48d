"""
==========================================================
skiic's estimators next to scikit-learn's clusterers
==========================================================

One table for the 1,797 digits bundled with scikit-learn: the three skiic
methods (:class:`~skiic.IICClustering`, :class:`~skiic.DeepClusterEstimator`
and :class:`~skiic.AutoEncoderEmbedder` followed by KMeans) next to
:class:`~sklearn.cluster.KMeans`,
:class:`~sklearn.cluster.AgglomerativeClustering`,
:class:`~sklearn.cluster.SpectralClustering` and
:class:`~sklearn.mixture.GaussianMixture`, all asked for ten clusters. The
labels are used only to score: normalised mutual information (NMI) and the
accuracy after matching clusters to digits by the Hungarian algorithm.

The deep estimators train on shortened schedules so that the whole example
stays within a minute on a CPU; their defaults train longer and score higher
(see :doc:`the benchmarks </benchmarks>`). Times are wall-clock seconds of
``fit_predict`` on the machine that built this page.
"""

# %%
# The contenders
# --------------
# The skiic estimators take the images as (n, 1, 8, 8) arrays and build small
# convolutional networks; scikit-learn's clusterers take the flat 64-pixel
# vectors (the Gaussian mixture after a 30-component PCA, where full
# covariances can be estimated). Training schedules, all shorter than the
# defaults: IICClustering 25 epochs (its default for these images on a CPU:
# 80, about 560 steps), DeepClusterEstimator 10 epochs (default 25), the
# autoencoder 30 epochs (default 200). With its defaults, IICClustering
# reached a matched accuracy of 0.957 [0.950, 0.962] on these digits (5
# seeds) in about 12 s on two quiet CPU cores (``python -m skiic`` runs that
# comparison).
import time

import matplotlib.pyplot as plt
import pandas as pd
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic.metrics import matched_accuracy, nmi

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 1, 8, 8)

methods = [
    (
        "IICClustering",
        "images",
        IICClustering(10, max_epochs=25, random_state=0),
    ),
    (
        "DeepClusterEstimator",
        "images",
        DeepClusterEstimator(10, max_epochs=10, random_state=0),
    ),
    (
        "AutoEncoderEmbedder + KMeans",
        "images",
        make_pipeline(
            AutoEncoderEmbedder(n_components=10, max_epochs=30, random_state=0),
            KMeans(10, n_init=10, random_state=0),
        ),
    ),
    ("KMeans", "vectors", KMeans(10, n_init=10, random_state=0)),
    ("AgglomerativeClustering (ward)", "vectors", AgglomerativeClustering(10)),
    (
        "SpectralClustering (k-NN graph)",
        "vectors",
        SpectralClustering(10, affinity="nearest_neighbors", random_state=0),
    ),
    (
        "PCA(30) + GaussianMixture",
        "vectors",
        make_pipeline(
            PCA(30, random_state=0), GaussianMixture(10, n_init=2, random_state=0)
        ),
    ),
]

# %%
# Fit and score
# -------------
rows = []
for name, kind, estimator in methods:
    data = images if kind == "images" else X
    start = time.perf_counter()
    labels = estimator.fit_predict(data)
    seconds = time.perf_counter() - start
    rows.append(
        {
            "method": name,
            "input": kind,
            "time (s)": seconds,
            "NMI": nmi(y, labels),
            "matched accuracy": matched_accuracy(y, labels),
        }
    )
table = pd.DataFrame(rows).set_index("method")
table.sort_values("matched accuracy", ascending=False).round(3)

# %%
# The same as a picture
# ---------------------
ordered = table.sort_values("matched accuracy")
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
colors = ["tab:blue" if kind == "images" else "tab:gray" for kind in ordered.input]
ordered["matched accuracy"].plot.barh(ax=axes[0], color=colors)
axes[0].set(xlabel="matched accuracy", xlim=(0, 1), ylabel="")
ordered["time (s)"].plot.barh(ax=axes[1], color=colors)
axes[1].set(xlabel="fit time (s, CPU)", xscale="log")
fig.suptitle("Ten clusters of the digits (blue: skiic on images)")
plt.show()
