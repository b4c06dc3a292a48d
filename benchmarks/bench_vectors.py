"""The vector panel: IICClustering on 2-D data sets next to KMeans.

Examples::

    python benchmarks/bench_vectors.py                      # the small sets
    python benchmarks/bench_vectors.py --sets iris wine --seeds 0 1 2
    python benchmarks/bench_vectors.py --sets mnist_pca50 mnist_flat \\
        --views default adversarial

The panel: scikit-learn's tables (iris, wine, breast cancer); the digits as
64 raw pixels (``digits``) and after ``PCA(30)``; generated sets (``moons``
and ``circles``; ``blobs``: eight round blobs in 5 dimensions;
``stretched_blobs``: five blobs of unequal spread, linearly sheared;
``noisy_blobs``: six blobs in 10 dimensions plus 90 noise features; the wide
sets: ``wide_blobs``, eight blobs in 100 dimensions, ``very_noisy_blobs``,
five blobs in 10 dimensions plus 190 noise features, and ``classification``,
scikit-learn's ``make_classification`` in 120 features), the tables and the
generated sets standardised (``StandardScaler``);
and all 70,000 MNIST images as flat pixels (``mnist_flat``) and after
``PCA(50)`` (``mnist_pca50``; both read ``../shared/data/mnist.npz``). Each is
clustered into its number of classes by ``KMeans(n_init=10)`` after the same
preprocessing and by ``IICClustering`` with each of ``--views``:
``default`` (the estimator's defaults), ``neighbours`` (a neighbour as the
second view, ``VectorAugmentation()`` noise), ``adversarial`` (the sample's
own ``VirtualAdversarial()`` view) and ``combined`` (the virtual adversarial
view of a neighbour). Labels only score the result.
"""

from __future__ import annotations

import time

import numpy as np
from _common import (
    DEFAULT_MNIST,
    command_line,
    device_name,
    score_row,
    summarise,
    timed_run,
    write_json,
)
from sklearn import datasets
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from skiic import IICClustering
from skiic.augment import VectorAugmentation, VirtualAdversarial


def _moons(return_X_y=True):
    """Two interleaved half circles, 1,000 points, with noise 0.1."""
    return datasets.make_moons(1000, noise=0.1, random_state=0)


def _circles(return_X_y=True):
    """Two concentric circles, 1,000 points, radius ratio 0.5, noise 0.05."""
    return datasets.make_circles(1000, factor=0.5, noise=0.05, random_state=0)


def _blobs(return_X_y=True):
    """Eight round blobs in 5 dimensions, 2,000 points."""
    return datasets.make_blobs(2000, n_features=5, centers=8, random_state=0)


def _stretched_blobs(return_X_y=True):
    """Five blobs of unequal spread in 10 dimensions, sheared by one linear map."""
    X, y = datasets.make_blobs(
        1500,
        n_features=10,
        centers=5,
        cluster_std=[1.0, 2.0, 3.0, 1.5, 2.5],
        random_state=0,
    )
    shear = np.random.default_rng(0).normal(size=(10, 10))
    return X @ shear, y


def _noisy_blobs(return_X_y=True):
    """Six blobs in 10 dimensions, then 90 pure-noise features of the same scale."""
    X, y = datasets.make_blobs(
        3000, n_features=10, centers=6, cluster_std=2.0, random_state=0
    )
    noise = np.random.default_rng(0).normal(scale=X.std(), size=(len(X), 90))
    return np.hstack([X, noise]), y


def _wide_blobs(return_X_y=True):
    """Eight blobs in 100 dimensions, every feature informative, 2,000 points."""
    return datasets.make_blobs(
        2000, n_features=100, centers=8, cluster_std=6.0, random_state=1
    )


def _very_noisy_blobs(return_X_y=True):
    """Five blobs in 10 dimensions, then 190 pure-noise features of the same scale."""
    X, y = datasets.make_blobs(
        3000, n_features=10, centers=5, cluster_std=1.5, random_state=2
    )
    noise = np.random.default_rng(2).normal(size=(len(X), 190)) * X.std()
    return np.hstack([X, noise]), y


def _classification(return_X_y=True):
    """Four classes in 120 features: 20 informative, 30 linear mixtures of
    them, 70 noise (scikit-learn's ``make_classification``), 2,000 points."""
    return datasets.make_classification(
        2000,
        n_features=120,
        n_informative=20,
        n_redundant=30,
        n_classes=4,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=3,
    )


def _digits_flat(return_X_y=True):
    """The 1,797 digits as 64 raw pixel values, as users pass them."""
    return datasets.load_digits(return_X_y=True)


def _mnist(return_X_y=True):
    """All 70,000 MNIST images as flat rows of 784 pixels."""
    from skiic.datasets import load_mnist

    X, y = load_mnist(DEFAULT_MNIST)
    return X.reshape(len(X), -1).astype(np.float32), y


def _identity():
    return FunctionTransformer()


# name: (loader, the preprocessing a user would put in front, in the pipeline)
SETS = {
    "iris": (datasets.load_iris, StandardScaler),
    "wine": (datasets.load_wine, StandardScaler),
    "breast_cancer": (datasets.load_breast_cancer, StandardScaler),
    "digits": (_digits_flat, _identity),
    "digits_pca30": (datasets.load_digits, lambda: PCA(30, random_state=0)),
    "moons": (_moons, StandardScaler),
    "circles": (_circles, StandardScaler),
    "blobs": (_blobs, StandardScaler),
    "stretched_blobs": (_stretched_blobs, StandardScaler),
    "noisy_blobs": (_noisy_blobs, StandardScaler),
    "wide_blobs": (_wide_blobs, StandardScaler),
    "very_noisy_blobs": (_very_noisy_blobs, StandardScaler),
    "classification": (_classification, StandardScaler),
    "mnist_pca50": (_mnist, lambda: PCA(50, random_state=0)),
    "mnist_flat": (_mnist, _identity),
}
SMALL = [name for name in SETS if not name.startswith("mnist")]


def _views(name):
    """IICClustering settings of the second view called ``name``."""
    return {
        "default": {},
        "neighbours": {"augmentation": VectorAugmentation(), "n_neighbors": 10},
        "adversarial": {"augmentation": VirtualAdversarial(), "n_neighbors": 0},
        "combined": {"augmentation": VirtualAdversarial(), "n_neighbors": 10},
    }[name]


VIEWS = ["default", "neighbours", "adversarial", "combined"]


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=SMALL)
    parser.add_argument("--views", nargs="+", choices=VIEWS, default=["default"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", default="auto")
    parser.add_argument(
        "--n-init",
        default="auto",
        help="IICClustering's n_init: 'auto' (its default) or a number of restarts",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the runs here")
    args = parser.parse_args(argv)
    epochs = args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs)
    n_init = args.n_init if args.n_init == "auto" else int(args.n_init)

    rows = []
    for name in args.sets:
        load, preprocess = SETS[name]
        X, y = load(return_X_y=True)
        k = len(set(y))
        print(f"{name}: {X.shape[0]} samples, {X.shape[1]} features, {k} classes")
        mine = []
        for seed in args.seeds:

            def kmeans():
                return make_pipeline(
                    preprocess(), KMeans(k, n_init=10, random_state=seed)
                )

            mine.append(timed_run(f"{name}: KMeans", seed, kmeans, X, y))
            for view in args.views:

                def iic():
                    model = IICClustering(
                        k,
                        **_views(view),
                        max_epochs=epochs,
                        n_init=n_init,
                        device=args.device,
                        random_state=seed,
                    )
                    return make_pipeline(preprocess(), model)

                start = time.perf_counter()
                pipeline = iic()
                labels = pipeline.fit_predict(X)
                seconds = time.perf_counter() - start
                loss = float(pipeline[-1].loss_)
                mine.append(
                    score_row(
                        f"{name}: IIC, {view}", seed, seconds, labels, y,
                        note=f"  loss {loss:.4f}", loss=loss,
                    )
                )  # fmt: skip
        rows += mine
    summarise(
        rows, ", ".join(args.sets), device_name(args.device), command_line(), "time"
    )
    write_json(
        args.json, rows, data=", ".join(args.sets), device=device_name(args.device),
        command=command_line(),
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
