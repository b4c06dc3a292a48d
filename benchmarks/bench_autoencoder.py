"""AutoEncoderEmbedder(10) + KMeans next to PCA(10) + KMeans and KMeans.

Wall time, NMI and matched accuracy over seeds. The time of the autoencoder row
covers ``fit``, ``transform`` and the KMeans after it; the time of
``AutoEncoderEmbedder.fit`` alone is printed (and stored) as well.

Examples::

    python benchmarks/bench_autoencoder.py                                   # digits
    python benchmarks/bench_autoencoder.py --data ../shared/data/mnist.npz   # 70k, GPU
    python benchmarks/bench_autoencoder.py --data ../shared/data/mnist.npz \\
        --n-samples 10000 --max-epochs 10 --seeds 0

The autoencoder sees images (n, 1, H, W) and so gets the convolutional encoder
and decoder; PCA and KMeans see the flattened pixels.
"""

from __future__ import annotations

import time

from _common import (
    base_parser,
    baseline_runs,
    command_line,
    device_name,
    load,
    score_row,
    summarise,
    write_json,
)
from sklearn.cluster import KMeans

from skiic import AutoEncoderEmbedder


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--max-epochs", default="auto")
    args = parser.parse_args(argv)

    X, y, name = load(args.data, args.n_samples)
    flat = X.reshape(len(X), -1)
    k = args.n_components
    extra = {}
    if args.max_epochs != "auto":
        extra["max_epochs"] = int(args.max_epochs)

    device = device_name(args.device)
    print(f"{name}: {len(X)} samples, device {device}", flush=True)
    rows = []
    for seed in args.seeds:
        rows += baseline_runs(seed, k, flat, y)
        rows.append(autoencoder_run(k, seed, args.device, extra, X, y))

    command = command_line()
    # The embedder's rows time fit, transform and the KMeans after them.
    summarise(rows, name, device, command, time_label="time")
    ae_rows = [r for r in rows if "fit_seconds" in r]
    fits = ", ".join(f"{r['fit_seconds']:.1f}" for r in ae_rows)
    epochs = ", ".join(str(r["epochs"]) for r in ae_rows)
    print(f"\nAutoEncoderEmbedder.fit alone, per seed: {fits} s ({epochs} epochs)")
    write_json(args.json, rows, data=name, device=device, command=command)


def autoencoder_run(k, seed, device, extra, X, y):
    """AutoEncoderEmbedder(k) + KMeans(10), with the embedder's fit timed alone."""
    method = f"AutoEncoderEmbedder({k}) + KMeans(10)"
    start = time.perf_counter()
    embedder = AutoEncoderEmbedder(k, device=device, random_state=seed, **extra)
    embedder.fit(X)
    fit_seconds = time.perf_counter() - start
    labels = KMeans(10, n_init=10, random_state=seed).fit_predict(embedder.transform(X))
    seconds = time.perf_counter() - start
    mse = -embedder.score(X)
    note = (
        f"  (fit {fit_seconds:.1f} s, {embedder.n_iter_} epochs, "
        f"reconstruction MSE {mse:.2f})"
    )
    return score_row(
        method,
        seed,
        seconds,
        labels,
        y,
        note,
        fit_seconds=fit_seconds,
        epochs=embedder.n_iter_,
        reconstruction_mse=mse,
    )


if __name__ == "__main__":
    main()
