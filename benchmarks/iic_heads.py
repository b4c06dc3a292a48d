"""Where does IICClustering's error come from: the features, or the head?

A diagnostic, not a benchmark. For each seed it fits ``IICClustering(10)``
with its defaults on the images, then, on the trained backbone frozen,
repeats the estimator's own head selection with more candidates and scores
every candidate against the labels:

* fresh ``n_clusters`` heads fitted by the IIC loss on cached views (as in
  ``fit``): the matched accuracy of the lowest-loss one, the median and the
  best, the loss of the best, and the Spearman correlation of loss and
  accuracy over the heads (negative: lower loss, higher accuracy);
* fresh heads with ``--overclustering`` times as many clusters: the purity of
  the lowest-loss one (each cluster counted as its majority class), i.e. how
  well the features separate the classes at a finer grain;
* ``KMeans(n_clusters)`` on the backbone features.

If some fresh heads are more accurate than the lowest-loss one, the IIC loss
on these features prefers the less accurate partition, and no selection by
loss can reach them: training has to change. Labels are used for the scores
printed here only; the estimator never sees them. The script calls the
estimator's private head-fitting helpers so that the candidates are fitted
exactly as in ``fit``.

Example::

    python benchmarks/iic_heads.py --data ../shared/data/mnist.npz \\
        --n-samples 10000 --seeds 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import base_parser, command_line, device_name, load, write_json
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.metrics.cluster import contingency_matrix

from skiic import IICClustering, _engine, _iic
from skiic.metrics import matched_accuracy
from skiic.networks import ClusteringHeads


def purity(y, labels):
    """Share of samples in their cluster's majority class."""
    return float(contingency_matrix(y, labels).max(axis=0).sum() / len(y))


def fresh_heads(estimator, module, data, views, cached, features, n_clusters, n_heads):
    """Losses and hard labels of ``n_heads`` fresh heads on the frozen backbone.

    ``cached`` holds the backbone features of view pairs (``_embed_views``).
    """
    firsts, partners = cached
    heads = ClusteringHeads(features.shape[1], n_clusters, n_heads).to(features.device)
    _iic._fit_heads(heads, firsts, partners, alpha=estimator.alpha)
    losses = _iic._evaluate_heads(module, [heads], data, views, estimator.alpha)
    with torch.no_grad():
        labels = heads(features).argmax(dim=-1).cpu().numpy()
    return losses, labels


def diagnose(X, y, seed, args):
    estimator = IICClustering(
        args.n_clusters,
        max_epochs=args.max_epochs,
        device=args.device,
        random_state=seed,
    )
    start = time.perf_counter()
    estimator.fit(X)
    fit_time = time.perf_counter() - start
    device = _engine.resolve_device(args.device)
    torch.manual_seed(seed)
    data = estimator._place(X.reshape(len(X), -1), device)
    views = _iic._Views(None, estimator._resolve_augmentation(estimator.input_shape_))
    module = estimator.module_.to(device).eval()
    features = _engine.map_samples(lambda x: module.backbone(x).float(), data, device)
    idx = torch.arange(data.n_samples, device=data.index_device)
    cached = _iic._embed_views(module, data, views, idx, device)

    row = {
        "seed": seed,
        "fit_time": fit_time,
        "selected_accuracy": matched_accuracy(y, estimator.labels_),
        "selected_loss": estimator.loss_,
    }
    losses, labels = fresh_heads(
        estimator, module, data, views, cached, features, args.n_clusters, args.n_fresh
    )
    accuracies = np.array([matched_accuracy(y, lab) for lab in labels])
    lowest, best = int(np.argmin(losses)), int(np.argmax(accuracies))
    row.update(
        fresh_lowest_loss_accuracy=float(accuracies[lowest]),
        fresh_median_accuracy=float(np.median(accuracies)),
        fresh_best_accuracy=float(accuracies[best]),
        fresh_best_loss=float(losses[best]),
        fresh_lowest_loss=float(losses[lowest]),
        loss_accuracy_spearman=float(spearmanr(losses, accuracies).statistic),
    )
    k = args.overclustering * args.n_clusters
    losses, labels = fresh_heads(
        estimator, module, data, views, cached, features, k, args.n_fresh
    )
    row[f"purity_{k}"] = purity(y, labels[int(np.argmin(losses))])
    kmeans = KMeans(args.n_clusters, n_init=10, random_state=seed)
    row["kmeans_features_accuracy"] = matched_accuracy(
        y, kmeans.fit_predict(features.cpu().numpy())
    )
    return row


def main(argv=None):
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--n-clusters", type=_at_least(2), default=10)
    parser.add_argument(
        "--n-fresh", type=_at_least(1), default=20, help="fresh heads per size"
    )
    parser.add_argument("--overclustering", type=_at_least(2), default=5)
    parser.add_argument("--max-epochs", default="auto", type=_epochs)
    args = parser.parse_args(argv)
    X, y, name = load(args.data, args.n_samples)
    device = device_name(args.device)
    print(f"{name}, device {device}", flush=True)
    rows = []
    for seed in args.seeds:
        row = diagnose(X, y, seed, args)
        rows.append(row)
        k = args.overclustering * args.n_clusters
        print(
            f"seed {seed}: fit {row['fit_time']:.1f} s; selected head acc "
            f"{row['selected_accuracy']:.3f} (loss {row['selected_loss']:.3f})\n"
            f"  {args.n_fresh} fresh {args.n_clusters}-cluster heads: acc of the "
            f"lowest-loss head {row['fresh_lowest_loss_accuracy']:.3f} (loss "
            f"{row['fresh_lowest_loss']:.3f}), median {row['fresh_median_accuracy']:.3f}, "
            f"best {row['fresh_best_accuracy']:.3f} (loss {row['fresh_best_loss']:.3f}); "
            f"Spearman(loss, acc) {row['loss_accuracy_spearman']:.2f}\n"
            f"  purity of the lowest-loss {k}-cluster head {row[f'purity_{k}']:.3f}; "
            f"KMeans({args.n_clusters}) on the backbone features: acc "
            f"{row['kmeans_features_accuracy']:.3f}",
            flush=True,
        )
    print(f"\nCommand: `{command_line()}`")
    if args.json:
        write_json(args.json, rows, data=name, device=device, command=command_line())
    return rows


def _at_least(low):
    def parse(value):
        number = int(value)
        if number < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return number

    return parse


def _epochs(value):
    return value if value == "auto" else _at_least(1)(value)


if __name__ == "__main__":
    main()
