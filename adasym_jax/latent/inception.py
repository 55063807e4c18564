"""A real FID: the FID variant of Inception-v3 in Flax, with weights from a local file.

The standard FID implementations (TensorFlow's original, pytorch-fid, clean-fid's legacy mode)
use the TF 2015-12-05 Inception-v3 graph. pytorch-fid ports it onto torchvision's Inception-v3
layout with three changes, reproduced here:

- the average pool of the ``A``, ``C`` and first ``E`` blocks (``Mixed_5b``–``5d``,
  ``Mixed_6b``–``6e``, ``Mixed_7b``) ignores the zero padding (divides by the number of real
  pixels in the 3×3 window);
- the pool branch of the last ``E`` block (``Mixed_7c``) is a 3×3 *max* pool (stride 1, pad 1);
- the ``fc`` layer has 1008 outputs (unused here: FID uses the 2048 pool3 features).

Every convolution is ``BasicConv2d``: conv without bias, batch norm (eps 1e-3) in eval mode, ReLU.
The batch norm is applied with its running statistics folded into one affine map per channel,
``y = conv(x) · s + (β − μ s)`` with ``s = γ / √(σ² + 1e-3)``.

Images are NHWC in [−1, 1] (clipped there), gray images are repeated to 3 channels, and every
image is resized bilinearly (half-pixel centers, no antialiasing, as ``F.interpolate(...,
mode="bilinear", align_corners=False)``) to 299×299 before the network; the features are the
global average of ``Mixed_7c`` (``(n, 2048)``).

The weights cannot be fetched here; a user supplies them (see :func:`load_inception_params`).
This module was tested with random weights of the right structure only; its numerics have not
been compared with pytorch-fid on the real weights.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax.latent.frechet import frechet_from_features

Array = jax.Array

#: Input side of the network (images are resized to ``INPUT_SIZE × INPUT_SIZE``).
INPUT_SIZE = 299
#: Length of the pool3 feature vector.
FEATURE_DIM = 2048
BN_EPS = 1e-3

# state_dict suffix -> (leaf name in the Flax tree, transpose of the PyTorch array)
_LEAVES = {
    "conv.weight": ("kernel", (2, 3, 1, 0)),  # OIHW -> HWIO
    "bn.weight": ("scale", None),
    "bn.bias": ("bias", None),
    "bn.running_mean": ("mean", None),
    "bn.running_var": ("var", None),
}
#: pytorch-fid's ``fc`` has 1008 outputs; torchvision's ImageNet Inception-v3 (a different
#: network for FID purposes) has 1000 and an ``AuxLogits`` head.
_FID_FC_SHAPE = (1008, 2048)


class ConvBN(nn.Module):
    """``BasicConv2d``: conv (no bias) -> eval-mode batch norm (eps 1e-3) -> ReLU, NHWC.

    Parameters (one ``params`` collection): ``kernel (kh, kw, in, out)``, and per output channel
    ``scale`` (γ), ``bias`` (β), ``mean`` (μ) and ``var`` (σ²), the batch norm's running stats.
    """

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, x.shape[-1], self.features))
        scale = self.param("scale", nn.initializers.ones, (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mean = self.param("mean", nn.initializers.zeros, (self.features,))
        var = self.param("var", nn.initializers.ones, (self.features,))
        ph, pw = self.padding
        y = jax.lax.conv_general_dilated(
            x, kernel, (self.strides, self.strides), ((ph, ph), (pw, pw)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        mult = scale * jax.lax.rsqrt(var + BN_EPS)
        return nn.relu(y * mult + (bias - mean * mult))


def _avg_pool_no_pad(x: Array) -> Array:
    """3×3 stride-1 average with padding 1 that divides by the number of real pixels."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_down(x: Array) -> Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class BlockA(nn.Module):
    """``FIDInceptionA`` (Mixed_5b–5d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg pool→1×1."""

    pool_features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b1 = ConvBN(64, name="branch1x1")(x)
        b5 = ConvBN(48, name="branch5x5_1")(x)
        b5 = ConvBN(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = ConvBN(64, name="branch3x3dbl_1")(x)
        b3 = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = ConvBN(self.pool_features, name="branch_pool")(_avg_pool_no_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class BlockB(nn.Module):
    """``InceptionB`` (Mixed_6a, grid 35 -> 17): 3×3/2 | 1×1→3×3→3×3/2 | max pool/2."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b3 = ConvBN(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = ConvBN(64, name="branch3x3dbl_1")(x)
        bd = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = ConvBN(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_down(x)], axis=-1)


class BlockC(nn.Module):
    """``FIDInceptionC`` (Mixed_6b–6e): factorized 7×7 convolutions with ``c7`` channels."""

    c7: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c7 = self.c7
        b1 = ConvBN(192, name="branch1x1")(x)
        b7 = ConvBN(c7, name="branch7x7_1")(x)
        b7 = ConvBN(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = ConvBN(c7, name="branch7x7dbl_1")(x)
        bd = ConvBN(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = ConvBN(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = ConvBN(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = ConvBN(192, name="branch_pool")(_avg_pool_no_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class BlockD(nn.Module):
    """``InceptionD`` (Mixed_7a, grid 17 -> 8)."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b3 = ConvBN(192, name="branch3x3_1")(x)
        b3 = ConvBN(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = ConvBN(192, name="branch7x7x3_1")(x)
        b7 = ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = ConvBN(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_down(x)], axis=-1)


class BlockE(nn.Module):
    """``FIDInceptionE_1`` (``max_pool=False``, Mixed_7b) / ``FIDInceptionE_2`` (``True``, Mixed_7c)."""

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b1 = ConvBN(320, name="branch1x1")(x)
        b3 = ConvBN(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                ConvBN(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                ConvBN(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            axis=-1,
        )
        bd = ConvBN(448, name="branch3x3dbl_1")(x)
        bd = ConvBN(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                ConvBN(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                ConvBN(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            axis=-1,
        )
        if self.max_pool:
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_no_pad(x)
        bp = ConvBN(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3 up to pool3: ``(n, H, W, 3)`` (299×299 for FID) -> ``(n, 2048)``.

    Submodule names are those of the PyTorch ``state_dict`` (``Conv2d_1a_3x3``, ``Mixed_5b``,
    ``Mixed_5b/branch1x1``, ...), so :func:`load_inception_params` maps names one to one.
    """

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = ConvBN(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)  # 149
        x = ConvBN(32, (3, 3), name="Conv2d_2a_3x3")(x)  # 147
        x = ConvBN(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_down(x)  # 73
        x = ConvBN(80, name="Conv2d_3b_1x1")(x)
        x = ConvBN(192, (3, 3), name="Conv2d_4a_3x3")(x)  # 71
        x = _max_pool_down(x)  # 35
        x = BlockA(32, name="Mixed_5b")(x)  # 256
        x = BlockA(64, name="Mixed_5c")(x)  # 288
        x = BlockA(64, name="Mixed_5d")(x)  # 288
        x = BlockB(name="Mixed_6a")(x)  # 17 x 17 x 768
        x = BlockC(128, name="Mixed_6b")(x)
        x = BlockC(160, name="Mixed_6c")(x)
        x = BlockC(160, name="Mixed_6d")(x)
        x = BlockC(192, name="Mixed_6e")(x)
        x = BlockD(name="Mixed_7a")(x)  # 8 x 8 x 1280
        x = BlockE(False, name="Mixed_7b")(x)  # 2048
        x = BlockE(True, name="Mixed_7c")(x)  # 2048
        return jnp.mean(x, axis=(1, 2))


def param_shapes() -> dict:
    """The Flax parameter tree of :class:`InceptionV3FID` as ``jax.ShapeDtypeStruct`` leaves
    (no computation: ``jax.eval_shape``)."""
    return jax.tree_util.tree_map(lambda s: s, _param_shapes())


@functools.lru_cache(maxsize=1)
def _param_shapes() -> dict:
    x = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return jax.eval_shape(lambda k, x: InceptionV3FID().init(k, x), jax.random.PRNGKey(0), x)["params"]


def _flax_leaves(tree: dict, prefix: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flax_leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def torch_name(path: tuple[str, ...]) -> tuple[str, tuple[int, ...] | None]:
    """PyTorch ``state_dict`` key of a Flax leaf path, and the transpose that maps the PyTorch
    array onto the Flax one (``None``: same layout). E.g. ``("Mixed_5b", "branch1x1", "kernel")``
    -> ``("Mixed_5b.branch1x1.conv.weight", (2, 3, 1, 0))``."""
    *modules, leaf = path
    for suffix, (name, perm) in _LEAVES.items():
        if name == leaf:
            return ".".join(modules) + "." + suffix, perm
    raise KeyError(f"unknown leaf {leaf!r}")


def load_inception_params(path: str | os.PathLike) -> dict:
    """Flax parameters of :class:`InceptionV3FID` from an ``.npz`` of the PyTorch state dict.

    The ``.npz`` holds the arrays of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
    under their ``state_dict`` names (``Conv2d_1a_3x3.conv.weight``,
    ``Conv2d_1a_3x3.bn.running_mean``, ``Mixed_5b.branch1x1.conv.weight``, ...). Make it once
    wherever PyTorch is installed::

        import numpy as np, torch
        sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu")
        np.savez("inception_fid.npz", **{k: v.numpy() for k, v in sd.items()})

    Conv weights ``(out, in, kh, kw)`` become ``(kh, kw, in, out)``; ``fc.*`` and
    ``*.num_batches_tracked`` are ignored. Raises ``ValueError`` (one line) for a missing or
    unreadable file, a missing key (named), a wrong shape (the key and both shapes), or
    torchvision's ImageNet weights (``AuxLogits.*`` keys or a 1000-class ``fc``), whose layer
    names match but which are not the FID network.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"Inception weights file {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as err:  # zipfile/pickle/format errors all mean "not a readable .npz"
        raise ValueError(f"cannot read Inception weights {p} as .npz: {type(err).__name__}: {err}".splitlines()[0]) from None
    return params_from_state_dict(arrays, str(p))


def params_from_state_dict(state_dict: dict[str, np.ndarray], source: str = "state dict") -> dict:
    """The mapping behind :func:`load_inception_params`, for a ``{name: array}`` dict."""
    fc = state_dict.get("fc.weight")
    if any(k.startswith("AuxLogits.") for k in state_dict) or (fc is not None and np.shape(fc) != _FID_FC_SHAPE):
        raise ValueError(
            f"{source}: looks like torchvision's ImageNet Inception-v3 (AuxLogits or fc shape {np.shape(fc)}), "
            f"not pytorch-fid's FID Inception (fc {_FID_FC_SHAPE})"
        )
    shapes = param_shapes()
    out: dict = {}
    missing = []
    for fpath, spec in _flax_leaves(shapes):
        key, perm = torch_name(fpath)
        if key not in state_dict:
            missing.append(key)
            continue
        arr = np.asarray(state_dict[key])
        want = spec.shape if perm is None else tuple(spec.shape[i] for i in np.argsort(perm))
        if arr.shape != want:
            raise ValueError(f"{source}: {key} has shape {arr.shape}, expected {want}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{source}: {key} has dtype {arr.dtype}, expected floats")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{source}: {key} contains NaN or infinite values")
        arr = arr if perm is None else np.transpose(arr, perm)
        node = out
        for k in fpath[:-1]:
            node = node.setdefault(k, {})
        node[fpath[-1]] = jnp.asarray(arr, jnp.float32)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{source}: missing key {missing[0]}{more}; is this pytorch-fid's FID Inception state dict?")
    return out


def check_inception_images(images: np.ndarray) -> None:
    """``ValueError`` unless ``images`` is ``(n ≥ 1, H, W, C)`` with C ∈ {1, 3}, all finite."""
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[0] < 1 or a.shape[-1] not in (1, 3) or min(a.shape[1:3]) < 1:
        raise ValueError(f"images must have shape (n, H, W, C) with C in {{1, 3}}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("images contain NaN or infinite values")


@jax.jit
def _prepare(x: Array) -> Array:
    """Clip to [-1, 1], repeat gray to RGB, resize bilinearly to 299×299."""
    x = jnp.clip(x, -1.0, 1.0)
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    return jax.image.resize(x, (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3), "bilinear", antialias=False)


@jax.jit
def _features(params: dict, x: Array) -> Array:
    return InceptionV3FID().apply({"params": params}, x)


def inception_features(params: dict, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Pool3 features ``(n, 2048)`` of ``images (n, H, W, C)`` in [−1, 1] (clipped), C ∈ {1, 3}.

    Runs in batches of ``min(batch_size, n)`` images (the last one padded), so the network is
    compiled once per batch size, whatever ``n`` and the image size.
    """
    check_inception_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = np.asarray(images, np.float32)
    n = x.shape[0]
    bs = min(batch_size, n)
    feats = []
    for start in range(0, n, bs):
        chunk = x[start : start + bs]
        m = chunk.shape[0]
        if m < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - m, axis=0)])
        feats.append(np.asarray(_features(params, _prepare(jnp.asarray(chunk))))[:m])
    return np.concatenate(feats).astype(np.float64)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of :func:`~adasym_jax.latent.frechet.frechet_from_features` between
    features ``a (n, k)`` and ``b (m, k)``, computed without ``k × k`` eigendecompositions when
    there are fewer samples than features.

    With ``A = (a − ā)/√(n−1)`` and ``B = (b − b̄)/√(m−1)``, Σ_a = AᵀA and Σ_b = BᵀB, and the
    nonzero eigenvalues of Σ_a^{1/2} Σ_b Σ_a^{1/2} are those of Σ_a Σ_b, hence of
    (ABᵀ)(ABᵀ)ᵀ; so tr(Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2} is the sum of the singular values of the
    ``n × m`` matrix ABᵀ and tr Σ = ‖A‖²_F. Exact; for 1000 samples of 2048 features this
    replaces two 2048 × 2048 eigendecompositions by one 1000 × 1000 one. With ``min(n, m) ≥ k``
    it calls ``frechet_from_features``.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    for f in (a, b):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"features must be (n >= 2, k), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("features contain NaN or infinite values")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape} and {b.shape}")
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_from_features(a, b)
    return _gram_frechet(a.mean(0), _centered(a), b)


def _centered(f: np.ndarray) -> np.ndarray:
    return (f - f.mean(0)) / np.sqrt(len(f) - 1)


def _gram_frechet(mu_a: np.ndarray, ca: np.ndarray, b: np.ndarray) -> float:
    cb = _centered(b)
    m = ca @ cb.T
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (gram + gram.T)), 0.0, None)))
    d = np.sum((mu_a - b.mean(0)) ** 2) + np.sum(ca**2) + np.sum(cb**2) - 2.0 * cross
    return float(max(d, 0.0))


def fid(params: dict, images_a: np.ndarray, images_b: np.ndarray, batch_size: int = 32) -> float:
    """FID between two image sets ``(n, H, W, C)`` and ``(m, H', W', C')`` in [−1, 1] (n, m ≥ 2):
    the Fréchet distance of Gaussians fitted to their :func:`inception_features`
    (:func:`fid_from_features`)."""
    for name, imgs in (("images_a", images_a), ("images_b", images_b)):
        check_inception_images(imgs)
        if len(imgs) < 2:
            raise ValueError(f"{name}: FID needs at least 2 images, got {len(imgs)}")
    return fid_from_features(
        inception_features(params, images_a, batch_size), inception_features(params, images_b, batch_size)
    )


class InceptionFID:
    """FID to fixed reference images: ``self(images) -> float``. The reference features are
    computed once; each call costs one pass of the network over ``images``."""

    def __init__(self, params: dict, reference_images: np.ndarray, batch_size: int = 32):
        if len(reference_images) < 2:
            raise ValueError(f"FID needs at least 2 reference images, got {len(reference_images)}")
        self.params = params
        self.batch_size = batch_size
        self.reference_features = inception_features(params, reference_images, batch_size)

    def __call__(self, images: np.ndarray) -> float:
        return fid_from_features(inception_features(self.params, images, self.batch_size), self.reference_features)


__all__ = [
    "FEATURE_DIM",
    "INPUT_SIZE",
    "ConvBN",
    "InceptionFID",
    "InceptionV3FID",
    "check_inception_images",
    "fid",
    "fid_from_features",
    "inception_features",
    "load_inception_params",
    "param_shapes",
    "params_from_state_dict",
    "torch_name",
]
