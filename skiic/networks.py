"""Backbones, decoders and heads: small plain ``nn.Module`` building blocks.

The estimators pick a backbone from the shape of their input: a
:class:`ConvBackbone` sized from ``(C, H, W)`` for images, an
:class:`MLPBackbone` for vectors. Every backbone exposes ``out_features``, the
width of the feature vector it returns, so that heads can be attached to it.
The decoders (:class:`MLPDecoder`, :class:`ConvDecoder`, picked by
:func:`make_decoder`) mirror those backbones for :class:`AutoEncoder`.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "AutoEncoder",
    "ClusteringHeads",
    "ConvBackbone",
    "ConvDecoder",
    "MLPBackbone",
    "MLPDecoder",
    "MultiHeadNetwork",
    "feature_width",
    "make_backbone",
    "make_decoder",
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
        Channels of the stages, one stage per pooling: the first
        ``n_pooling_stages(input_shape)`` are used, or the first one alone
        (a stage at full resolution) when no pooling fits.
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
        n_pool, n_stages = _conv_stages(
            input_shape, channels, "input_shape", convs_per_stage
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


def _conv_stages(shape, channels, name: str, convs_per_stage) -> tuple[int, int]:
    """Poolings and stages (at least one) of a conv network on ``shape``,
    checking that ``channels`` names one width per stage and that each stage
    has a convolution."""
    if isinstance(convs_per_stage, bool) or not (
        isinstance(convs_per_stage, numbers.Integral) and convs_per_stage >= 1
    ):
        raise ValueError(
            f"convs_per_stage must be an int of at least 1; got {convs_per_stage!r}."
        )
    n_pool = n_pooling_stages(shape)
    n_stages = max(n_pool, 1)
    if len(channels) < n_stages:
        raise ValueError(
            f"channels needs {n_stages} entries for {name} "
            f"{tuple(shape)}; got {len(channels)}."
        )
    return n_pool, n_stages


# Channels of the compact convolutional backbone, for training on a CPU.
COMPACT_CHANNELS = (16, 32, 64)


def make_backbone(
    n_features: int, input_shape: Sequence[int] | None, *, compact: bool = False
) -> nn.Module:
    """The default backbone: convolutional for images, MLP for vectors.

    Parameters
    ----------
    n_features : int
        Width of the flattened input.
    input_shape : tuple of int or None
        ``(C, H, W)`` for images, ``None`` for vectors.
    compact : bool, default=False
        Half the channels in every convolution stage (``COMPACT_CHANNELS``),
        about a quarter of the arithmetic: what a CPU trains in reasonable
        time. Vector backbones are the same either way.

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
    if compact:
        return ConvBackbone(input_shape, channels=COMPACT_CHANNELS)
    return ConvBackbone(input_shape)


@torch.no_grad()
def feature_width(backbone: nn.Module, sample_shape: Sequence[int]) -> int:
    """Width of a backbone's output, measured by a dry run.

    The backbone maps two zero samples in eval mode (no gradients, BatchNorm
    statistics untouched), which also checks that it takes samples of
    ``sample_shape`` and returns one ``(n, width)`` tensor: a module given as
    ``module=`` that does not gets a ``ValueError`` that says so, before any
    training.

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
    shape = "x".join(map(str, sample_shape))
    was_training = backbone.training
    backbone.eval()
    tensors = itertools.chain(backbone.parameters(), backbone.buffers())
    device = next(tensors, torch.zeros(0)).device
    try:
        out = backbone(torch.zeros(2, *sample_shape, device=device))
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(
            f"The module could not take a batch of samples of shape {shape}, "
            "the input it will be trained on (images as (C, H, W); vectors "
            f"after any pca_components projection): {exc}"
        ) from exc
    finally:
        backbone.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        got = (
            f"shape {tuple(out.shape)}"
            if isinstance(out, torch.Tensor)
            else f"a {type(out).__name__}"
        )
        raise ValueError(
            "A custom module must map a batch of samples to one tensor of shape "
            f"(n_samples, width); for 2 samples it returned {got}."
        )
    return int(out.shape[1])


class MLPDecoder(nn.Module):
    """Fully connected decoder, the mirror of :class:`MLPBackbone`.

    Each hidden layer is ``Linear -> BatchNorm1d -> ReLU``; a last ``Linear``
    layer (no activation) returns vectors of ``n_features`` values, reshaped to
    ``output_shape`` when one is given.

    Parameters
    ----------
    in_features : int
        Width of the codes it decodes.
    n_features : int
        Width of the reconstructed vectors.
    hidden : sequence of int, default=(512, 512)
        Width of each hidden layer, in the order they are applied (the
        reverse of the encoder's).
    output_shape : tuple of int, default=None
        Shape of one reconstructed sample, e.g. ``(C, H, W)``; ``None``
        returns flat vectors.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import MLPDecoder
    >>> MLPDecoder(2, 64, hidden=(16, 32))(torch.randn(5, 2)).shape
    torch.Size([5, 64])
    >>> MLPDecoder(2, 64, output_shape=(1, 8, 8))(torch.randn(5, 2)).shape
    torch.Size([5, 1, 8, 8])
    """

    def __init__(
        self,
        in_features: int,
        n_features: int,
        hidden: Sequence[int] = (512, 512),
        output_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for out in hidden:
            layers += [
                nn.Linear(width, out, bias=False),
                nn.BatchNorm1d(out),
                nn.ReLU(),
            ]
            width = out
        layers.append(nn.Linear(width, n_features))
        self.layers = nn.Sequential(*layers)
        self.output_shape = (
            (n_features,)
            if output_shape is None
            else tuple(int(s) for s in output_shape)
        )
        if math.prod(self.output_shape) != n_features:
            raise ValueError(
                f"output_shape={tuple(output_shape)} does not hold "
                f"n_features={n_features} values."
            )

    def forward(self, z: Tensor) -> Tensor:
        """Map codes of shape ``(n, in_features)`` to ``(n, *output_shape)``."""
        return self.layers(z).reshape(z.shape[0], *self.output_shape)


class ConvDecoder(nn.Module):
    """Convolutional decoder, the mirror of :class:`ConvBackbone`.

    Given the same ``input_shape``, ``channels`` and ``convs_per_stage`` as a
    :class:`ConvBackbone`, it runs that backbone's steps backwards:
    ``Linear -> BatchNorm1d -> ReLU`` up to ``hidden_features`` and on to the
    backbone's pooled feature maps, then, stage by stage from the last, a
    nearest-neighbour upsampling that undoes the stage's pooling followed by
    the stage's convolutions transposed (``Conv3x3 -> BatchNorm -> ReLU``,
    the last one going back to the previous stage's channels). The very last
    convolution returns ``C`` channels with no activation. Every upsampling
    goes to the exact size its pooling started from, so odd sizes come back
    exactly (28 -> 14 -> 7 -> 3 is undone as 3 -> 7 -> 14 -> 28).

    Parameters
    ----------
    in_features : int
        Width of the codes it decodes.
    output_shape : tuple of int
        ``(C, H, W)`` of the reconstructed images.
    channels : sequence of int, default=(32, 64, 128)
        Channels of the mirrored backbone's stages, in the backbone's order.
    convs_per_stage : int, default=1
        Convolutions in each stage.
    hidden_features : int, default=256
        Width of the layer between the codes and the feature maps (the
        backbone's ``out_features``).

    Attributes
    ----------
    pooled_shape : tuple of int
        ``(channels, h, w)`` of the feature maps the convolutions start from.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import ConvDecoder
    >>> net = ConvDecoder(10, (1, 28, 28))
    >>> net.pooled_shape
    (128, 3, 3)
    >>> net(torch.randn(4, 10)).shape
    torch.Size([4, 1, 28, 28])
    >>> ConvDecoder(2, (3, 15, 9), channels=(8, 16))(torch.randn(2, 2)).shape
    torch.Size([2, 3, 15, 9])
    """

    def __init__(
        self,
        in_features: int,
        output_shape: Sequence[int],
        channels: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 1,
        hidden_features: int = 256,
    ) -> None:
        super().__init__()
        out_channels, height, width = (int(s) for s in output_shape)
        n_pool, n_stages = _conv_stages(
            output_shape, channels, "output_shape", convs_per_stage
        )
        # Spatial size at the start of each backbone stage, then after the last.
        sizes = [(height, width)]
        for _ in range(n_pool):
            sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
        self.pooled_shape = (int(channels[n_stages - 1]), *sizes[-1])
        self.project = nn.Sequential(
            nn.Linear(in_features, hidden_features, bias=False),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, math.prod(self.pooled_shape), bias=False),
            nn.BatchNorm1d(math.prod(self.pooled_shape)),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for stage in reversed(range(n_stages)):
            if stage < n_pool:
                layers.append(nn.Upsample(size=sizes[stage], mode="nearest"))
            width_in = int(channels[stage])
            for conv in range(convs_per_stage):
                first = conv == convs_per_stage - 1  # transposes the stage's first
                if first and stage == 0:
                    layers.append(nn.Conv2d(width_in, out_channels, 3, padding=1))
                    continue
                width_out = int(channels[stage - 1]) if first else width_in
                layers += [
                    nn.Conv2d(width_in, width_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width_out),
                    nn.ReLU(),
                ]
        self.features = nn.Sequential(*layers)
        self.output_shape = (out_channels, height, width)

    def forward(self, z: Tensor) -> Tensor:
        """Map codes of shape (n, in_features) to images (n, C, H, W)."""
        maps = self.project(z).reshape(z.shape[0], *self.pooled_shape)
        return self.features(maps)


class AutoEncoder(nn.Module):
    """An encoder to ``n_components`` codes and a decoder back to the input.

    The encoder is a backbone followed by a linear layer to the codes and a
    batch normalisation without learned scale or shift, so that each code has
    zero mean and unit variance over the training data (as with
    ``PCA(whiten=True)``, but without decorrelation); bounded codes are then
    squashed by ``tanh``. :meth:`forward` returns the reconstruction of its
    input.

    Parameters
    ----------
    backbone : nn.Module
        Maps a batch to features of shape (n, in_features).
    in_features : int
        Width of the backbone features.
    decoder : nn.Module
        Maps codes of shape (n, n_components) to reconstructions shaped like
        the input batch.
    n_components : int
        Width of the codes.
    bounded : bool, default=False
        Squash the standardised codes into (-1, 1) with ``tanh``.

    Examples
    --------
    >>> import torch
    >>> from skiic.networks import AutoEncoder, MLPBackbone, MLPDecoder
    >>> net = AutoEncoder(MLPBackbone(8, (16,)), 16, MLPDecoder(2, 8, (16,)), 2)
    >>> x = torch.randn(5, 8)
    >>> net.encode(x).shape, net(x).shape
    (torch.Size([5, 2]), torch.Size([5, 8]))
    """

    def __init__(
        self,
        backbone: nn.Module,
        in_features: int,
        decoder: nn.Module,
        n_components: int,
        bounded: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.latent = nn.Sequential(
            nn.Linear(in_features, n_components, bias=False),
            nn.BatchNorm1d(n_components, affine=False),
        )
        self.decoder = decoder
        self.bounded = bounded

    def encode(self, x: Tensor) -> Tensor:
        """Codes of shape (n, n_components) of a batch."""
        z = self.latent(self.backbone(x))
        return torch.tanh(z) if self.bounded else z

    def decode(self, z: Tensor) -> Tensor:
        """Reconstructions of codes of shape (n, n_components)."""
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x``, shaped as the decoder returns it."""
        return self.decode(self.encode(x))


def make_decoder(
    backbone: nn.Module,
    in_features: int,
    n_features: int,
    input_shape: Sequence[int] | None,
) -> nn.Module:
    """A decoder that mirrors ``backbone`` and reconstructs its input shape.

    A :class:`ConvBackbone` gets the mirrored :class:`ConvDecoder` and an
    :class:`MLPBackbone` the mirrored :class:`MLPDecoder`; any other backbone
    gets an :class:`MLPDecoder` with hidden layers of 512 and 512 units,
    reshaped to ``input_shape`` for images.

    Parameters
    ----------
    backbone : nn.Module
        The encoder's backbone.
    in_features : int
        Width of the codes to decode.
    n_features : int
        Width of the flattened input.
    input_shape : tuple of int or None
        ``(C, H, W)`` for images, ``None`` for vectors.

    Examples
    --------
    >>> from skiic.networks import ConvBackbone, make_decoder
    >>> decoder = make_decoder(ConvBackbone((1, 8, 8)), 2, 64, (1, 8, 8))
    >>> type(decoder).__name__, decoder.pooled_shape
    ('ConvDecoder', (64, 2, 2))
    """
    if isinstance(backbone, ConvBackbone):
        convs = [m for m in backbone.features if isinstance(m, nn.Conv2d)]
        n_stages = max(n_pooling_stages(backbone.input_shape), 1)
        per_stage = len(convs) // n_stages
        return ConvDecoder(
            in_features,
            backbone.input_shape,
            channels=[convs[s * per_stage].out_channels for s in range(n_stages)],
            convs_per_stage=per_stage,
            hidden_features=backbone.out_features,
        )
    if isinstance(backbone, MLPBackbone):
        widths = [m.out_features for m in backbone.layers if isinstance(m, nn.Linear)]
        return MLPDecoder(
            in_features, n_features, hidden=widths[::-1], output_shape=input_shape
        )
    return MLPDecoder(in_features, n_features, output_shape=input_shape)
