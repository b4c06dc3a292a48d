"""Which head does IICClustering select on vectors, and how good is each candidate?

A diagnostic, not a benchmark. For each seed it fits ``IICClustering(10)`` on
``PCA(--pca)`` of the images with the second view ``--augmentation``
(``adversarial``: ``VirtualAdversarial()``; ``neighbours``: the default
neighbour pairs) and ``--n-head-inits`` fresh heads, and prints, for the
estimator's own head selection, the loss and the matched accuracy of every
trained main sub-head, the lowest and median loss of the fresh heads, and
which candidate was selected. Labels score the candidates here only; the
estimator never sees them. The script wraps the estimator's private
``_select_head`` to see the candidates as ``fit`` ranks them.

Example::

    python benchmarks/head_selection.py --data ../shared/data/mnist.npz --seeds 0
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import base_parser, command_line, device_name, load, write_json
from sklearn.decomposition import PCA

from skiic import IICClustering, _engine, _iic
from skiic.augment import VectorAugmentation, VirtualAdversarial
from skiic.metrics import matched_accuracy

AUGMENTATIONS = {"adversarial": VirtualAdversarial, "neighbours": VectorAugmentation}


def diagnose(X, y, seed, args):
    """Fit once; return the selection's candidates with their accuracies."""
    seen = {}
    select = _iic._select_head

    def spy(module, data, views, **kwargs):
        selection = select(module, data, views, **kwargs)
        device = next(module.parameters()).device
        module.eval()
        with torch.no_grad():
            features = _engine.map_samples(
                lambda x: module.backbone(x).float(), data, device
            )
            logits = module.heads[0](features)
        seen["trained_accuracy"] = [
            matched_accuracy(y, head.argmax(dim=-1).cpu().numpy()) for head in logits
        ]
        seen["losses"] = selection.losses.tolist()
        return selection

    estimator = IICClustering(
        10,
        augmentation=AUGMENTATIONS[args.augmentation](),
        n_head_inits=args.n_head_inits,
        device=args.device,
        random_state=seed,
    )
    _iic._select_head = spy
    try:
        start = time.perf_counter()
        estimator.fit(X)
        seconds = time.perf_counter() - start
    finally:
        _iic._select_head = select
    n_trained = len(seen["trained_accuracy"])
    fresh = np.array(seen["losses"][n_trained:])
    return {
        "seed": seed,
        "seconds": seconds,
        "selected": estimator.best_head_,
        "selected_accuracy": matched_accuracy(y, estimator.labels_),
        "selected_loss": estimator.loss_,
        "trained_losses": seen["losses"][:n_trained],
        "trained_accuracy": seen["trained_accuracy"],
        "fresh_lowest_loss": float(fresh.min()) if len(fresh) else None,
        "fresh_median_loss": float(np.median(fresh)) if len(fresh) else None,
    }


def main(argv=None):
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--pca", type=int, default=50)
    parser.add_argument(
        "--augmentation", choices=list(AUGMENTATIONS), default="adversarial"
    )
    parser.add_argument("--n-head-inits", type=int, default=50)
    args = parser.parse_args(argv)
    images, y, name = load(args.data, args.n_samples)
    flat = images.reshape(len(images), -1)
    X = PCA(min(args.pca, flat.shape[1]), random_state=0).fit_transform(flat)
    device = device_name(args.device)
    print(f"{name}, PCA({X.shape[1]}), {args.augmentation}, device {device}")
    rows = []
    for seed in args.seeds:
        row = diagnose(X, y, seed, args)
        rows.append(row)
        trained = ", ".join(
            f"{acc:.3f} ({loss:.3f})"
            for acc, loss in zip(row["trained_accuracy"], row["trained_losses"])
        )
        fresh = (
            f"fresh heads: lowest loss {row['fresh_lowest_loss']:.3f}, median "
            f"{row['fresh_median_loss']:.3f}"
            if row["fresh_lowest_loss"] is not None
            else "no fresh heads"
        )
        print(
            f"seed {seed}: fit {row['seconds']:.1f} s; trained sub-heads, acc (loss): "
            f"{trained}; {fresh}; selected candidate {row['selected']}: acc "
            f"{row['selected_accuracy']:.3f} (loss {row['selected_loss']:.3f})",
            flush=True,
        )
    print(f"\nCommand: `{command_line()}`")
    write_json(args.json, rows, data=name, device=device, command=command_line())
    return rows


if __name__ == "__main__":
    main()
