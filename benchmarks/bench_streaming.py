"""Streaming overhead: IICClustering with the data resident on the device vs. streamed.

The same fit (same seed) twice: once with the training set copied to the device
whole, once with ``device_memory_limit=0``, which keeps it in host memory (or
in its memmap, with ``--memmap``) and sends pinned, prefetched batches. Prints
both wall times, their ratio, how far the two partitions agree (clusters
matched), and ``KMeans(10)`` on the flat samples from the same run, for each
seed (``--seeds``, by default 0).

Examples::

    python benchmarks/bench_streaming.py --data ../shared/data/mnist.npz --n-samples 10000
    python benchmarks/bench_streaming.py --data ../shared/data/mnist.npz --memmap   # GPU
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    base_parser,
    command_line,
    device_name,
    kmeans_run,
    load,
    score_row,
    summarise,
    timed_run,
    warm_up,
    write_json,
)
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from skiic import IICClustering
from skiic.metrics import matched_accuracy


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["images", "pca"], default="images")
    parser.add_argument("--memmap", action="store_true", help="stream from a memmap")
    parser.add_argument("--max-epochs", default="auto")
    parser.set_defaults(seeds=[0])
    args = parser.parse_args(argv)
    X, y, name = load(args.data, args.n_samples)
    flat = X.reshape(len(X), -1)
    if args.model == "pca":
        X = PCA(50, random_state=0).fit_transform(flat).astype(np.float32)
    max_epochs = args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs)
    device = device_name(args.device)
    print(f"{name}, {args.model}: device {device}", flush=True)

    rows, ratios, agreements = [], [], []
    warm_up(lambda: IICClustering(10, max_epochs=1, device=args.device), X)
    with tempfile.TemporaryDirectory() as folder:
        source = X
        if args.memmap:
            source = np.memmap(
                Path(folder, "X.dat"), dtype=X.dtype, mode="w+", shape=X.shape
            )
            source[:] = X
            source.flush()
        for seed in args.seeds:
            rows.append(kmeans_run(seed, flat, y))
            if args.model == "pca":
                # On the same PCA(50) data as IIC, fitted once, untimed for both.
                rows.append(
                    timed_run(
                        "PCA(50) + KMeans(10)", seed,
                        lambda: KMeans(10, n_init=10, random_state=seed), X, y,
                    )
                )  # fmt: skip
            runs = {}
            for path, limit in [("resident", "auto"), ("streamed", 0)]:
                model = IICClustering(
                    10,
                    device=args.device,
                    random_state=seed,
                    max_epochs=max_epochs,
                    device_memory_limit=limit,
                )
                start = time.perf_counter()
                model.fit(source)
                seconds = time.perf_counter() - start
                runs[path] = (model, seconds)
                rows.append(
                    score_row(
                        f"IICClustering(10), {path}", seed, seconds, model.labels_, y,
                        note=f"  streamed_={model.streamed_}",
                        streamed=bool(model.streamed_),
                    )
                )  # fmt: skip
            (resident, t_res), (streamed, t_str) = runs["resident"], runs["streamed"]
            ratios.append(t_str / t_res)
            # The same partition, whatever the cluster numbers: labels matched.
            agreements.append(matched_accuracy(resident.labels_, streamed.labels_))
    command = command_line()
    summarise(rows, f"{name}, {args.model}", device, command, "fit time")
    print(
        f"\nstreamed / resident wall time, median over {len(ratios)} seed(s): "
        f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]; "
        f"the two partitions agree on {min(agreements):.1%} of the samples or more"
    )
    write_json(
        args.json, rows, data=name, device=device, command=command,
        ratios=ratios, agreements=agreements,
    )  # fmt: skip


if __name__ == "__main__":
    main()
