"""Second views of a batch, generated on the device with per-sample randomness.

Everything here works on whole batches at once (no Python loop over samples)
and draws its random numbers from torch's generator on the batch's device.

* Images: :func:`random_affine` (rotation, scale, shear, translation and an
  optional elastic distortion through one ``affine_grid``/``grid_sample``
  call), brightness and contrast jitter,
  additive noise and optional binarisation, composed by
  :class:`ImageAugmentation`.
* Vectors: :class:`VirtualAdversarial` moves each sample in the direction
  that most changes the network's prediction, within its own neighbourhood;
  :class:`VectorAugmentation` adds feature noise and masking, for pairs of a
  sample and a neighbour drawn from :func:`nearest_neighbors`.

The three classes keep their ``__init__`` settings as attributes and have
scikit-learn's ``get_params`` and ``set_params``, so an estimator's grid
search reaches them: ``{"augmentation__eps": [0.25, 0.5]}``.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from contextlib import contextmanager
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ImageAugmentation",
    "VectorAugmentation",
    "VirtualAdversarial",
    "kl_divergence",
    "nearest_neighbors",
    "random_affine",
    "sample_neighbors",
]


class _Settings:
    """An augmentation described by its ``__init__`` settings.

    It shows and compares itself by them, and has scikit-learn's
    ``get_params`` and ``set_params``, so that an estimator's parameters
    reach inside it: ``augmentation__eps`` in a grid search.
    """

    def get_params(self, deep: bool = True) -> dict:
        """The ``__init__`` settings, by name.

        ``deep`` is accepted for scikit-learn's sake: the settings hold no
        objects with parameters of their own.

        Examples
        --------
        >>> from skiic.augment import VectorAugmentation
        >>> VectorAugmentation(noise=0.2).get_params()
        {'noise': 0.2, 'mask': 0.1}
        """
        return {name: getattr(self, name) for name in self._setting_names()}

    def set_params(self, **params):
        """Change settings in place, checked as ``__init__`` checks them.

        Returns ``self``. An unknown name or an invalid value raises
        ``ValueError`` and leaves every setting as it was.

        Examples
        --------
        >>> from skiic.augment import VirtualAdversarial
        >>> vat = VirtualAdversarial().set_params(eps=0.25)
        >>> vat.eps, vat.weight
        (0.25, 10.0)
        """
        names = self._setting_names()
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(
                f"Invalid parameter {unknown[0]!r} for {type(self).__name__}; "
                f"valid parameters: {', '.join(names)}."
            )
        checked = type(self)(**{**self.get_params(), **params})
        vars(self).update(vars(checked))
        return self

    def __sklearn_clone__(self):
        """A copy with the same settings (what ``sklearn.base.clone`` returns)."""
        return copy.deepcopy(self)

    @classmethod
    def _setting_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        # By the settings, so that one pickled before a setting existed (which
        # reads the class default) equals a new one.
        return type(other) is type(self) and other.get_params() == self.get_params()


def random_affine(
    images: Tensor,
    *,
    rotation: float = 15.0,
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 10.0,
    translation: float = 0.1,
    elastic: float = 0.0,
) -> Tensor:
    """Apply an independent random affine transform to every image of a batch.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
        The batch.
    rotation : float, default=15.0
        Largest rotation, in degrees, either way.
    scale : tuple of float, default=(0.9, 1.1)
        Range of the zoom factor.
    shear : float, default=10.0
        Largest horizontal shear, in degrees, either way.
    translation : float, default=0.1
        Largest shift, as a fraction of the image side, in each direction.
    elastic : float, default=0.0
        Strength of a smooth random (elastic) distortion on top of the affine
        transform: each image's displacement field, drawn at 6x6 control
        points and interpolated bicubically, has a root-mean-square length of
        ``elastic`` times the image side (along each axis, a fraction of that
        axis's side, as for ``translation``). ``0`` turns it off and draws no
        random numbers for it.

    Returns
    -------
    Tensor of shape (n, C, H, W)
        The transformed batch; pixels that come from outside the image repeat
        the border.

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import random_affine
    >>> random_affine(torch.rand(4, 1, 8, 8)).shape
    torch.Size([4, 1, 8, 8])
    >>> x = torch.rand(2, 3, 16, 16)
    >>> same = random_affine(x, rotation=0, scale=(1, 1), shear=0, translation=0)
    >>> bool(torch.allclose(same, x, atol=1e-5))
    True
    >>> random_affine(x, elastic=0.05).shape
    torch.Size([2, 3, 16, 16])
    """
    n = images.shape[0]
    device = images.device
    uniform = _uniform_like(n, device)
    angle = uniform(-rotation, rotation) * (math.pi / 180)
    shear_angle = uniform(-shear, shear) * (math.pi / 180)
    zoom = uniform(scale[0], scale[1])
    shift_x = uniform(-translation, translation) * 2  # grid coordinates span [-1, 1]
    shift_y = uniform(-translation, translation) * 2
    cos, sin, tan = angle.cos(), angle.sin(), shear_angle.tan()
    # theta maps output coordinates to input ones: rotate, shear, then un-zoom.
    # The grid's coordinates span [-1, 1] along each axis, so on an H x W
    # image a pixel-space matrix A becomes diag(2/W, 2/H) A diag(W/2, H/2):
    # the off-diagonal terms scale by H/W and W/H (angles stay angles).
    height, width = images.shape[-2:]
    theta = torch.stack(
        [
            torch.stack(
                [cos / zoom, (cos * tan - sin) / zoom * (height / width), shift_x],
                dim=1,
            ),
            torch.stack(
                [sin / zoom * (width / height), (sin * tan + cos) / zoom, shift_y],
                dim=1,
            ),
        ],
        dim=1,
    )
    grid = F.affine_grid(
        theta.to(images.dtype), list(images.shape), align_corners=False
    )
    if elastic:
        grid = grid + _elastic_field(n, images.shape[-2:], elastic, device).to(
            grid.dtype
        )
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def _finite_number(value) -> bool:
    """A finite real number (NumPy scalars too), not a bool."""
    return (
        isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    )


def _check_non_negative(name: str, value, upper: float | None = None) -> None:
    ok = _finite_number(value) and value >= 0 and (upper is None or value <= upper)
    if not ok:
        bound = "" if upper is None else f" at most {upper:g}"
        raise ValueError(f"{name} must be a non-negative number{bound}; got {value!r}.")


def _zoom_range(scale) -> tuple:
    """``scale`` as a ``(low, high)`` tuple, checked: any pair of positive
    numbers (a tuple, a list, a NumPy array, a tensor) with low <= high."""
    try:
        low, high = (v.item() if isinstance(v, Tensor) else v for v in scale)
    except (TypeError, ValueError):
        low = high = None
    if not all(_finite_number(v) and v > 0 for v in (low, high)) or low > high:
        raise ValueError(
            "scale must be a pair (low, high) of positive numbers with "
            f"low <= high; got {scale!r}."
        )
    return (float(low), float(high))


# Control points of the elastic field along each side: on 10,000 MNIST images
# the autoencoder's codes clustered better with 6 than with 4 or 3 (10 seeds).
_ELASTIC_POINTS = 6


def _elastic_field(n: int, size, strength: float, device) -> Tensor:
    """Smooth random displacements (n, H, W, 2) in ``grid_sample`` coordinates.

    Gaussian displacements at 6x6 control points, interpolated bicubically to
    the image and scaled so that each image's field has a root-mean-square
    length of ``strength`` times the image side (2 in grid coordinates).
    """
    coarse = torch.randn(n, 2, _ELASTIC_POINTS, _ELASTIC_POINTS, device=device)
    field = F.interpolate(coarse, size=tuple(size), mode="bicubic", align_corners=True)
    rms = field.pow(2).sum(dim=1).mean(dim=(1, 2)).sqrt().clamp_min(1e-12)
    field = field * (2 * strength / rms).view(n, 1, 1, 1)
    return field.permute(0, 2, 3, 1)


class ImageAugmentation(_Settings):
    """Random image transforms that make the second view of a batch.

    Each image gets its own random affine transform, brightness and contrast
    change and noise; pixel values are assumed to lie roughly in ``[0, 1]``
    (the estimators scale them so).

    Parameters
    ----------
    rotation : float, default=15.0
        Largest rotation in degrees.
    scale : tuple of float, default=(0.9, 1.1)
        Range of the zoom factor.
    shear : float, default=10.0
        Largest shear in degrees, below 90.
    translation : float, default=0.1
        Largest shift as a fraction of the image side.
    brightness : float, default=0.1
        Largest additive brightness change.
    contrast : float, default=0.1
        Largest relative contrast change, at most 1 (the gain is drawn from
        ``1 - contrast`` to ``1 + contrast``).
    noise : float, default=0.05
        Standard deviation of the additive Gaussian noise.
    binarize : float, default=0.0
        Probability that an image is thresholded at 0.5 (after the other
        transforms); useful for pen strokes such as digits.
    elastic : float, default=0.0
        Strength of a smooth random distortion of each image (the
        root-mean-square displacement, as a fraction of each side; see
        :func:`random_affine`); ``0`` turns it off.

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import ImageAugmentation
    >>> augment = ImageAugmentation(rotation=25, noise=0.1)
    >>> augment(torch.rand(8, 1, 28, 28)).shape
    torch.Size([8, 1, 28, 28])
    >>> bent = ImageAugmentation(elastic=0.07)  # also a smooth distortion
    >>> bent(torch.rand(8, 1, 28, 28)).shape
    torch.Size([8, 1, 28, 28])
    """

    elastic = 0.0  # for instances pickled before the parameter existed

    def __init__(
        self,
        rotation: float = 15.0,
        scale: tuple[float, float] = (0.9, 1.1),
        shear: float = 10.0,
        translation: float = 0.1,
        brightness: float = 0.1,
        contrast: float = 0.1,
        noise: float = 0.05,
        binarize: float = 0.0,
        elastic: float = 0.0,
    ) -> None:
        for name, value in (
            ("rotation", rotation),
            ("shear", shear),
            ("translation", translation),
            ("brightness", brightness),
            ("noise", noise),
            ("elastic", elastic),
        ):
            _check_non_negative(name, value)
        if shear >= 90:
            raise ValueError(
                f"shear must be below 90 degrees (a 90-degree shear is infinite); "
                f"got {shear!r}."
            )
        # A gain of 1 - contrast below 0 would invert the images.
        _check_non_negative("contrast", contrast, upper=1.0)
        _check_non_negative("binarize", binarize, upper=1.0)
        self.rotation = rotation
        self.scale = _zoom_range(scale)
        self.shear = shear
        self.translation = translation
        self.brightness = brightness
        self.contrast = contrast
        self.noise = noise
        self.binarize = binarize
        self.elastic = elastic

    def __call__(self, images: Tensor) -> Tensor:
        """Return an augmented copy of ``images`` (n, C, H, W)."""
        out = random_affine(
            images,
            rotation=self.rotation,
            scale=self.scale,
            shear=self.shear,
            translation=self.translation,
            elastic=self.elastic,
        )
        n, device = images.shape[0], images.device
        uniform = _uniform_like(n, device)
        if self.contrast or self.brightness:
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            gain = uniform(1 - self.contrast, 1 + self.contrast).view(n, 1, 1, 1)
            shift = uniform(-self.brightness, self.brightness).view(n, 1, 1, 1)
            out = (out - mean) * gain + mean + shift
        if self.noise:
            out = out + self.noise * torch.randn_like(out)
        if self.binarize:
            chosen = (torch.rand(n, 1, 1, 1, device=device) < self.binarize).to(
                out.dtype
            )
            out = chosen * (out > 0.5).to(out.dtype) + (1 - chosen) * out
        return out


class VectorAugmentation(_Settings):
    """Feature noise and masking for vector samples.

    Parameters
    ----------
    noise : float, default=0.1
        Standard deviation of the Gaussian noise, relative to the overall
        standard deviation of the (scaled) features.
    mask : float, default=0.1
        Probability that a feature is replaced by zero (the mean, since the
        estimators centre vector input).

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import VectorAugmentation
    >>> VectorAugmentation(noise=0.2, mask=0.0)(torch.zeros(3, 5)).shape
    torch.Size([3, 5])
    """

    def __init__(self, noise: float = 0.1, mask: float = 0.1) -> None:
        _check_non_negative("noise", noise)
        _check_non_negative("mask", mask, upper=1.0)
        self.noise = noise
        self.mask = mask

    def __call__(self, x: Tensor) -> Tensor:
        """Return an augmented copy of ``x`` (n, n_features)."""
        out = x
        if self.mask:
            keep = (torch.rand_like(x) >= self.mask).to(x.dtype)
            out = out * keep
        if self.noise:
            out = out + self.noise * torch.randn_like(out)
        return out


class VirtualAdversarial(_Settings):
    r"""Virtual adversarial second views (VAT), as in IMSAT.

    The second view of a sample ``x`` is ``x + r``, where ``r`` points in the
    direction that most changes the network's cluster probabilities (one
    power iteration of virtual adversarial training; Miyato et al., 2018)
    and its length is ``eps`` times the distance from ``x`` to its
    ``n_neighbors``-th nearest neighbour, so the views stay within the
    sample's own neighbourhood, dense or sparse (Hu et al., 2017, IMSAT).
    :class:`~skiic.IICClustering` pairs each sample with its adversarial view
    and adds ``weight`` times the divergence ``KL(p(x) || p(x + r))`` to the
    IIC loss. With ``n_neighbors > 0`` in the estimator the adversarial view
    is that of the sample's neighbour, and the divergence compares the
    sample's prediction with it. When each sample is paired with its own
    adversarial view, the estimator predicts with one of its trained
    sub-heads unless ``n_head_inits`` asks for fresh ones (``"auto"`` fits
    none). Unlike the other augmentations it needs the
    network, so it is not a plain function of a batch. The probe passes of
    the power iteration leave the network's BatchNorm running statistics
    unchanged, as in Miyato et al.'s code.

    Parameters
    ----------
    eps : float, default=0.5
        Length of the perturbation, as a fraction of the distance to the
        ``n_neighbors``-th nearest neighbour.
    n_neighbors : int, default=10
        Which neighbour's distance sets the length.
    xi : float, default=10.0
        Length of the probe step of the power iteration, in the units of the
        scaled input (IMSAT's value).
    weight : float, default=10.0
        Weight of the divergence term against the IIC loss.
    noise_floor : bool, default=False
        Measure the length beyond the nearest neighbour: ``eps`` times
        :math:`\sqrt{d_k^2 - d_1^2}`, where :math:`d_k` is the distance to the
        ``n_neighbors``-th neighbour and :math:`d_1` to the nearest. Features
        that carry only noise add about the same squared length to every
        distance, so the difference keeps the part that tells neighbours
        apart. :class:`~skiic.IICClustering` turns it on for wide vectors
        (100 features or more) that reach the network unprojected (see
        ``pca_components``).

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import VirtualAdversarial
    >>> net = torch.nn.Linear(4, 3)
    >>> x, radius = torch.randn(5, 4), torch.full((5,), 0.5)
    >>> moved = VirtualAdversarial().perturb(lambda z: [net(z)], x, radius)
    >>> [round(float(r), 3) for r in (moved - x).norm(dim=1)]
    [0.5, 0.5, 0.5, 0.5, 0.5]
    """

    def __init__(
        self,
        eps: float = 0.5,
        n_neighbors: int = 10,
        xi: float = 10.0,
        weight: float = 10.0,
        noise_floor: bool = False,
    ) -> None:
        for name, value in (("eps", eps), ("xi", xi)):
            if not (_finite_number(value) and value > 0):
                raise ValueError(f"{name} must be a positive number; got {value!r}.")
        _check_non_negative("weight", weight)
        if (
            isinstance(n_neighbors, bool)
            or not isinstance(n_neighbors, Integral)
            or n_neighbors < 1
        ):
            raise ValueError(
                f"n_neighbors must be a positive integer; got {n_neighbors!r}."
            )
        self.eps = eps
        self.n_neighbors = n_neighbors
        if not isinstance(noise_floor, bool):
            raise ValueError(f"noise_floor must be True or False; got {noise_floor!r}.")
        self.xi = xi
        self.weight = weight
        self.noise_floor = noise_floor

    def radius(self, data, neighbors: Tensor | None = None) -> Tensor:
        r"""Length of each sample's perturbation (float32, on the data's device).

        ``data`` is a tensor or a data source, as for :func:`nearest_neighbors`;
        with fewer than ``n_neighbors + 1`` samples the farthest one counts.
        ``neighbors``, each sample's nearest neighbours (nearest first, at
        least that many, or all there are), saves the search when already
        found; the distance is measured on the rows either way. With
        ``noise_floor`` the length is ``eps`` times
        :math:`\sqrt{d_k^2 - d_1^2}`.
        """
        from ._data import distances_to

        k = self._radius_rank(
            data.shape[0] if isinstance(data, Tensor) else data.n_samples
        )
        if neighbors is None:
            neighbors = nearest_neighbors(data, k)
        k = min(k, neighbors.shape[1])  # fewer distinct rows than neighbours
        far = distances_to(data, neighbors[:, k - 1])
        if self.noise_floor:
            near = distances_to(data, neighbors[:, 0])
            far = (far.square() - near.square()).clamp_min(0).sqrt()
        return self.eps * far

    def _radius_rank(self, n_samples: int) -> int:
        """Which neighbour's distance sets the length, among ``n_samples``."""
        return min(self.n_neighbors, n_samples - 1)

    def perturb(
        self,
        forward,
        x: Tensor,
        radius: Tensor,
        *,
        clean: Sequence[Tensor] | None = None,
        probe: Tensor | None = None,
    ) -> Tensor:
        """The adversarial views of ``x``, each moved by its ``radius``.

        Parameters
        ----------
        forward : callable
            Maps a batch to a sequence of logit tensors whose last dimension
            is the classes; the divergence is summed over them. When it is a
            ``torch.nn.Module``, the running statistics of its normalisation
            layers are restored after the passes; a plain function's network
            is out of reach, so pass the network as a module.
        x : Tensor of shape (n, ...)
            The batch.
        radius : Tensor of shape (n,)
            Length of each sample's perturbation.
        clean : sequence of Tensor, default=None
            ``forward(x)``, detached, when the caller has it already.
        probe : Tensor shaped like ``x``, default=None
            Random start of the power iteration; drawn from torch's
            generator when None.

        Returns
        -------
        Tensor shaped like ``x``
            The moved batch, detached from the graph.
        """
        if probe is None:
            probe = torch.randn(x.shape, device=x.device)
        # The probe lies far outside the data (``xi``): its batch statistics
        # must not leak into BatchNorm's running ones, which predict later.
        with _running_stats_kept(forward):
            if clean is None:
                with torch.no_grad():
                    clean = forward(x)
            with torch.enable_grad():
                probe = _unit(probe.float()).requires_grad_(True)
                moved = forward(x + self.xi * probe.to(x.dtype))
                # Summed over the samples: the scale leaves the direction as
                # it is and keeps float16 gradients from underflowing.
                divergence = x.shape[0] * sum(
                    kl_divergence(c.detach().float(), m.float())
                    for c, m in zip(clean, moved)
                )
                grad = None
                if divergence.requires_grad:
                    (grad,) = torch.autograd.grad(divergence, probe, allow_unused=True)
        if grad is None:
            # The predictions ignore the input (a constant network): no
            # direction changes them, so the view stays where it is.
            grad = torch.zeros_like(probe)
        step = radius.to(torch.float32).reshape(-1, *[1] * (x.dim() - 1))
        return (x.float() + step * _unit(grad)).to(x.dtype)


@contextmanager
def _running_stats_kept(forward):
    """Restore the running statistics of ``forward``'s normalisation layers on exit.

    Any submodule with ``running_mean``/``running_var`` buffers counts
    (torch's BatchNorm layers and skiic's own ``SyncBatchNorm``); a plain
    callable has none.
    """
    saved = []
    if isinstance(forward, torch.nn.Module) and forward.training:
        for module in forward.modules():
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buffer = getattr(module, name, None)
                if isinstance(buffer, Tensor):
                    saved.append((buffer, buffer.detach().clone()))
    try:
        yield
    finally:
        # Through ``.data``, as BatchNorm's kernels update them: a visible
        # in-place write would bump the version of a tensor that the earlier
        # passes' autograd graphs saved, and break their backward.
        for buffer, copy in saved:
            buffer.data.copy_(copy)


def kl_divergence(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Mean ``KL(p || q)`` over the samples, from logits over the last dimension.

    Leading dimensions (sub-heads, samples) are averaged.

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import kl_divergence
    >>> a = torch.tensor([[0.0, 0.0]])
    >>> float(kl_divergence(a, a))
    0.0
    """
    log_p = logits_p.log_softmax(dim=-1)
    log_q = logits_q.log_softmax(dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()


def _unit(v: Tensor) -> Tensor:
    """Each sample of ``v`` scaled to unit Euclidean norm."""
    norms = v.flatten(1).norm(dim=1).clamp(min=1e-12)
    return v / norms.reshape(-1, *[1] * (v.dim() - 1))


@torch.no_grad()
def nearest_neighbors(
    X, n_neighbors: int, *, chunk_size: int = 4096, return_distance: bool = False
):
    """Indices of each sample's nearest neighbours, itself excluded.

    Euclidean distance on the flattened samples, computed block by block
    (``chunk_size`` rows against ``chunk_size`` columns) with a running top-k,
    so memory stays at a few ``chunk_size**2`` floats whatever the data size.

    Parameters
    ----------
    X : Tensor of shape (n_samples, ...) or data source
        The samples; or any object with ``n_samples``, ``device``,
        ``index_device`` and ``take(idx)`` returning the samples ``idx`` on
        ``device`` (the estimators pass their streamed data this way).
    n_neighbors : int
        Neighbours per sample; at most ``n_samples - 1``.
    chunk_size : int, default=4096
        Rows (and columns) of a block of the distance matrix.
    return_distance : bool, default=False
        Also return the Euclidean distances to the neighbours.

    Returns
    -------
    distances : Tensor of shape (n_samples, n_neighbors), dtype float32
        Only with ``return_distance=True``: the distance to each neighbour.
    indices : Tensor of shape (n_samples, n_neighbors), dtype int64
        Neighbour indices, nearest first, on the samples' device.

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import nearest_neighbors
    >>> X = torch.tensor([[0.0], [1.0], [10.0], [11.5]])
    >>> nearest_neighbors(X, 1).ravel().tolist()
    [1, 0, 3, 2]
    >>> nearest_neighbors(X, 2, chunk_size=3).tolist()
    [[1, 2], [0, 2], [3, 1], [2, 1]]
    >>> dist, idx = nearest_neighbors(X, 1, return_distance=True)
    >>> dist.ravel().tolist()
    [1.0, 1.0, 1.5, 1.5]
    """
    if isinstance(X, Tensor):
        n, device, index_device = X.shape[0], X.device, X.device

        def take(idx):
            return X[idx]

    else:
        n, device, index_device, take = X.n_samples, X.device, X.index_device, X.take
    if not 0 < n_neighbors < n:
        raise ValueError(
            f"n_neighbors must be between 1 and n_samples - 1 = {n - 1}; "
            f"got {n_neighbors}."
        )
    blocks = torch.arange(n, device=index_device).split(chunk_size)
    result = torch.empty(n, n_neighbors, dtype=torch.long, device=device)
    distances = torch.empty(n, n_neighbors, device=device) if return_distance else None
    # Distances do not change under a shift, but the expansion below loses
    # them to cancellation where the norms dwarf them (data far from the
    # origin): measured from the first block's mean instead.
    origin = take(blocks[0]).reshape(len(blocks[0]), -1).float().mean(dim=0)
    for row_idx in blocks:
        rows = take(row_idx).reshape(len(row_idx), -1).float() - origin
        # A row's own squared norm does not change the order of its
        # candidates: it is added to the few kept, not to the whole block.
        row_norms = (rows * rows).sum(dim=1, keepdim=True)
        scaled = rows * -2
        best_dist = torch.empty((len(row_idx), 0), device=device)
        best_idx = torch.empty((len(row_idx), 0), dtype=torch.long, device=device)
        for col_idx in blocks:
            own_block = col_idx is row_idx
            if own_block:
                cols = rows
            else:
                cols = take(col_idx).reshape(len(col_idx), -1).float() - origin
            dist = (scaled @ cols.T).add_((cols * cols).sum(dim=1))
            if own_block:
                dist.fill_diagonal_(float("inf"))  # a sample is not its neighbour
            # the block's own top k first, then a merge of two short lists
            keep = dist.topk(min(n_neighbors, dist.shape[1]), dim=1, largest=False)
            block_dist = keep.values + row_norms
            block_idx = col_idx.to(device)[keep.indices]
            dist = torch.cat([best_dist, block_dist], dim=1)
            candidates = torch.cat([best_idx, block_idx], dim=1)
            keep = dist.topk(min(n_neighbors, dist.shape[1]), dim=1, largest=False)
            best_dist, best_idx = keep.values, candidates.gather(1, keep.indices)
        own = row_idx.to(device)
        result[own] = best_idx
        if distances is not None:
            distances[own] = best_dist.clamp(min=0).sqrt()
    return (distances, result) if return_distance else result


def sample_neighbors(
    neighbors: Tensor, idx: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one random neighbour for each index of a batch.

    Parameters
    ----------
    neighbors : Tensor of shape (n_samples, n_neighbors)
        Output of :func:`nearest_neighbors`.
    idx : Tensor of shape (batch,)
        Sample indices.
    generator : torch.Generator, default=None
        Source of the draws (on the neighbours' device); torch's global one
        when None.

    Returns
    -------
    Tensor of shape (batch,)
        For each index, one of its neighbours, uniformly at random.

    Examples
    --------
    >>> import torch
    >>> from skiic.augment import sample_neighbors
    >>> knn = torch.tensor([[1, 2], [0, 2], [1, 0]])
    >>> sample_neighbors(knn, torch.tensor([0, 0, 1])).shape
    torch.Size([3])
    """
    pick = torch.randint(
        neighbors.shape[1],
        (idx.shape[0],),
        device=neighbors.device,
        generator=generator,
    )
    return neighbors[idx, pick]


def _uniform_like(n: int, device: torch.device):
    def uniform(low: float, high: float) -> Tensor:
        return torch.rand(n, device=device) * (high - low) + low

    return uniform
