"""One estimator, several parameter settings, the same data and seeds: which setting helps?

Examples::

    # IICClustering on PCA(50) of 20,000 MNIST images: the vector views
    python benchmarks/ablate.py --data ../shared/data/mnist.npz --n-samples 20000 \\
        --pca 50 --seeds 0 1 2 3 \\
        --variant "" --variant "augmentation=None" --variant "alpha=1.0"

    # AutoEncoderEmbedder(10) + KMeans(10) on 10,000 MNIST images
    python benchmarks/ablate.py --estimator autoencoder --data ../shared/data/mnist.npz \\
        --n-samples 10000 --seeds 0 --variant "max_epochs=15" \\
        --variant "max_epochs=15, augmentation=None"

Each ``--variant`` is a comma-separated list of ``name=value`` estimator
parameters (Python literals, or ``ImageAugmentation(...)`` /
``VectorAugmentation(...)``); ``""`` is the defaults. Every variant is fitted
once per seed on the same data, and the script prints a line per fit and a
table of median [min, max] over the seeds. The labels score the results only;
nothing is selected with them. Lines of the table differ only in the listed
parameters, so compare them within one run.
"""

from __future__ import annotations

import ast
import time

from _common import (
    base_parser,
    command_line,
    device_name,
    load,
    score_row,
    summarise,
    write_json,
)
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from skiic import AutoEncoderEmbedder, IICClustering
from skiic.augment import ImageAugmentation, VectorAugmentation

_AUGMENTATIONS = {
    "ImageAugmentation": ImageAugmentation,
    "VectorAugmentation": VectorAugmentation,
}


def parse_variant(text):
    """``"alpha=1.0, augmentation=VectorAugmentation(noise=0)"`` -> parameters."""
    call = ast.parse(f"f({text})", mode="eval").body
    if call.args:
        raise ValueError(f"variant {text!r}: write name=value, not a bare value")
    return {kw.arg: _value(kw.value, text) for kw in call.keywords}


def _value(node, text):
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in _AUGMENTATIONS:
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        return _AUGMENTATIONS[node.func.id](*map(ast.literal_eval, node.args), **kwargs)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(
            f"variant {text!r}: {ast.unparse(node)} is neither a Python literal "
            f"nor one of {sorted(_AUGMENTATIONS)}"
        ) from None


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--estimator", choices=["iic", "autoencoder"], default="iic")
    parser.add_argument(
        "--pca",
        type=int,
        default=None,
        help="fit on PCA(k) of the flat images (vectors) instead of the images",
    )
    parser.add_argument(
        "--variant", action="append", default=None, help="e.g. 'alpha=1.0'"
    )
    args = parser.parse_args(argv)
    variants = args.variant or [""]
    settings = [parse_variant(v) for v in variants]

    X, y, name = load(args.data, args.n_samples)
    if args.pca:
        X = PCA(args.pca, random_state=0).fit_transform(X.reshape(len(X), -1))
        name += f", PCA({args.pca})"
    device = device_name(args.device)
    print(f"{name}: {len(X)} samples, device {device}", flush=True)

    rows = []
    for seed in args.seeds:
        for text, params in zip(variants, settings):
            label = text or "defaults"
            start = time.perf_counter()
            if args.estimator == "iic":
                model = IICClustering(
                    10, device=args.device, random_state=seed, **params
                )
                labels = model.fit_predict(X)
                extra = {"loss": float(model.loss_)}
            else:
                model = AutoEncoderEmbedder(
                    10, device=args.device, random_state=seed, **params
                )
                codes = model.fit_transform(X)
                labels = KMeans(10, n_init=10, random_state=seed).fit_predict(codes)
                extra = {"reconstruction_mse": float(-model.score(X))}
            seconds = time.perf_counter() - start
            note = "  ".join(f"{k} {v:.4g}" for k, v in extra.items())
            rows.append(
                score_row(label, seed, seconds, labels, y, note=f"  {note}", **extra)
            )
    command = command_line()
    summarise(rows, name, device, command)
    write_json(args.json, rows, data=name, device=device, command=command)


if __name__ == "__main__":
    main()
