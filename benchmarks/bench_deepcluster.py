"""DeepClusterEstimator next to KMeans: wall time, NMI and matched accuracy over seeds.

Examples::

    python benchmarks/bench_deepcluster.py                                   # digits, CPU ok
    python benchmarks/bench_deepcluster.py --data ../shared/data/mnist.npz   # MNIST 70k, GPU
    python benchmarks/bench_deepcluster.py --data ../shared/data/mnist.npz --n-samples 10000

The image model (conv backbone on (n, 1, H, W)) and the vector model
(``make_pipeline(PCA(50), DeepClusterEstimator(10))``) are timed, each over
every seed, with the baselines KMeans and PCA(50)+KMeans from the same run;
``--models pca_adversarial`` times the vector model with
``augmentation=VirtualAdversarial()`` as well.
With ``--json`` the per-epoch pseudo-label NMI of every run is saved as well.
"""

from __future__ import annotations

from _common import (
    base_parser,
    baseline_runs,
    command_line,
    device_name,
    load,
    summarise,
    timed_run,
    write_json,
)
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from skiic import DeepClusterEstimator
from skiic.augment import VirtualAdversarial


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["images", "pca"],
        choices=["images", "pca", "pca_adversarial"],
    )
    parser.add_argument("--max-epochs", default="auto")
    parser.add_argument(
        "--n-pseudo-classes", default="auto", help="default: the estimator's"
    )
    parser.add_argument("--pca", type=int, default=50, help="PCA components (vectors)")
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip KMeans and PCA+KMeans"
    )
    args = parser.parse_args(argv)

    X, y, name = load(args.data, args.n_samples)
    flat = X.reshape(len(X), -1)
    n_pca = min(args.pca, flat.shape[1])
    extra = {}
    if args.max_epochs != "auto":
        extra["max_epochs"] = int(args.max_epochs)
    if args.n_pseudo_classes != "auto":
        extra["n_pseudo_classes"] = int(args.n_pseudo_classes)

    fitted = []

    def deepcluster(seed, **settings):
        model = DeepClusterEstimator(
            10, device=args.device, random_state=seed, **extra, **settings
        )
        fitted.append(model)
        return model

    def curve(row):
        model = fitted[-1]
        row["n_epochs"] = model.n_iter_
        row["pseudo_label_nmi"] = list(model.history_[:, "pseudo_label_nmi"])
        return row

    print(f"{name}: {len(X)} samples, device {device_name(args.device)}", flush=True)
    rows = []
    for seed in args.seeds:
        if not args.no_baselines:
            rows += baseline_runs(seed, n_pca, flat, y)
        if "images" in args.models:
            row = timed_run(
                "DeepClusterEstimator(10), images",
                seed,
                lambda: deepcluster(seed),
                X,
                y,
            )
            rows.append(curve(row))
        if "pca" in args.models:
            row = timed_run(
                f"PCA({n_pca}) + DeepClusterEstimator(10)",
                seed,
                lambda: make_pipeline(PCA(n_pca, random_state=seed), deepcluster(seed)),
                flat,
                y,
            )
            rows.append(curve(row))
        if "pca_adversarial" in args.models:
            row = timed_run(
                f"PCA({n_pca}) + DeepClusterEstimator(10), adversarial",
                seed,
                lambda: make_pipeline(
                    PCA(n_pca, random_state=seed),
                    deepcluster(seed, augmentation=VirtualAdversarial()),
                ),
                flat,
                y,
            )
            rows.append(curve(row))
    command = command_line()
    summarise(rows, name, device_name(args.device), command)
    write_json(
        args.json, rows, data=name, device=device_name(args.device), command=command
    )


if __name__ == "__main__":
    main()
