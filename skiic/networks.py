"""Backbones, decoders and heads: small plain ``nn.Module`` building blocks.

The estimators pick a backbone from the shape of their input: a
:class:`ConvBackbone` sized from ``(C, H, W)`` for images, an
:class:`MLPBackbone` for vectors. Every backbone exposes ``out_features``, the
width of the feature vector it returns, so that heads can be attached to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "ClusteringHeads",
    "ConvBackbone",
    "MLPBackbone",
    "MultiHeadNetwork",
    "feature_width",
    "make_backbone",
    "n_pooling_stages",
]


class MLPBackbone(nn.Module):
    """Fully connected backbone for vector input.

    Each hidden layer is ``Linear -> BatchNorm1d -> ReLU``.

    Parameters
    ----------
    n_features : int
        Width of the input vectors.
    hidden : sequence of int, default=(512, 512)
        Width of each hidden layer; the last one is ``out_features``.

    Attributes
    ----------
    out_features : int
        Width of the returned feature vectors.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import MLPBackbone
    >>> MLPBackbone(64, hidden=(32, 16))(torch.randn(5, 64)).shape
    torch.Size([5, 16])
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one layer width.")
        layers: list[nn.Module] = []
        width = n_features
        for out in hidden:
            layers += [
                nn.Linear(width, out, bias=False),
                nn.BatchNorm1d(out),
                nn.ReLU(),
            ]
            width = out
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        """Map ``x`` of shape (n, n_features) to features of shape (n, out_features)."""
        return self.layers(x.flatten(1))


class ConvBackbone(nn.Module):
    """Convolutional backbone sized from the image shape.

    Stages of ``Conv3x3 -> BatchNorm -> ReLU`` (``convs_per_stage`` of them)
    followed by 2x2 max pooling halve the image until it is about 2 to 3 pixels
    wide (at most three poolings: 8x8 digits get two, 16x16 and larger three);
    the flattened maps then go through ``Linear -> BatchNorm1d -> ReLU``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` of the images.
    channels : sequence of int, default=(32, 64, 128)
        Channels of the stages; the first ``n_pooling_stages(input_shape) + 1``
        are used (one stage keeps full resolution when no pooling fits).
    convs_per_stage : int, default=1
        Convolutions in each stage.
    out_features : int, default=256
        Width of the returned feature vectors.

    Attributes
    ----------
    out_features : int
        Width of the returned feature vectors.
    pooled_shape : tuple of int
        ``(channels, h, w)`` of the last feature maps, before flattening.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import ConvBackbone
    >>> net = ConvBackbone((1, 28, 28), out_features=32)
    >>> net.pooled_shape
    (128, 3, 3)
    >>> net(torch.randn(4, 1, 28, 28)).shape
    torch.Size([4, 32])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 1,
        out_features: int = 256,
    ) -> None:
        super().__init__()
        in_channels, height, width = (int(s) for s in input_shape)
        n_pool = n_pooling_stages((in_channels, height, width))
        n_stages = max(n_pool, 1)
        if len(channels) < n_stages:
            raise ValueError(
                f"channels needs {n_stages} entries for input_shape "
                f"{tuple(input_shape)}; got {len(channels)}."
            )
        layers: list[nn.Module] = []
        width_in = in_channels
        for stage in range(n_stages):
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(width_in, channels[stage], 3, padding=1, bias=False),
                    nn.BatchNorm2d(channels[stage]),
                    nn.ReLU(),
                ]
                width_in = channels[stage]
            if stage < n_pool:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
        self.features = nn.Sequential(*layers)
        self.pooled_shape = (width_in, height, width)
        self.project = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width_in * height * width, out_features, bias=False),
            nn.BatchNorm1d(out_features),
            nn.ReLU(),
        )
        self.input_shape = (in_channels, *(int(s) for s in input_shape[1:]))
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``x`` of shape (n, C, H, W) (or flat) to (n, out_features)."""
        x = x.reshape(x.shape[0], *self.input_shape)
        return self.project(self.features(x))


class ClusteringHeads(nn.Module):
    """Several independent linear classification heads on one feature vector.

    Computed as one matrix product for speed and returned stacked.

    Parameters
    ----------
    in_features : int
        Width of the backbone features.
    n_outputs : int
        Classes (clusters) of each head.
    n_heads : int, default=1
        Number of sub-heads.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import ClusteringHeads
    >>> ClusteringHeads(16, 10, n_heads=5)(torch.randn(3, 16)).shape
    torch.Size([5, 3, 10])
    """

    def __init__(self, in_features: int, n_outputs: int, n_heads: int = 1) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.n_heads = n_heads
        self.linear = nn.Linear(in_features, n_outputs * n_heads)

    def forward(self, features: Tensor) -> Tensor:
        """Logits of shape (n_heads, n, n_outputs)."""
        logits = self.linear(features)
        return logits.view(-1, self.n_heads, self.n_outputs).transpose(0, 1)


class MultiHeadNetwork(nn.Module):
    """A backbone with groups of clustering heads on its features.

    Parameters
    ----------
    backbone : nn.Module
        Maps a batch to features of shape (n, in_features).
    in_features : int
        Width of the backbone features.
    head_sizes : sequence of int
        Outputs of each group of heads, e.g. ``(10, 50)`` for a main head of
        10 clusters and an overclustering head of 50.
    n_heads : int, default=1
        Sub-heads in every group.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import MLPBackbone, MultiHeadNetwork
    >>> net = MultiHeadNetwork(MLPBackbone(8, hidden=(16,)), 16, (3, 15), n_heads=2)
    >>> [logits.shape for logits in net(torch.randn(4, 8))]
    [torch.Size([2, 4, 3]), torch.Size([2, 4, 15])]
    """

    def __init__(
        self,
        backbone: nn.Module,
        in_features: int,
        head_sizes: Sequence[int],
        n_heads: int = 1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(
            ClusteringHeads(in_features, size, n_heads) for size in head_sizes
        )

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """Logits of each head group, each of shape (n_heads, n, size)."""
        features = self.backbone(x)
        return tuple(head(features) for head in self.heads)


def n_pooling_stages(input_shape: Sequence[int]) -> int:
    """Number of 2x2 poolings :class:`ConvBackbone` uses for an image shape.

    Halve until the smaller side is about 2 to 3 pixels, at most three times.

    Examples
    --------
    >>> from skiic.networks import n_pooling_stages
    >>> [n_pooling_stages((1, s, s)) for s in (2, 4, 8, 16, 28, 32)]
    [0, 1, 2, 3, 3, 3]
    """
    side = min(int(input_shape[1]), int(input_shape[2]))
    if side < 4:
        return 0
    return min(3, int(math.log2(side / 2)))


def make_backbone(n_features: int, input_shape: Sequence[int] | None) -> nn.Module:
    """The default backbone: convolutional for images, MLP for vectors.

    Parameters
    ----------
    n_features : int
        Width of the flattened input.
    input_shape : tuple of int or None
        ``(C, H, W)`` for images, ``None`` for vectors.

    Examples
    --------
    >>> from skiic.networks import make_backbone
    >>> type(make_backbone(64, (1, 8, 8))).__name__
    'ConvBackbone'
    >>> type(make_backbone(50, None)).__name__
    'MLPBackbone'
    """
    if input_shape is None:
        return MLPBackbone(n_features)
    return ConvBackbone(input_shape)


@torch.no_grad()
def feature_width(backbone: nn.Module, sample_shape: Sequence[int]) -> int:
    """Width of a backbone's output, read from ``out_features`` or a dry run.

    Parameters
    ----------
    backbone : nn.Module
        Maps a batch of shape ``(n, *sample_shape)`` to ``(n, width)``.
    sample_shape : tuple of int
        Shape of one sample: ``(n_features,)`` or ``(C, H, W)``.

    Examples
    --------
    >>> from torch import nn
    >>> from skiic.networks import feature_width
    >>> feature_width(nn.Sequential(nn.Linear(8, 3)), (8,))
    3
    """
    width = getattr(backbone, "out_features", None)
    if isinstance(width, int):
        return width
    was_training = backbone.training
    backbone.eval()
    try:
        device = next(backbone.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    out = backbone(torch.zeros(2, *sample_shape, device=device))
    backbone.train(was_training)
    if out.ndim != 2:
        raise ValueError(
            "A custom module must map a batch of samples to (n_samples, width); "
            f"it returned shape {tuple(out.shape)}."
        )
    return int(out.shape[1])
