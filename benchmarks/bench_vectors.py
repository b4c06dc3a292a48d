"""IICClustering on small vector data sets: second views compared, next to KMeans.

Examples::

    python benchmarks/bench_vectors.py
    python benchmarks/bench_vectors.py --sets iris wine --seeds 0 1 2

scikit-learn's bundled tables (iris, wine, breast cancer: standardised),
the digits as 64-pixel vectors after ``PCA(30)``, and two generated sets
(``moons``: two interleaved half circles; ``stretched_blobs``: five blobs of
unequal spread, linearly sheared; both standardised), each clustered into its
number of classes by ``KMeans`` and by ``IICClustering`` with each
``--augmentation`` (``neighbours``: the default, ``VectorAugmentation()``
neighbour pairs; ``adversarial``: ``VirtualAdversarial()`` views). Data that
nothing was tuned on: a check on settings chosen on MNIST.
"""

from __future__ import annotations

import time

import numpy as np
from _common import (
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
from sklearn.preprocessing import StandardScaler

from skiic import IICClustering
from skiic.augment import VectorAugmentation, VirtualAdversarial


def _moons(return_X_y=True):
    """Two interleaved half circles, 1,000 points, with noise 0.1."""
    return datasets.make_moons(1000, noise=0.1, random_state=0)


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


SETS = {
    "iris": (datasets.load_iris, StandardScaler),
    "wine": (datasets.load_wine, StandardScaler),
    "breast_cancer": (datasets.load_breast_cancer, StandardScaler),
    "digits": (datasets.load_digits, lambda: PCA(30, random_state=0)),
    "moons": (_moons, StandardScaler),
    "stretched_blobs": (_stretched_blobs, StandardScaler),
}
AUGMENTATIONS = {"neighbours": VectorAugmentation, "adversarial": VirtualAdversarial}


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument(
        "--augmentation",
        nargs="+",
        choices=list(AUGMENTATIONS),
        default=list(AUGMENTATIONS),
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", default="auto")
    parser.add_argument(
        "--n-init", type=int, default=1, help="IICClustering's restarts"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the runs here")
    args = parser.parse_args(argv)
    epochs = args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs)

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
            for aug in args.augmentation:

                def iic():
                    model = IICClustering(
                        k,
                        augmentation=AUGMENTATIONS[aug](),
                        max_epochs=epochs,
                        n_init=args.n_init,
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
                        f"{name}: IIC, {aug}", seed, seconds, labels, y,
                        note=f"  loss {loss:.4f}", loss=loss,
                    )
                )  # fmt: skip
        rows += mine
    summarise(
        rows, ", ".join(args.sets), device_name(args.device), command_line(), "time"
    )
    write_json(args.json, rows, sets=args.sets, command=command_line())
    return rows


if __name__ == "__main__":
    main()
