"""
============================================
A two-dimensional autoencoder map of digits
============================================

:class:`~skiic.AutoEncoderEmbedder` learns a non-linear map from the 8x8 digit
images bundled with scikit-learn to two numbers per image, and a decoder that
maps those two numbers back to an image. Here it stands next to
:class:`~sklearn.decomposition.PCA` with two components: both embeddings are
plotted, coloured by the true digit (which neither method sees), and their
reconstruction errors are compared.

The script runs in well under a minute on a CPU.
"""

# %%
# Load the digits
# ---------------
# 1,797 images of 8x8 pixels with values from 0 to 16. Given as (n, 1, 8, 8)
# images, the embedder builds a small convolutional encoder and a decoder that
# mirrors it; flat (n, 64) vectors would get fully connected networks instead.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from skiic import AutoEncoderEmbedder

X, y = load_digits(return_X_y=True)
images = X.reshape(-1, 1, 8, 8)

# %%
# Fit both embeddings
# -------------------
# ``max_epochs`` is kept small so that the example is quick on a CPU; the
# default (``"auto"``) trains longer. By default the network is trained as a
# denoising autoencoder: it sees slightly shifted, rotated and noisy copies of
# the images and must reconstruct the clean ones.
start = time.perf_counter()
embedder = AutoEncoderEmbedder(n_components=2, max_epochs=60, random_state=0)
Z_ae = embedder.fit_transform(images)
ae_seconds = time.perf_counter() - start

pca = PCA(n_components=2, random_state=0)
Z_pca = pca.fit_transform(X)

# %%
# Reconstruction error
# --------------------
# ``inverse_transform`` decodes the codes back to images, in the units of the
# input; ``score`` is minus the mean squared reconstruction error.
ae_error = -embedder.score(images)
pca_error = np.mean((X - pca.inverse_transform(Z_pca)) ** 2)
print(f"{'method':<24}{'fit time (s)':>14}{'reconstruction MSE':>20}")
print(f"{'AutoEncoderEmbedder(2)':<24}{ae_seconds:>14.1f}{ae_error:>20.2f}")
print(f"{'PCA(2)':<24}{'':>14}{pca_error:>20.2f}")

# %%
# Plot the two maps
# -----------------
# Each point is one image, coloured by its digit. The autoencoder's map
# separates most digits into their own regions, where the two principal
# components overlap several of them.
fig, axes = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
for ax, Z, title in [
    (axes[0], Z_pca, "PCA(n_components=2)"),
    (axes[1], Z_ae, "AutoEncoderEmbedder(n_components=2)"),
]:
    points = ax.scatter(Z[:, 0], Z[:, 1], c=y, cmap="tab10", s=6, alpha=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(points, ax=axes, ticks=range(10), label="digit")
plt.show()

# %%
# Decode points of the map
# ------------------------
# The decoder turns any point of the plane into an image: a grid over the
# region the digits occupy shows how the map is organised.
grid_x = np.linspace(*np.percentile(Z_ae[:, 0], [2, 98]), 8)
grid_y = np.linspace(*np.percentile(Z_ae[:, 1], [2, 98]), 8)
codes = np.array([[gx, gy] for gy in grid_y[::-1] for gx in grid_x])
decoded = embedder.inverse_transform(codes)  # (64, 1, 8, 8), pixels 0..16
fig, axes = plt.subplots(8, 8, figsize=(5, 5))
for ax, image in zip(axes.ravel(), decoded[:, 0]):
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=16)
    ax.axis("off")
fig.suptitle("Images decoded from a grid of codes")
plt.show()
