"""Prototype: virtual adversarial second views for clustering PCA vectors.

Examples::

    python benchmarks/vat_views.py                                     # digits, CPU ok
    python benchmarks/vat_views.py --data ../shared/data/mnist.npz --seeds 0 1 2

An experiment, not part of the package. ``IICClustering`` draws the second
view of a vector from its nearest neighbours, and on MNIST after ``PCA(50)``
that stays near 0.70 matched accuracy (docs/benchmarks.md). This script trains
the same kind of MLP (``MLPBackbone``, hidden 512 and 512, one linear head of
10) on ``PCA(--pca)`` of the images with a second view made by virtual
adversarial training (VAT; Miyato et al.), as IMSAT does (Hu et al., 2017):
each sample is moved by ``eps`` in the direction that most changes the
network's prediction, with ``eps = --eps-scale`` times the sample's distance
to its 10th nearest neighbour. Objectives (``--objective``, repeatable):

* ``iic``: ``--lam`` times the IIC loss (``alpha``) of the pair (sample, its
  adversarial view) plus ``KL(p(x) || p(x_adv))``;
* ``imsat``: ``KL(p(x) || p(x_adv))`` plus ``--lam`` times
  ``H(Y|X) - 4 H(Y)`` on the batch (IMSAT's loss).

Each run prints time, NMI and matched accuracy of the head's argmax on all
samples, next to ``PCA + KMeans(10)`` from the same run. Labels score the runs
and nothing else.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext

import numpy as np
import torch
from _common import (
    base_parser,
    command_line,
    device_name,
    load,
    score_row,
    summarise,
    timed_run,
    write_json,
)
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import nn

from skiic._engine import resolve_device
from skiic.augment import VirtualAdversarial, _running_stats_kept, kl_divergence
from skiic.losses import iic_loss
from skiic.networks import MLPBackbone


def _entropy(p):
    return -(p * torch.log(p + 1e-8)).sum(dim=-1)


def adversarial_view(net, x, eps, xi=10.0):
    """``x`` moved by ``eps`` (per sample) along one power iteration of VAT.

    ``skiic.augment.VirtualAdversarial.perturb`` through a plain callable, so
    its passes update BatchNorm's running statistics unless the caller keeps
    them (``train`` with ``bn="clean"``; see docs/benchmarks.md, "Virtual
    adversarial views for vectors").
    """
    return VirtualAdversarial(xi=xi).perturb(lambda z: [net(z)], x, eps)


def _predict(net, data):
    net.eval()
    with torch.no_grad():
        return torch.cat([net(c).argmax(1) for c in data.split(8192)]).cpu().numpy()


def probe_statistics(net, data, batch_size, xi=10.0, seed=0):
    """Labels of ``net`` with running statistics re-estimated the contaminated way.

    A copy of ``net`` whose BatchNorm layers average (cumulatively) the
    batch statistics of the clean batches and of probe batches, ``x + xi *
    d`` with ``d`` a random unit direction; the weights stay as trained. An
    approximation of what training with ``bn="contaminated"`` accumulates (a
    moving average over four passes per step: clean, probe, clean and
    adversarial), which weighs the probe passes less.
    """
    probe_net = copy.deepcopy(net)
    for module in probe_net.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.reset_running_stats()
            module.momentum = None
    generator = torch.Generator(device=data.device).manual_seed(seed)
    probe_net.train()
    with torch.no_grad():
        for x in data.split(batch_size):
            probe_net(x)
            d = torch.randn(x.shape, generator=generator, device=x.device)
            probe_net(x + xi * d / d.norm(dim=1, keepdim=True))
    return _predict(probe_net, data)


def train(
    X, *, objective, eps_scale, lam, alpha, epochs, batch_size, lr, seed, device, bn
):
    """Train one network on the scaled vectors ``X``; return it and the data."""
    torch.manual_seed(seed)
    data = torch.as_tensor(X, device=device)
    eps = VirtualAdversarial(eps=eps_scale, n_neighbors=10).radius(data)
    backbone = MLPBackbone(data.shape[1], (512, 512))
    net = nn.Sequential(backbone, nn.Linear(backbone.out_features, 10)).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    # With bn="clean" only the clean batches set the running statistics, as
    # in IMSAT's code.
    kept = _running_stats_kept if bn == "clean" else (lambda _: nullcontext())
    n = len(data)
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n, device=device)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            x = data[idx]
            with kept(net):
                x_adv = adversarial_view(net, x, eps[idx])
            logits = net(x)
            with kept(net):
                logits_adv = net(x_adv)
            consistency = kl_divergence(logits.detach(), logits_adv)
            p = logits.softmax(dim=1)
            if objective == "iic":
                cluster = iic_loss(p, logits_adv.softmax(dim=1), alpha=alpha).sum()
            else:
                cluster = _entropy(p).mean() - 4.0 * _entropy(p.mean(dim=0))
            loss = consistency + lam * cluster
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return net, data


def main(argv=None):
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--objective", action="append", choices=["iic", "imsat"], default=None
    )
    parser.add_argument("--pca", type=int, default=50)
    parser.add_argument("--eps-scale", type=float, default=0.5)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--bn",
        choices=["contaminated", "clean"],
        default="contaminated",
        help="whether the VAT passes update BatchNorm's running statistics "
        "(contaminated, as the first figures) or only the clean batches do; "
        "with clean, the network is also scored with contaminated statistics "
        "re-estimated after training",
    )
    args = parser.parse_args(argv)
    objectives = args.objective or ["iic", "imsat"]

    X, y, name = load(args.data, args.n_samples)
    flat = X.reshape(len(X), -1)
    n_pca = min(args.pca, flat.shape[1])
    device = resolve_device(args.device)
    dev_name = device_name(args.device)
    print(f"{name}; device: {dev_name}", flush=True)
    rows = []
    for seed in args.seeds:
        vectors = PCA(n_pca, random_state=seed).fit_transform(flat)
        vectors -= vectors.mean(axis=0)
        vectors = (vectors / np.sqrt(vectors.var(axis=0).mean())).astype(np.float32)
        rows.append(
            timed_run(
                f"PCA({n_pca}) + KMeans(10)",
                seed,
                lambda: KMeans(10, n_init=10, random_state=seed),
                vectors,
                y,
            )
        )
        for objective in objectives:
            start = time.perf_counter()
            net, data = train(
                vectors,
                objective=objective,
                eps_scale=args.eps_scale,
                lam=args.lam,
                alpha=args.alpha,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=seed,
                device=device,
                bn=args.bn,
            )
            labels = _predict(net, data)
            seconds = time.perf_counter() - start
            method = f"PCA({n_pca}) + VAT views, {objective}"
            if args.bn == "clean":
                method += ", clean BN"
            rows.append(score_row(method, seed, seconds, labels, y))
            if args.bn == "clean":
                start = time.perf_counter()
                labels = probe_statistics(net, data, args.batch_size, seed=seed)
                seconds = time.perf_counter() - start
                method = f"  same net, probe statistics ({objective})"
                rows.append(score_row(method, seed, seconds, labels, y))
    summarise(rows, name, dev_name, command_line(), time_label="time")
    write_json(args.json, rows, data=name, device=dev_name, command=command_line())


if __name__ == "__main__":
    main()
