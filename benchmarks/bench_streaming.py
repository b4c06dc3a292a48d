"""Streaming overhead: IICClustering with the data resident on the device vs. streamed.

The same fit (same seed) twice: once with the training set copied to the device
whole, once with ``device_memory_limit=0``, which keeps it in host memory (or
in its memmap, with ``--memmap``) and sends pinned, prefetched batches. Prints
both wall times, their ratio, and whether the two runs agree.

Examples::

    python benchmarks/bench_streaming.py --data ../shared/data/mnist.npz --n-samples 10000
    python benchmarks/bench_streaming.py --data ../shared/data/mnist.npz --memmap   # GPU
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from _common import base_parser, command_line, device_name, load
from sklearn.decomposition import PCA

from skiic import IICClustering
from skiic.metrics import matched_accuracy, nmi


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["images", "pca"], default="images")
    parser.add_argument("--memmap", action="store_true", help="stream from a memmap")
    parser.add_argument("--max-epochs", default="auto")
    args = parser.parse_args(argv)
    X, y, name = load(args.data, args.n_samples)
    if args.model == "pca":
        X = (
            PCA(50, random_state=0)
            .fit_transform(X.reshape(len(X), -1))
            .astype(np.float32)
        )
    seed = args.seeds[0]
    max_epochs = args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs)
    print(f"{name}, {args.model}: device {device_name(args.device)}", flush=True)

    with tempfile.TemporaryDirectory() as folder:
        source = X
        if args.memmap:
            source = np.memmap(
                Path(folder, "X.dat"), dtype=X.dtype, mode="w+", shape=X.shape
            )
            source[:] = X
            source.flush()
        runs = {}
        for label, limit in [("resident", "auto"), ("streamed", 0)]:
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
            runs[label] = (model, seconds)
            print(
                f"  {label:<9} streamed_={model.streamed_!s:<5} {seconds:7.1f} s  "
                f"NMI {nmi(y, model.labels_):.3f}  acc {matched_accuracy(y, model.labels_):.3f}",
                flush=True,
            )
    (resident, t_res), (streamed, t_str) = runs["resident"], runs["streamed"]
    agree = np.mean(resident.labels_ == streamed.labels_)
    command = command_line()
    print(f"\nCommand: `{command}`")
    print(
        f"streamed / resident wall time: {t_str / t_res:.2f}  (labels agree on {agree:.1%})"
    )


if __name__ == "__main__":
    main()
