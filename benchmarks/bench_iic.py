"""IICClustering next to KMeans: wall time, NMI and matched accuracy over seeds.

Examples::

    python benchmarks/bench_iic.py                                   # digits, CPU ok
    python benchmarks/bench_iic.py --data ../shared/data/mnist.npz   # MNIST 70k, GPU
    python benchmarks/bench_iic.py --data ../shared/data/mnist.npz --n-samples 10000

Both the image model (conv backbone on (n, 1, H, W)) and the vector model
(``make_pipeline(PCA(50), IICClustering(10))``, its second views virtual
adversarial ones by default) are timed, each over every seed, with the
baselines KMeans and PCA(50)+KMeans from the same run. With the vector model
the run also fits ``PCA(50) + SpectralClustering(10)`` on the
10-nearest-neighbour graph and prints how many of those neighbour pairs share
a label: how far a clustering of the neighbour graph alone can go.
``--models pca-neighbours`` adds the same pipeline with plain neighbour pairs
(``IICClustering(10, augmentation=VectorAugmentation(), n_neighbors=10)``).
"""

from __future__ import annotations

from _common import (
    base_parser,
    baseline_runs,
    command_line,
    device_name,
    load,
    print_neighbor_agreement,
    summarise,
    timed_run,
    write_json,
)
from sklearn.cluster import SpectralClustering
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from skiic import IICClustering
from skiic.augment import VectorAugmentation


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["images", "pca"],
        choices=["images", "pca", "pca-neighbours"],
        help="pca-neighbours: the PCA pipeline with plain neighbour pairs",
    )
    parser.add_argument("--max-epochs", default="auto")
    parser.add_argument(
        "--n-init", type=int, default=None, help="default: the estimator's"
    )
    parser.add_argument("--pca", type=int, default=50, help="PCA components (vectors)")
    args = parser.parse_args(argv)

    X, y, name = load(args.data, args.n_samples)
    flat = X.reshape(len(X), -1)
    n_pca = min(args.pca, flat.shape[1])
    extra = {}
    if args.max_epochs != "auto":
        extra["max_epochs"] = int(args.max_epochs)
    if args.n_init is not None:
        extra["n_init"] = args.n_init

    def iic(seed, **params):
        return IICClustering(
            10, device=args.device, random_state=seed, **extra, **params
        )

    print(f"{name}: {len(X)} samples, device {device_name(args.device)}", flush=True)
    if "pca" in args.models:
        print_neighbor_agreement(PCA(n_pca, random_state=0).fit_transform(flat), y)
    rows = []
    for seed in args.seeds:
        rows += baseline_runs(seed, n_pca, flat, y)
        if "images" in args.models:
            rows.append(
                timed_run("IICClustering(10), images", seed, lambda: iic(seed), X, y)
            )
        if "pca" in args.models:
            rows.append(
                timed_run(
                    f"PCA({n_pca}) + IICClustering(10)",
                    seed,
                    lambda: make_pipeline(PCA(n_pca, random_state=seed), iic(seed)),
                    flat,
                    y,
                )
            )
        if "pca-neighbours" in args.models:
            rows.append(
                timed_run(
                    f"PCA({n_pca}) + IICClustering(10), neighbour pairs",
                    seed,
                    lambda: make_pipeline(
                        PCA(n_pca, random_state=seed),
                        iic(seed, augmentation=VectorAugmentation(), n_neighbors=10),
                    ),
                    flat,
                    y,
                )
            )
        if "pca" in args.models:
            rows.append(
                timed_run(
                    f"PCA({n_pca}) + SpectralClustering(10)",
                    seed,
                    lambda: make_pipeline(
                        PCA(n_pca, random_state=seed), spectral(seed)
                    ),
                    flat,
                    y,
                )
            )
    command = command_line()
    summarise(rows, name, device_name(args.device), command)
    write_json(
        args.json, rows, data=name, device=device_name(args.device), command=command
    )


def spectral(seed):
    """Spectral clustering of the symmetrised graph of 10 nearest neighbours.

    Plain neighbour pairs (``--models pca-neighbours``) draw the second view
    of a vector from its 10 nearest neighbours, so this baseline clusters
    essentially the graph they learn from (scikit-learn counts the sample
    itself among its ``n_neighbors``, so 9 of the 10 are shared).
    """
    return SpectralClustering(
        10,
        affinity="nearest_neighbors",
        n_neighbors=10,
        eigen_solver="lobpcg",  # arpack's shift-invert takes minutes on 70,000 samples
        random_state=seed,
    )


if __name__ == "__main__":
    main()
