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
from pathlib import Path

import numpy as np

__all__ = ["demo", "main"]

METHODS = {
    "iic": "IICClustering",
    "deepcluster": "DeepClusterEstimator",
    "ae-kmeans": "AutoEncoderEmbedder + KMeans",
}
DATA_SUFFIXES = (".npy", ".npz", ".csv", ".txt")
EXIT_USAGE, EXIT_TRAINING = 2, 1


class InputError(Exception):
    """A problem with the command's input, reported as one line."""


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
    return _run(cluster if args.command == "cluster" else _demo, args)


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
    from skiic._engine import resolve_device
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
    from skiic.metrics import matched_accuracy, nmi

    out = sys.stdout if out is None else out
    X, labels_true, source = read_data(args.data, key=args.key)
    if args.labels is not None:
        labels_true = read_labels(args.labels, args.data)
        source_labels = args.labels
    else:
        source_labels = f"{args.data} (array 'y')" if labels_true is not None else None
    X, input_shape = check_samples(X, args.input_shape, name=args.data)
    if labels_true is not None and labels_true.shape[0] != X.shape[0]:
        raise InputError(
            f"{source_labels} has {labels_true.shape[0]} labels for "
            f"{X.shape[0]} samples."
        )
    out_path = _out_path(args.out)
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
    labels = np.asarray(model.fit_predict(X))
    seconds = time.perf_counter() - start

    found, sizes = np.unique(labels, return_counts=True)
    print(f"done in {seconds:.1f} s: {found.size} clusters found", file=out)
    print("cluster sizes: " + " ".join(str(size) for size in sizes), file=out)
    if labels_true is not None:
        accuracy = matched_accuracy(labels_true, labels)
        print(f"NMI: {nmi(labels_true, labels):.3f}", file=out)
        print(f"matched accuracy: {accuracy:.3f}", file=out)
    if out_path is not None:
        np.save(out_path, labels)
        print(f"labels written to {out_path}", file=out)
    return 0


def read_data(path: str, *, key: str | None = None):
    """Read samples from a .npy, .npz or .csv/.txt file.

    Returns ``(X, y, source)``: ``y`` is the npz array ``y`` when the file has
    one next to the data (else ``None``), ``source`` names what was read.
    """
    file = _existing(path)
    suffix = file.suffix.lower()
    if key is not None and suffix != ".npz":
        raise InputError(f"--key applies to .npz files only; {path} is {suffix}.")
    if suffix == ".npy":
        return _load_npy(file), None, path
    if suffix == ".npz":
        with _open_npz(file) as archive:
            names = list(archive.files)
            if key is None:
                key = _default_key(names, path)
            elif key not in names:
                raise InputError(
                    f"{path} has no array {key!r}; it holds {_listing(names)}."
                )
            X = archive[key]
            y = archive["y"] if "y" in names and key != "y" else None
        return X, y, f"{path} (array {key!r})"
    if suffix in (".csv", ".txt"):
        return _load_text(file), None, path
    raise InputError(
        f"cannot read {path}: unsupported file type {suffix or '(none)'!r}; "
        f"use {', '.join(DATA_SUFFIXES)}."
    )


def read_labels(spec: str, data_path: str):
    """Labels from a file, or from an array of the data's .npz named ``spec``."""
    if Path(data_path).suffix.lower() == ".npz" and not Path(spec).exists():
        with _open_npz(_existing(data_path)) as archive:
            if spec in archive.files:
                return _as_labels(archive[spec], f"{data_path} (array {spec!r})")
            raise InputError(
                f"--labels {spec}: no such file, nor an array of {data_path} "
                f"(it holds {_listing(archive.files)})."
            )
    file = _existing(spec)
    suffix = file.suffix.lower()
    if suffix == ".npy":
        labels = _load_npy(file)
    elif suffix in (".csv", ".txt"):
        labels = _load_text(file)
    elif suffix == ".npz":
        with _open_npz(file) as archive:
            names = list(archive.files)
            key = "y" if "y" in names else _default_key(names, spec)
            labels = archive[key]
    else:
        raise InputError(
            f"cannot read labels from {spec}: unsupported file type {suffix!r}; "
            "use .npy, .npz or .csv."
        )
    return _as_labels(labels, spec)


def check_samples(X, input_shape, *, name):
    """Check the array and work out the image shape; return ``(X, shape)``."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise InputError(f"{name} must hold numbers; got dtype {X.dtype}.")
    if X.ndim not in (2, 3, 4):
        raise InputError(
            f"{name} holds an array of shape {X.shape}; expected 2-D "
            "(samples, features), 3-D (samples, H, W) or 4-D (samples, C, H, W)."
        )
    if X.shape[0] == 0 or X[0].size == 0:
        raise InputError(f"{name} holds no data (shape {X.shape}).")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        where = np.argwhere(~np.isfinite(X))[0]
        raise InputError(
            f"{name} contains NaN or infinity (first at sample {where[0]})."
        )
    sample_shape = (1, *X.shape[1:]) if X.ndim == 3 else tuple(X.shape[1:])
    if input_shape is not None:
        if X.ndim == 2 and int(np.prod(input_shape)) != X.shape[1]:
            raise InputError(
                f"--input-shape {_shape_text(input_shape)} needs "
                f"{int(np.prod(input_shape))} values per sample; {name} has "
                f"{X.shape[1]}."
            )
        if X.ndim > 2 and tuple(input_shape) != sample_shape:
            raise InputError(
                f"--input-shape {_shape_text(input_shape)} does not match the "
                f"images in {name}, of shape {_shape_text(sample_shape)}."
            )
        return X, tuple(input_shape)
    return X, (sample_shape if X.ndim > 2 else None)


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
    parser.add_argument(
        "--random-state", type=int, default=0, help="seed of the demo (default 0)"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device of the demo (default auto)"
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
        "--random-state", type=int, default=0, metavar="N", help="seed (default 0)"
    )
    run.add_argument(
        "--device", default="auto", help="torch device, e.g. cpu or cuda (default auto)"
    )
    run.add_argument(
        "--verbose", "-v", action="store_true", help="show training progress per epoch"
    )
    return parser


def _run(command, args) -> int:
    """Run ``command(args)``; report known failures in one line on stderr."""
    from skiic.exceptions import TrainingError

    try:
        return command(args)
    except InputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except TrainingError as exc:
        return _fail(f"training failed: {exc}", EXIT_TRAINING)
    except ValueError as exc:
        # scikit-learn's and skiic's input validation: the message names the
        # problem (n_clusters > n_samples, an unknown device ...).
        return _fail(str(exc), EXIT_USAGE)
    except MemoryError:
        return _fail("out of memory; try a smaller data set or --device cuda", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(message: str, status: int) -> int:
    line = " ".join(str(message).split())  # one line, whatever the message
    print(f"skiic: error: {line}", file=sys.stderr)
    return status


def _existing(path: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise InputError(f"no such file: {path}")
    if file.is_dir():
        raise InputError(f"{path} is a directory, not a data file.")
    return file


def _load_npy(file: Path):
    _check_magic(file, b"\x93NUMPY", "a NumPy .npy file")
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {file} as .npy: {exc}") from None


def _open_npz(file: Path):
    _check_magic(file, b"PK", "a NumPy .npz (zip) file")
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {file} as .npz: {exc}") from None


def _check_magic(file: Path, magic: bytes, what: str) -> None:
    """Refuse a file that does not start as ``what`` does, before numpy reads it."""
    try:
        with open(file, "rb") as handle:
            start = handle.read(len(magic))
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from None
    if start != magic:
        raise InputError(f"cannot read {file}: it is not {what}.")


def _load_text(file: Path):
    """Numbers separated by commas (or whitespace), with an optional header."""
    try:
        with open(file, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {file} as text: {exc}") from None
    delimiter = "," if "," in first else None
    fields = [field.strip() for field in first.split(delimiter) if field.strip()]
    header = not any(_is_number(field) for field in fields)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            data = np.loadtxt(file, delimiter=delimiter, skiprows=int(header), ndmin=2)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read numbers from {file}: {exc}") from None
    if data.size == 0:
        raise InputError(f"{file} holds no data.")
    return data


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _default_key(names: list[str], path: str) -> str:
    if len(names) == 1:
        return names[0]
    if "X" in names:
        return "X"
    raise InputError(
        f"{path} holds {_listing(names)}; choose the data with --key NAME."
    )


def _as_labels(labels, source: str):
    labels = np.asarray(labels)
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise InputError(
            f"labels in {source} must be one column; got shape {labels.shape}."
        )
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise InputError(f"labels in {source} contain NaN or infinity.")
    return labels


def _listing(names) -> str:
    return "arrays " + ", ".join(repr(name) for name in names) if names else "nothing"


def _out_path(out: str | None) -> Path | None:
    if out is None:
        return None
    path = Path(out)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")  # what np.save would write
    if not path.parent.is_dir():
        raise InputError(f"cannot write {out}: no directory {path.parent}.")
    return path


def _shape_text(shape) -> str:
    return ",".join(str(size) for size in shape)


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
