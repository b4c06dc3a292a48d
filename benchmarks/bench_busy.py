"""IICClustering quiet and next to other CPU-bound processes: the thread policy.

Examples::

    python benchmarks/bench_busy.py                          # the README demo's fit
    python benchmarks/bench_busy.py --threads auto none --busy 0 1 --seeds 0
    python benchmarks/bench_busy.py --max-epochs 20          # a shorter fit

Each run fits ``IICClustering(10)`` on the digits images (as the README demo
does) with ``n_threads`` set to each of ``--threads`` ("none" keeps torch's
own setting, all cores), while ``--busy`` other processes spin on the CPU.
KMeans from the same run is the baseline. The busy processes are started
before and stopped after each fit.
"""

from __future__ import annotations

import multiprocessing
import time

from _common import (
    base_parser,
    command_line,
    device_name,
    kmeans_run,
    load,
    score_row,
    summarise,
    warm_up,
    write_json,
)

from skiic import IICClustering


def _spin():
    while True:
        pass


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.set_defaults(seeds=[0])
    parser.add_argument("--threads", nargs="+", default=["auto", "none"])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-epochs", default="auto")
    args = parser.parse_args(argv)

    X, y, name = load(args.data, args.n_samples)
    extra = {} if args.max_epochs == "auto" else {"max_epochs": int(args.max_epochs)}
    rows = []
    warm_up(lambda: IICClustering(10, max_epochs=1, device=args.device), X)
    for seed in args.seeds:
        rows.append(kmeans_run(seed, X.reshape(len(X), -1), y))
        for busy in args.busy:
            for threads in args.threads:
                n_threads = None if threads == "none" else threads
                if n_threads not in (None, "auto"):
                    n_threads = int(n_threads)
                spinners = [multiprocessing.Process(target=_spin) for _ in range(busy)]
                for spinner in spinners:
                    spinner.start()
                time.sleep(0.5)  # let them get going
                try:
                    model = IICClustering(
                        10,
                        n_threads=n_threads,
                        device=args.device,
                        random_state=seed,
                        **extra,
                    )
                    start = time.perf_counter()
                    labels = model.fit_predict(X)
                    seconds = time.perf_counter() - start
                finally:
                    for spinner in spinners:
                        spinner.terminate()
                        spinner.join()
                method = f"IIC n_threads={threads}, {busy} busy"
                rows.append(score_row(method, seed, seconds, labels, y))
    device = device_name(args.device)
    summarise(rows, name, device, command_line())
    write_json(args.json, rows, data=name, device=device, command=command_line())


if __name__ == "__main__":
    main()
