"""The ``skiic`` command: the digits demo, and clustering of array files.

``skiic`` (or ``python -m skiic``) without a command runs the demo: skiic's
IICClustering next to KMeans on scikit-learn's bundled digits. ``skiic cluster
DATA --n-clusters K`` clusters the samples of a .npy, .npz or .csv file and
writes their labels with ``np.save``. Errors in the input end the command with
one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._cli_io import InputError, out_path, read_data, read_labels

# torch, scikit-learn and the estimators are imported inside the functions
# that train, so that --help, usage errors and unreadable files are answered
# at once.

__all__ = ["demo", "main"]

METHODS = {
    "iic": "IICClustering",
    "deepcluster": "DeepClusterEstimator",
    "ae-kmeans": "AutoEncoderEmbedder + KMeans",
}
EXIT_USAGE, EXIT_TRAINING = 2, 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m skiic`` and of the ``skiic`` command.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 for bad input (a line ``skiic: error: ...`` on
        stderr), 1 when training fails.
    """
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        # Warnings as one line each, like the errors, without a Python source
        # location (that of the runner, not of anything the user wrote).
        warnings.showwarning = _show_warning
        return _run(cluster if args.command == "cluster" else _demo, args)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    print(f"skiic: warning: {text}", file=sys.stderr if file is None else file)


def demo(random_state: int = 0, device: str = "auto", out=None) -> list[dict]:
    """Cluster the digits with IICClustering and KMeans; print and return a table.

    Parameters
    ----------
    random_state : int, default=0
        Seed of both methods.
    device : str, default="auto"
        Torch device of IICClustering.
    out : file-like, default=None
        Where the table is printed; ``None`` is ``sys.stdout``.

    Returns
    -------
    rows : list of dict
        One dict per method: ``method``, ``seconds``, ``nmi``,
        ``matched_accuracy``.
    """
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits

    from skiic import IICClustering
    from skiic._device import resolve_device
    from skiic.metrics import matched_accuracy, nmi

    out = sys.stdout if out is None else out
    X, y = load_digits(return_X_y=True)
    images = X.reshape(-1, 1, 8, 8)
    dev = resolve_device(device)
    print(
        f"skiic demo: {len(X)} digit images (8x8), 10 classes, device={dev}",
        file=out,
    )
    methods = [
        ("KMeans(10)", lambda: KMeans(10, n_init=10, random_state=random_state), X),
        (
            "IICClustering(10)",
            lambda: IICClustering(10, device=device, random_state=random_state),
            images,
        ),
    ]
    rows = []
    for name, make, data in methods:
        start = time.perf_counter()
        labels = make().fit_predict(data)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "method": name,
                "seconds": seconds,
                "nmi": nmi(y, labels),
                "matched_accuracy": matched_accuracy(y, labels),
            }
        )
    print(f"{'method':<20}{'time (s)':>10}{'NMI':>8}{'accuracy':>10}", file=out)
    for row in rows:
        print(
            f"{row['method']:<20}{row['seconds']:>10.1f}{row['nmi']:>8.3f}"
            f"{row['matched_accuracy']:>10.3f}",
            file=out,
        )
    return rows


def _demo(args: argparse.Namespace) -> int:
    demo(random_state=args.random_state, device=args.device)
    return 0


def cluster(args: argparse.Namespace, out=None) -> int:
    """Run ``skiic cluster`` with parsed arguments; return the exit status."""
    out = sys.stdout if out is None else out
    X, labels_true, source = read_data(
        args.data, key=args.key, labels=args.labels is None
    )
    if args.labels is not None:
        labels_true = read_labels(args.labels, args.data, n_samples=X.shape[0])
        source_labels = args.labels
    else:
        source_labels = f"{args.data} (array 'y')" if labels_true is not None else None
    # Before training, rather than after it when the scores are due.
    if labels_true is not None and labels_true.shape[0] != X.shape[0]:
        raise InputError(
            f"{source_labels} has {labels_true.shape[0]} labels for "
            f"{X.shape[0]} samples."
        )
    if args.method == "ae-kmeans" and args.n_clusters > X.shape[0]:
        # KMeans would say so only after the autoencoder's training.
        raise InputError(
            f"n_samples={X.shape[0]} should be >= n_clusters={args.n_clusters}."
        )
    labels_path = out_path(args.out, args.data, _labels_file(args.labels))
    with _estimator_errors(source):
        input_shape = _image_shape(X, args.input_shape)
    kind = f"images of shape {input_shape}" if input_shape else "vectors"
    print(
        f"read {source}: {X.shape[0]} samples, {kind}"
        + ("" if input_shape else f" of {X.shape[1]} features"),
        file=out,
    )
    if source_labels is not None:
        print(f"labels from {source_labels}", file=out)

    model = build_model(args, input_shape if X.ndim == 2 else None)
    print(f"fitting {METHODS[args.method]} with {args.n_clusters} clusters", file=out)
    out.flush()
    start = time.perf_counter()
    with _estimator_errors(source):  # NaN, too few samples, a bad --device ...
        labels = np.asarray(model.fit_predict(X))
    seconds = time.perf_counter() - start

    found, sizes = np.unique(labels, return_counts=True)
    print(f"done in {seconds:.1f} s: {found.size} clusters found", file=out)
    print("cluster sizes: " + " ".join(str(size) for size in sizes), file=out)
    if labels_path is not None:  # before the scores: the fit's result is kept
        np.save(labels_path, labels)
        print(f"labels written to {labels_path}", file=out)
    if labels_true is not None:
        from skiic.metrics import matched_accuracy, nmi

        accuracy = matched_accuracy(labels_true, labels)
        print(f"NMI: {nmi(labels_true, labels):.3f}", file=out)
        print(f"matched accuracy: {accuracy:.3f}", file=out)
    return 0


def build_model(args: argparse.Namespace, flat_images=None):
    """The estimator that ``--method`` names, configured from the arguments.

    ``flat_images`` is the ``(C, H, W)`` of flat image rows, else ``None``.
    """
    common = {
        "max_epochs": args.max_epochs,
        "device": args.device,
        "random_state": args.random_state,
        "verbose": int(args.verbose),
    }
    if args.method == "iic":
        from skiic import IICClustering

        return IICClustering(args.n_clusters, input_shape=flat_images, **common)
    if args.method == "deepcluster":
        from skiic import DeepClusterEstimator

        return DeepClusterEstimator(args.n_clusters, input_shape=flat_images, **common)
    from sklearn.cluster import KMeans
    from sklearn.pipeline import make_pipeline

    from skiic import AutoEncoderEmbedder

    return make_pipeline(
        AutoEncoderEmbedder(
            n_components=args.n_components, input_shape=flat_images, **common
        ),
        KMeans(args.n_clusters, n_init=10, random_state=args.random_state),
    )


# ------------------------------------------------------------------ helpers
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skiic",
        description=(
            "Deep clustering with the scikit-learn API. Without a command, run "
            "the demo: IICClustering next to KMeans on scikit-learn's digits."
        ),
        epilog="Run 'skiic cluster --help' for the options of clustering a file.",
    )
    from skiic import __version__

    parser.add_argument("--version", action="version", version=f"skiic {__version__}")
    # --random-state and --device also count before a command: the command's
    # own options default to SUPPRESS, so they do not overwrite these.
    parser.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="N",
        help="seed of the demo, or of a command given after it (default 0)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device of the demo, or of a command given after it (default auto)",
    )
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    run = commands.add_parser(
        "cluster",
        help="cluster the samples of a .npy, .npz or .csv file",
        description=(
            "Cluster the samples (rows) of DATA and print the time, the clusters "
            "found and, given labels, NMI and matched accuracy. 2-D data are "
            "vectors, or flat images with --input-shape; 3-D (n, H, W) and 4-D "
            "(n, C, H, W) data are images."
        ),
    )
    run.set_defaults(command="cluster")
    run.add_argument("data", metavar="DATA", help="a .npy, .npz or .csv/.txt file")
    run.add_argument(
        "--n-clusters",
        "-k",
        type=_positive_int,
        required=True,
        metavar="K",
        help="number of clusters (required)",
    )
    run.add_argument(
        "--method",
        choices=list(METHODS),
        default="iic",
        help="iic (IICClustering, default), deepcluster (DeepClusterEstimator) "
        "or ae-kmeans (AutoEncoderEmbedder then KMeans)",
    )
    run.add_argument(
        "--input-shape",
        type=_shape,
        metavar="C,H,W",
        help="shape of one image when DATA holds flat images, e.g. 1,28,28",
    )
    run.add_argument(
        "--key",
        metavar="NAME",
        help="array of a .npz DATA to cluster (default: its only array, or X)",
    )
    run.add_argument(
        "--labels",
        metavar="LABELS",
        help="true classes, to score the clusters: a .npy, .npz or .csv file, "
        "or the name of an array in a .npz DATA (default: its array y, if any)",
    )
    run.add_argument(
        "--out", "-o", metavar="FILE", help="write the labels here (np.save, .npy)"
    )
    run.add_argument(
        "--n-components",
        type=_positive_int,
        default=10,
        metavar="N",
        help="code width of the autoencoder of ae-kmeans (default 10)",
    )
    run.add_argument(
        "--max-epochs",
        type=_max_epochs,
        default="auto",
        metavar="N",
        help="training epochs (default auto)",
    )
    run.add_argument(
        "--random-state",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="seed (default 0)",
    )
    run.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        help="torch device, e.g. cpu or cuda (default auto)",
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="show training progress per epoch"
    )
    return parser


def _run(command, args) -> int:
    """Run ``command(args)``; report known failures in one line on stderr."""
    try:
        return command(args)
    except InputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ValueError as exc:
        # scikit-learn's and skiic's input validation outside a fit (the
        # demo's device ...): the message names the problem.
        return _fail(str(exc), EXIT_USAGE)
    except RuntimeError as exc:
        from skiic.exceptions import TrainingError  # imports scikit-learn

        if not isinstance(exc, TrainingError):
            raise
        return _fail(f"training failed: {exc}", EXIT_TRAINING)
    except MemoryError:
        return _fail("out of memory; try a smaller data set or --device cuda", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _labels_file(spec: str | None) -> str | None:
    """The file ``--labels`` names, or None (none given, or an array name)."""
    return spec if spec is not None and Path(spec).exists() else None


def _fail(message: str, status: int) -> int:
    line = " ".join(str(message).split())  # one line, whatever the message
    print(f"skiic: error: {line}", file=sys.stderr)
    return status


@contextmanager
def _estimator_errors(source: str):
    """Report the estimators' own input checks on ``source`` as an InputError.

    Their ValueError or TypeError (NaN or infinity, fewer samples than
    clusters, ``--input-shape`` that does not fit, an unknown device) becomes
    one line: its first, as scikit-learn adds advice for other uses below it.
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise InputError(f"cannot cluster {source}: {lines[0]}") from None


def _image_shape(X, input_shape):
    """``(C, H, W)`` of image samples, else ``None``, as the estimators see them."""
    from skiic._validation import check_image_shape

    given_shape = {3: (1, *X.shape[1:]), 4: tuple(X.shape[1:])}.get(X.ndim)
    n_features = int(np.prod(X.shape[1:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit warns again, once is enough
        return check_image_shape(input_shape, given_shape, n_features)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _max_epochs(text: str):
    return "auto" if text == "auto" else _positive_int(text)


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected three positive integers C,H,W such as 1,28,28; got {text!r}"
        )
    return shape
