"""
=====================================================
DeepCluster's stability curve on the digit images
=====================================================

:class:`~skiic.DeepClusterEstimator` re-clusters its own features with
k-means at the start of every epoch and trains the network to predict these
pseudo-labels. Caron et al. (2018) follow training through the normalised
mutual information (NMI) between the pseudo-labels of consecutive epochs: it
rises as the features, and so the clusters, settle. ``history_`` records that
curve (``pseudo_label_nmi``), the k-means inertia and the training loss of
every epoch.

We fit the estimator on scikit-learn's 8x8 digit images, compare its clusters
with the classes and with plain :class:`~sklearn.cluster.KMeans`, and plot the
curves. The labels are used for the comparison only, never for fitting.
"""

# %%
# Fit on the digit images
# -----------------------
# The images are passed as an (n, 1, 8, 8) array, so the estimator builds a
# small convolutional network. All parameters keep their defaults: 100
# pseudo-classes (ten per cluster) balanced by sampling, 16 whitened
# dimensions, and 25 epochs of 30 steps on 1,797 images, followed by 5
# epochs of self-labelling on each cluster's most confident images (the
# default for images).
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from skiic import DeepClusterEstimator
from skiic.metrics import matched_accuracy, nmi
from skiic.plotting import plot_history

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 1, 8, 8)

start = time.perf_counter()
model = DeepClusterEstimator(n_clusters=10, device="cpu", random_state=0)
labels = model.fit_predict(images)
seconds = time.perf_counter() - start

kmeans_labels = KMeans(10, n_init=10, random_state=0).fit_predict(X)

# %%
# Clusters against the classes
# ----------------------------
print(f"{'method':<24}{'NMI':>8}{'matched accuracy':>20}")
for name, found in [("KMeans(10)", kmeans_labels), ("DeepClusterEstimator", labels)]:
    print(f"{name:<24}{nmi(y, found):>8.3f}{matched_accuracy(y, found):>20.3f}")
print(f"DeepClusterEstimator fitted in {seconds:.1f} s over {model.n_iter_} epochs")

# %%
# The curves recorded in ``history_``
# -----------------------------------
# The first epoch has no previous pseudo-labels, so its NMI is NaN. The
# pseudo-labels agree more and more from one epoch to the next while the
# loss on them falls: the classifier head is re-initialised each epoch, so
# a falling loss means that the backbone's features make the new
# pseudo-classes easier to separate.
# :func:`~skiic.plotting.plot_history` draws the loss and, on a second axis,
# the stability curve; the k-means inertia of each epoch's re-clustering is
# read from ``history_`` directly. The self-labelling epochs at the end
# (shaded) re-cluster nothing, so they record a loss (a cross-entropy on the
# confident images) but no NMI and no inertia.
history = model.history_
reclustered = [row for row in history if "kmeans_inertia" in row]
epochs = np.array([row["epoch"] for row in reclustered])
inertia = np.array([row["kmeans_inertia"] for row in reclustered])

fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
plot_history(model, ax=axes[0])
axes[0].set_title("cross-entropy on the pseudo-labels, and their stability")
axes[1].plot(epochs, inertia, marker="o", color="tab:purple")
axes[1].set(
    title=f"k-means inertia ({model.n_pseudo_classes_} pseudo-classes)",
    xlabel="epoch",
)
plt.show()
