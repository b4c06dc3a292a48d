"""IIC's head selection: the candidate heads and their losses on the training data.

After training, the main sub-heads trained with the network and ``n_head_inits``
fresh linear heads fitted on its frozen features compete; the lowest IIC loss
on the training data wins (never labels).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from . import _data, _device
from .losses import iic_loss, iic_loss_from_joint, soft_assignments
from .networks import ClusteringHeads

# Views cached per sample, and the fit of the fresh heads.
_CACHED_VIEWS, _HEAD_STEPS, _HEAD_BATCH, _HEAD_LR = 4, 300, 1024, 1e-2
_HEAD_FIT_SAMPLES = 50_000


class Selection(NamedTuple):
    head: ClusteringHeads  # the selected head, a single sub-head
    loss: float  # its loss
    losses: np.ndarray  # loss of every candidate: trained sub-heads, then fresh heads


def select_head(module, data, views, *, alpha, n_head_inits, device):
    """Pick the clustering head with the lowest loss on the training data.

    Candidates are the main sub-heads trained with the network and
    ``n_head_inits`` fresh linear heads fitted by the same loss on the frozen
    features of several random views (cheap: the features are computed once,
    for at most ``_HEAD_FIT_SAMPLES`` samples). Heads trained jointly with the
    backbone often settle in poor local optima that a fresh head on the same
    features escapes, and across heads the loss tracks clustering quality
    closely, so the loss chooses. Every candidate is scored on all samples
    against the same second views.
    """
    trained = module.heads[0]
    candidates = [trained]
    if n_head_inits:
        n = data.n_samples
        fit_idx = torch.arange(n, device=data.index_device)
        if n > _HEAD_FIT_SAMPLES:
            fit_idx = torch.randperm(n, device=data.index_device)[:_HEAD_FIT_SAMPLES]
        firsts, partners = _embed_views(module, data, views, fit_idx, device)
        width = firsts.shape[-1]
        fresh = ClusteringHeads(width, trained.n_outputs, n_head_inits).to(device)
        _fit_heads(fresh, firsts, partners, alpha=alpha)
        del firsts, partners
        candidates.append(fresh)
    losses = evaluate_heads(module, candidates, data, views, alpha)
    best = int(np.argmin(losses))
    which, index = (0, best) if best < trained.n_heads else (1, best - trained.n_heads)
    head = _single_head(candidates[which], index)
    return Selection(head, float(losses[best]), losses)


@torch.no_grad()
def _embed_views(module, data, views, fit_idx, device):
    """Backbone features (float32) of ``_CACHED_VIEWS`` random view pairs.

    Returns ``firsts`` and ``partners``, each (n_views, len(fit_idx), width):
    the first views of the samples ``fit_idx`` and the second views of their
    partners (adversarial views are computed against ``module``'s heads).
    """
    module.eval()
    backbone = module.backbone
    amp_dtype = _device.autocast_dtype(device)
    firsts, partners = [], []
    for idx in fit_idx.split(_data.INFERENCE_BATCH):
        a_views, b_views = [], []
        for _ in range(_CACHED_VIEWS):
            plan = (idx, views.partner_indices(idx))
            (_, partner_idx), (x, partner) = next(iter(data.load([plan])))
            with _device.autocast(device, amp_dtype):
                a_views.append(backbone(views.first(x)).float())
                second = views.second(module, partner, partner_idx)
                b_views.append(backbone(second).float())
        firsts.append(torch.stack(a_views))
        partners.append(torch.stack(b_views))
    return torch.cat(firsts, dim=1), torch.cat(partners, dim=1)


def _fit_heads(heads, firsts, partners, *, alpha):
    """Fit linear heads by the IIC loss on cached features of view pairs."""
    n_views, n_samples = firsts.shape[:2]
    batch = min(n_samples, _HEAD_BATCH)
    optimizer = torch.optim.Adam(heads.parameters(), lr=_HEAD_LR)
    heads.train()
    with torch.enable_grad():
        for _ in range(_HEAD_STEPS):
            idx = torch.randint(n_samples, (batch,), device=firsts.device)
            view = torch.randint(n_views, (2,), device=firsts.device)
            p1 = soft_assignments(heads(firsts[view[0], idx]))
            p2 = soft_assignments(heads(partners[view[1], idx]))
            loss = iic_loss(p1, p2, alpha=alpha).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    heads.eval()


@torch.no_grad()
def evaluate_heads(module, candidates, data, views, alpha):
    """Loss of every sub-head of ``candidates`` on all samples, clean vs. one view.

    The joint distributions are summed chunk by chunk (the IIC joint is a sum
    over samples), so memory does not grow with the data.
    """
    device = next(module.parameters()).device
    module.eval()
    amp_dtype = _device.autocast_dtype(device)
    joints = [None] * len(candidates)
    indices = torch.arange(data.n_samples, device=data.index_device)
    plans = views.plans(indices.split(_data.INFERENCE_BATCH))
    for (_, partner_idx), (x, partner) in data.load(plans):
        with _device.autocast(device, amp_dtype):
            clean = module.backbone(x).float()
            second_view = views.second(module, partner, partner_idx)
            second = module.backbone(second_view).float()
        for i, heads in enumerate(candidates):
            p1 = soft_assignments(heads(clean))
            p2 = soft_assignments(heads(second))
            joint = p1.transpose(-1, -2) @ p2
            joints[i] = joint if joints[i] is None else joints[i] + joint
    losses = []
    for joint in joints:
        joint = (joint + joint.transpose(-1, -2)) / 2
        losses.append(iic_loss_from_joint(joint, alpha=alpha).cpu().numpy())
    return np.concatenate(losses)


def _single_head(heads, index):
    """A one-sub-head copy of sub-head ``index`` of ``heads``."""
    k = heads.n_outputs
    head = ClusteringHeads(heads.linear.in_features, k, 1).to(
        heads.linear.weight.device
    )
    with torch.no_grad():
        head.linear.weight.copy_(heads.linear.weight[index * k : (index + 1) * k])
        head.linear.bias.copy_(heads.linear.bias[index * k : (index + 1) * k])
    return head.eval()
