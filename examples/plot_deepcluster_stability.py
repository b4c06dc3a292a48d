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
# dimensions, and 25 epochs of 30 steps on 1,797 images.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits

from skiic import DeepClusterEstimator
from skiic.metrics import matched_accuracy, nmi

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
history = model.history_
epochs = np.asarray(history[:, "epoch"])
stability = np.asarray(history[:, "pseudo_label_nmi"], dtype=float)
loss = np.asarray(history[:, "train_loss"])
inertia = np.asarray(history[:, "kmeans_inertia"])

fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), layout="constrained")
axes[0].plot(epochs, stability, marker="o")
axes[0].set(
    title="NMI between consecutive pseudo-labels",
    xlabel="epoch",
    ylabel="NMI(t - 1, t)",
)
axes[1].plot(epochs, loss, marker="o", color="tab:orange")
axes[1].set(title="cross-entropy on the pseudo-labels", xlabel="epoch")
axes[2].plot(epochs, inertia, marker="o", color="tab:green")
axes[2].set(
    title=f"k-means inertia ({model.n_pseudo_classes_} pseudo-classes)",
    xlabel="epoch",
)
plt.show()
