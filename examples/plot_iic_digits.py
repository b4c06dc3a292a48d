"""
=================================================
Clustering the digits with IIC, next to KMeans
=================================================

:class:`~skiic.IICClustering` learns a small convolutional network that maps
each 8x8 digit image to one of ten clusters, by maximising the mutual
information between the assignments of two randomly augmented views of the
same image. No label is used for training or for choosing the prediction head;
labels only score the result here.
"""

# %%
# Data and a KMeans baseline
# --------------------------
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from skiic import IICClustering
from skiic.metrics import matched_accuracy, matched_confusion_matrix, nmi

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 1, 8, 8)

start = time.perf_counter()
kmeans_labels = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(X)
kmeans_time = time.perf_counter() - start

# %%
# IIC on the images
# -----------------
start = time.perf_counter()
iic = IICClustering(n_clusters=10, random_state=0).fit(images)
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
# Rows are digits, columns clusters, reordered so that the best one-to-one
# matching lies on the diagonal.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
for ax, (name, labels) in zip(
    axes, [("KMeans", kmeans_labels), ("IICClustering", iic.labels_)]
):
    matrix, classes, clusters = matched_confusion_matrix(
        y, labels, normalize="true", return_labels=True
    )
    ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(clusters)), clusters)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("cluster")
    ax.set_ylabel("digit")
    ax.set_title(f"{name}: matched accuracy {matched_accuracy(y, labels):.3f}")
fig.tight_layout()

# %%
# The training curve
# ------------------
# ``history_`` keeps one row per epoch; the loss is minus the mutual
# information, with the marginal entropy weighted by ``alpha``.
losses = np.array(iic.history_[:, "train_loss"])
plt.figure(figsize=(5, 3))
plt.plot(np.arange(1, len(losses) + 1), losses)
plt.xlabel("epoch")
plt.ylabel("training loss")
plt.tight_layout()
plt.show()
