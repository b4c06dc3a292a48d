"""One estimator, several parameter settings, the same data and seeds: which setting helps?

Examples::

    # IICClustering on PCA(50) of 20,000 MNIST images: the vector views
    python benchmarks/ablate.py --data ../shared/data/mnist.npz --n-samples 20000 \\
        --pca 50 --seeds 0 1 2 3 \\
        --variant "" --variant "augmentation=None" --variant "alpha=1.0"

    # DeepClusterEstimator on the digits: training length
    python benchmarks/ablate.py --estimator deepcluster --seeds 0 1 2 \\
        --variant "" --variant "max_epochs=50"

    # AutoEncoderEmbedder(10) + KMeans(10) on 10,000 MNIST images
    python benchmarks/ablate.py --estimator autoencoder --data ../shared/data/mnist.npz \\
        --n-samples 10000 --seeds 0 --variant "max_epochs=15" \\
        --variant "max_epochs=15, augmentation=None"

    # The autoencoder on the flat digits (a 2-D array): neighbours as inputs
    python benchmarks/ablate.py --estimator autoencoder --flat --seeds 0 1 2 \\
        --variant "" --variant "n_neighbors=20"

Each ``--variant`` is a comma-separated list of ``name=value`` estimator
parameters (Python literals, or ``ImageAugmentation(...)`` /
``VectorAugmentation(...)``); ``""`` is the defaults. Every variant is fitted
once per seed on the same data, and the script prints a line per fit and a
table of median [min, max] over the seeds, next to ``KMeans(10)`` on the
flat images and ``PCA(k) + KMeans(10)`` from the same run: without
``--pca``, ``PCA(10)`` fitted with the seed inside the row's time; with
``--pca k``, ``KMeans`` on the variants' own data, whose ``PCA(k)`` is fitted
once (``random_state=0``) before any timer. The time of a fit covers training and
the labels (for the autoencoder: ``transform`` and ``KMeans``), not the extra
score printed with it. ``--flat`` fits on the flat images (vectors of
pixels) instead of the images. With ``--pca`` it first prints the share of the 10
nearest neighbours that carry the sample's label; with ``--confusion`` it
prints the confusion matrix of every fit (clusters matched to classes). The
labels serve these lines and the scores only; nothing is selected with them.
Lines of the table differ only in the listed parameters, so compare them
within one run.
"""

from __future__ import annotations

import ast
import time

import numpy as np
from _common import (
    base_parser,
    baseline_runs,
    command_line,
    device_name,
    kmeans_run,
    load,
    print_neighbor_agreement,
    score_row,
    summarise,
    timed_run,
    warm_up,
    write_json,
)
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from skiic import AutoEncoderEmbedder, DeepClusterEstimator, IICClustering
from skiic.augment import ImageAugmentation, VectorAugmentation, VirtualAdversarial
from skiic.metrics import matched_confusion_matrix

_AUGMENTATIONS = {
    "ImageAugmentation": ImageAugmentation,
    "VectorAugmentation": VectorAugmentation,
    "VirtualAdversarial": VirtualAdversarial,
}


def parse_variant(text):
    """``"alpha=1.0, augmentation=VectorAugmentation(noise=0)"`` -> parameters."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
    except SyntaxError:
        raise ValueError(
            f"variant {text!r} is not a comma-separated list of name=value"
        ) from None
    names = [kw.arg for kw in call.keywords]
    if call.args or None in names:
        raise ValueError(f"variant {text!r}: write name=value, not a bare value")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"variant {text!r} sets {', '.join(repeated)} twice")
    return {kw.arg: _value(kw.value, text) for kw in call.keywords}


def _value(node, text):
    try:
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) in _AUGMENTATIONS
        ):
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
            args = map(ast.literal_eval, node.args)
            return _AUGMENTATIONS[node.func.id](*args, **kwargs)
        return ast.literal_eval(node)
    except (ValueError, TypeError):
        raise ValueError(
            f"variant {text!r}: {ast.unparse(node)} is neither a Python literal "
            f"nor one of {sorted(_AUGMENTATIONS)} with literal arguments"
        ) from None


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--estimator", choices=["iic", "deepcluster", "autoencoder"], default="iic"
    )
    parser.add_argument(
        "--pca",
        type=int,
        default=None,
        help="fit on PCA(k) of the flat images (vectors) instead of the images",
    )
    parser.add_argument(
        "--flat",
        action="store_true",
        help="fit on the flat images (vectors of pixels, as a 2-D array)",
    )
    parser.add_argument(
        "--variant", action="append", default=None, help="e.g. 'alpha=1.0'"
    )
    parser.add_argument(
        "--confusion", action="store_true", help="print each fit's confusion matrix"
    )
    args = parser.parse_args(argv)
    if args.flat and args.pca:
        parser.error("--flat and --pca exclude each other")
    variants = args.variant or [""]
    if len(set(variants)) < len(variants):
        parser.error("each --variant must differ from the others")
    try:
        settings = [parse_variant(v) for v in variants]
    except ValueError as exc:
        parser.error(str(exc))

    X, y, name = load(args.data, args.n_samples)
    flat = X.reshape(len(X), -1)
    if args.pca:
        X = PCA(args.pca, random_state=0).fit_transform(flat)
        name += f", PCA({args.pca})"
    elif args.flat:
        X = flat
        name += ", flat"
    device = device_name(args.device)
    print(f"{name}: {len(X)} samples, device {device}", flush=True)
    if args.pca:
        print_neighbor_agreement(X, y)

    rows = []
    estimator = {
        "iic": IICClustering,
        "deepcluster": DeepClusterEstimator,
        "autoencoder": AutoEncoderEmbedder,
    }[args.estimator]
    warm_up(lambda: estimator(10, max_epochs=1, device=args.device), X)
    for seed in args.seeds:
        if args.pca:
            # The variants' data, PCA(pca) fitted once, untimed for all.
            rows.append(kmeans_run(seed, flat, y))
            rows.append(
                timed_run(
                    f"PCA({args.pca}) + KMeans(10)", seed,
                    lambda: KMeans(10, n_init=10, random_state=seed), X, y,
                )
            )  # fmt: skip
        else:
            rows += baseline_runs(seed, 10, flat, y)
        for text, params in zip(variants, settings):
            label = text or "defaults"
            start = time.perf_counter()
            model = estimator(10, device=args.device, random_state=seed, **params)
            if args.estimator == "autoencoder":
                codes = model.fit_transform(X)
                labels = KMeans(10, n_init=10, random_state=seed).fit_predict(codes)
            else:
                labels = model.fit_predict(X)
            seconds = time.perf_counter() - start  # not the extra score's time
            if args.estimator == "iic":
                extra = {"loss": float(model.loss_)}
            elif args.estimator == "deepcluster":
                extra = {"inertia": float(model.inertia_)}
            else:
                extra = {"reconstruction_mse": float(-model.score(X))}
            note = "  ".join(f"{k} {v:.4g}" for k, v in extra.items())
            rows.append(
                score_row(label, seed, seconds, labels, y, note=f"  {note}", **extra)
            )
            if args.confusion:
                matrix, classes, clusters = matched_confusion_matrix(
                    y, labels, return_labels=True
                )
                print(
                    f"  rows: classes {classes.tolist()}; "
                    f"columns: clusters {clusters.tolist()}"
                )
                print(np.array2string(matrix, max_line_width=200), flush=True)
    command = command_line()
    summarise(rows, name, device, command, time_label="time")
    write_json(args.json, rows, data=name, device=device, command=command)


if __name__ == "__main__":
    main()
