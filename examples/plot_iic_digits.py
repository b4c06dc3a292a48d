"""
=================================================
Clustering the digits with IIC, next to KMeans
=================================================

:class:`~skiic.IICClustering` learns a small convolutional network that maps
each 8x8 digit image to one of ten clusters, by maximising the mutual
information between the assignments of two randomly augmented views of the
same image. No label is used for training or for choosing the prediction head;
labels only score the result here, next to :class:`~sklearn.cluster.KMeans`
on the same data.
"""

# %%
# Data and a KMeans baseline
# --------------------------
import time

import matplotlib.pyplot as plt
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from skiic import IICClustering
from skiic.metrics import MatchedConfusionMatrixDisplay, matched_accuracy, nmi
from skiic.plotting import plot_history

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 1, 8, 8)

start = time.perf_counter()
kmeans_labels = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(X)
kmeans_time = time.perf_counter() - start

# %%
# IIC on the images
# -----------------
# The (n, 1, 8, 8) array tells the estimator that these are images: it builds
# a small convolutional network, and the second view of every image is a
# random affine transform with brightness, contrast and noise changes,
# generated batch-wise on the device. ``max_epochs=50`` shortens the default
# schedule (``"auto"``: about 560 optimiser steps on a CPU, 80 epochs on the
# digits; 800 steps on a GPU) to keep this example short on a CPU; the
# default scores higher.
start = time.perf_counter()
iic = IICClustering(n_clusters=10, max_epochs=50, random_state=0).fit(images)
iic_time = time.perf_counter() - start

print(f"{'method':<16}{'time (s)':>10}{'NMI':>8}{'accuracy':>10}")
for name, labels, seconds in [
    ("KMeans", kmeans_labels, kmeans_time),
    ("IICClustering", iic.labels_, iic_time),
]:
    print(
        f"{name:<16}{seconds:>10.1f}{nmi(y, labels):>8.3f}"
        f"{matched_accuracy(y, labels):>10.3f}"
    )

# %%
# Where the clusters disagree with the digits
# -------------------------------------------
# :class:`~skiic.metrics.MatchedConfusionMatrixDisplay` puts the digits in
# rows and the clusters in columns, reordered so that the cluster the
# Hungarian matching pairs with each digit sits on the diagonal. Each row is
# normalised to one: the diagonal is the share of each digit that lands in
# its cluster.
fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
for ax, (name, labels) in zip(
    axes, [("KMeans", kmeans_labels), ("IICClustering", iic.labels_)]
):
    MatchedConfusionMatrixDisplay.from_predictions(
        y,
        labels,
        normalize="true",
        values_format=".1f",
        cmap="Blues",
        colorbar=False,
        ax=ax,
        text_kw={"fontsize": 7},
    )
    ax.set_title(f"{name}: matched accuracy {matched_accuracy(y, labels):.3f}")

# %%
# The training curve
# ------------------
# ``history_`` keeps one row per epoch. The loss is minus the mutual
# information between the two views' assignments, with the marginal entropy
# weighted by ``alpha``; it is averaged over the sub-heads and summed over the
# main and the overclustering head, so its scale depends on ``alpha`` and on
# the head sizes: read its trend, not its value.
# :func:`~skiic.plotting.plot_history` draws it.
plot_history(iic)
plt.show()

# %%
# Which head predicts
# -------------------
# After training, the estimator picks the head with the lowest loss on the
# training data among the trained sub-heads and the fresh heads fitted on the
# frozen features, without looking at labels.
print(f"{len(iic.head_losses_)} candidate heads, head {iic.best_head_} chosen")
print(f"its loss: {iic.loss_:.3f}; the worst candidate: {iic.head_losses_.max():.3f}")
