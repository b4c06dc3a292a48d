"""Shared helpers of the benchmark scripts: data, timing and the results table."""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skiic.metrics import matched_accuracy, nmi  # noqa: E402

DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist.npz"


def base_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data",
        default="digits",
        help="'digits' (bundled with scikit-learn) or the path of mnist.npz "
        f"(e.g. {DEFAULT_MNIST})",
    )
    parser.add_argument("--n-samples", type=int, default=None, help="random subset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="also write the runs here")
    return parser


def load(data, n_samples=None):
    """Images (n, 1, H, W) as float32 and labels, plus a short name of the data set."""
    if data == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X.reshape(-1, 1, 8, 8)
        if n_samples is not None:
            rng = np.random.default_rng(0)
            keep = np.sort(rng.choice(len(X), n_samples, replace=False))
            X, y = X[keep], y[keep]
        name = f"digits ({len(X):,} 8x8)"
    else:
        from skiic.datasets import load_mnist

        X, y = load_mnist(data, n_samples=n_samples, random_state=0)
        name = f"MNIST ({len(X):,} 28x28)"
    return X.astype(np.float32), y, name


def resolve_device(device="auto"):
    """``"auto"``: CUDA when available, else the CPU; any other string as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def device_name(device):
    """A readable name of the device that ``device`` (an estimator's setting) means."""
    import torch

    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def warm_up(make, X, n_samples=256):
    """Fit ``make()`` once, untimed, on the first ``n_samples`` of ``X``: the
    first fit of a process pays about a second of start-up (lazy imports,
    torch's first kernels), which would go to whichever method runs first."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-epoch fit warns that it learned little
        make().fit(X[:n_samples])


def timed_run(method, seed, make, X, y):
    """Fit ``make()`` on X, return a row with time and the two scores."""
    start = time.perf_counter()
    labels = make().fit_predict(X)
    return score_row(method, seed, time.perf_counter() - start, labels, y)


def score_row(method, seed, seconds, labels, y, note="", **extra):
    """A result row (time, NMI, matched accuracy, ``extra``), printed as it comes."""
    row = {
        "method": method,
        "seed": seed,
        "seconds": seconds,
        "nmi": nmi(y, labels),
        "matched_accuracy": matched_accuracy(y, labels),
        "n_clusters_used": int(len(np.unique(labels))),
        **extra,
    }
    print(
        f"  {method:<34} seed {seed}: {seconds:7.1f} s  NMI {row['nmi']:.3f}  "
        f"acc {row['matched_accuracy']:.3f}{note}",
        flush=True,
    )
    return row


def kmeans_run(seed, flat, y):
    """The baseline of every table: ``KMeans(10, n_init=10)`` on the flat samples."""
    from sklearn.cluster import KMeans

    return timed_run(
        "KMeans(10)", seed, lambda: KMeans(10, n_init=10, random_state=seed), flat, y
    )


def baseline_runs(seed, n_pca, flat, y):
    """``KMeans(10)`` and ``PCA(n_pca) + KMeans(10)`` on the flat samples."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    def kmeans():
        return KMeans(10, n_init=10, random_state=seed)

    return [
        kmeans_run(seed, flat, y),
        timed_run(
            f"PCA({n_pca}) + KMeans(10)",
            seed,
            lambda: make_pipeline(PCA(n_pca, random_state=seed), kmeans()),
            flat,
            y,
        ),
    ]


def command_line():
    """The command that is running, to print with its results."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def summarise(rows, data_name, device, command, time_label="fit time"):
    """Print one markdown table: median [min, max] over seeds per method."""
    print(f"\nData: {data_name}; device: {device}\nCommand: `{command}`\n")
    print(
        f"| method | runs | {time_label} (s), median | NMI, median [min, max] "
        "| matched accuracy, median [min, max] |"
    )
    print("|---|---|---|---|---|")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        t = statistics.median(r["seconds"] for r in mine)
        n = [r["nmi"] for r in mine]
        a = [r["matched_accuracy"] for r in mine]
        print(
            f"| {method} | {len(mine)} | {t:.1f} | {statistics.median(n):.3f} "
            f"[{min(n):.3f}, {max(n):.3f}] | {statistics.median(a):.3f} "
            f"[{min(a):.3f}, {max(a):.3f}] |"
        )


def print_neighbor_agreement(Z, y, n_neighbors=10):
    """Print the share of each sample's nearest neighbours in ``Z`` with its label.

    The neighbours are :func:`skiic.augment.nearest_neighbors` (Euclidean,
    the sample itself excluded by index, so exact duplicates count as each
    other's neighbours): the graph IICClustering pairs vectors with (below
    5,000 samples by default, or with ``n_neighbors > 0``) where no row is
    repeated; IICClustering searches among the distinct rows only.
    """
    import torch

    from skiic.augment import nearest_neighbors

    neighbors = nearest_neighbors(torch.as_tensor(Z, dtype=torch.float32), n_neighbors)
    neighbors = neighbors.numpy()
    share = float(np.mean(y[neighbors] == y[:, None]))
    print(
        f"  neighbour graph: {share:.3f} of the {n_neighbors} nearest neighbours "
        f"share the sample's label (labels used for this line only)",
        flush=True,
    )
    return share


def write_json(path, rows, **meta):
    if path:
        Path(path).write_text(json.dumps({"meta": meta, "runs": rows}, indent=1))
