"""Convolutional autoencoder of Appendix C.2 (Algorithms 7–8) in Flax, trained with MSE.

Images are ``(N, H, W, C)`` float arrays with 8 ≤ H, W ≤ 64 (the paper: 64×64×3 CelebA
scaled to [-1, 1], a 100-D latent). Every convolution has kernel 4, stride 2 and padding 1,
so each halves (encoder) or doubles (decoder) the spatial size. Algorithm 7 has four of them
(32, 64, 128, 256 channels: 64×64 -> 4×4); smaller images use the first ``L`` of them with
``L = min(4, log2(min(H, W)) − 1)`` so the smallest feature map stays at least 2×2 (8×8
digits: two convolutions, 8×8 -> 2×2 with 64 channels). An MLP maps the flattened features
to the latent; the decoder mirrors it (MLP, then transposed convolutions with ReLU between
them, the last one to C channels without activation, as in Algorithm 8).
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from adasym_jax.checkpoint import Standardization

Array = jax.Array
CHANNELS = (32, 64, 128, 256)
MIN_SIZE, MAX_SIZE = 8, 64


def num_levels(height: int, width: int) -> int:
    """Number of stride-2 convolutions for an ``height × width`` image (see module doc)."""
    return min(len(CHANNELS), int(math.log2(min(height, width))) - 1)


def check_images(images, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a finite float ``(N, H, W, C)`` array that the
    autoencoder can take: 8 ≤ H, W ≤ 64, both divisible by 2**num_levels, N ≥ 1."""
    shape = getattr(images, "shape", None)
    if shape is None:
        raise ValueError(f"{name} must be an array of shape (N, H, W, C), got {type(images).__name__}")
    if len(shape) != 4:
        raise ValueError(f"{name} must have rank 4 (N, H, W, C), got shape {tuple(shape)}")
    n, h, w, c = (int(s) for s in shape)
    if n < 1 or c < 1:
        raise ValueError(f"{name} has an empty axis: shape {tuple(shape)}")
    if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
        raise ValueError(f"{name} must be between {MIN_SIZE}x{MIN_SIZE} and {MAX_SIZE}x{MAX_SIZE} pixels, got {h}x{w}")
    factor = 2 ** num_levels(h, w)
    if h % factor or w % factor:
        raise ValueError(f"{name} height and width must be divisible by {factor} for {h}x{w} images")
    arr = np.asarray(images)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite pixel values")


def check_latent_dim(latent_dim: int, image_shape: Sequence[int]) -> None:
    """Raise ``ValueError`` unless 1 ≤ ``latent_dim`` ≤ H·W·C (a code no larger than the input)."""
    size = int(np.prod(image_shape))
    if not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
        raise ValueError(f"latent dimension must be a positive integer, got {latent_dim!r}")
    if latent_dim > size:
        raise ValueError(f"latent dimension {latent_dim} is larger than the input size {size} (= H*W*C)")


def _torch_like_padding() -> tuple[tuple[int, int], tuple[int, int]]:
    # PyTorch ConvTranspose2d(k=4, s=2, p=1) pads the stride-dilated input by k − 1 − p = 2.
    return ((2, 2), (2, 2))


class ConvAutoencoder(nn.Module):
    """Algorithms 7 (encoder) and 8 (decoder).

    Attributes: ``latent_dim`` d; ``image_shape`` (H, W, C); ``mlp_hidden`` width of the hidden
    layer of the encoder's and decoder's MLPs.

    ``encode(x (n, H, W, C)) -> (n, d)``, ``decode(z (n, d)) -> (n, H, W, C)``,
    ``__call__(x) -> reconstruction``.
    """

    latent_dim: int
    image_shape: tuple[int, int, int]
    mlp_hidden: int = 256

    def setup(self):
        h, w, c = self.image_shape
        levels = num_levels(h, w)
        chans = CHANNELS[:levels]
        self._low = (h // 2**levels, w // 2**levels, chans[-1])
        self.enc_convs = [nn.Conv(ch, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1))) for ch in chans]
        self.enc_mlp = [nn.Dense(self.mlp_hidden), nn.Dense(self.latent_dim)]
        self.dec_mlp = [nn.Dense(self.mlp_hidden), nn.Dense(int(np.prod(self._low)))]
        out_chans = list(chans[:-1][::-1]) + [c]
        self.dec_convs = [
            nn.ConvTranspose(ch, (4, 4), strides=(2, 2), padding=_torch_like_padding()) for ch in out_chans
        ]

    def encode(self, x: Array) -> Array:
        for conv in self.enc_convs:
            x = nn.relu(conv(x))
        x = x.reshape(x.shape[0], -1)
        return self.enc_mlp[1](nn.relu(self.enc_mlp[0](x)))

    def decode(self, z: Array) -> Array:
        x = nn.relu(self.dec_mlp[1](nn.relu(self.dec_mlp[0](z))))
        x = x.reshape((z.shape[0],) + self._low)
        for i, conv in enumerate(self.dec_convs):
            x = conv(x)
            if i < len(self.dec_convs) - 1:
                x = nn.relu(x)
        return x

    def __call__(self, x: Array) -> Array:
        return self.decode(self.encode(x))


class AutoencoderFit(NamedTuple):
    """A trained autoencoder: ``model``, ``params``, per-epoch train MSE ``(epochs,)``,
    test MSE (NaN without test images) and wall-clock seconds."""

    model: ConvAutoencoder
    params: dict
    train_mse: np.ndarray
    test_mse: float
    seconds: float


def train_autoencoder(
    images: np.ndarray,
    latent_dim: int,
    *,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    mlp_hidden: int = 256,
    seed: int = 0,
    test_images: Optional[np.ndarray] = None,
) -> AutoencoderFit:
    """Train with Adam on the mean squared reconstruction error (C.2 defaults: 20 epochs,
    batch 128, LR 1e-3). Each epoch is a fresh permutation cut into ``N // batch_size`` full
    batches (the remainder changes every epoch). Adam uses its usual β = (0.9, 0.999)."""
    check_images(images)
    if test_images is not None:
        check_images(test_images, "test images")
        if test_images.shape[1:] != images.shape[1:]:
            raise ValueError(f"test images have shape {test_images.shape[1:]}, train images {images.shape[1:]}")
    image_shape = tuple(int(s) for s in images.shape[1:])
    check_latent_dim(latent_dim, image_shape)
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    n = images.shape[0]
    bs = min(batch_size, n)
    steps = n // bs
    model = ConvAutoencoder(int(latent_dim), image_shape, mlp_hidden)
    key = jax.random.PRNGKey(seed)
    k_init, k_run = jax.random.split(key)
    x = jnp.asarray(images, jnp.float32)
    params = model.init(k_init, x[:1])["params"]
    tx = optax.adam(lr)
    opt = tx.init(params)

    def loss_fn(p, xb):
        return jnp.mean((model.apply({"params": p}, xb) - xb) ** 2)

    @jax.jit
    def epoch(params, opt, key):
        idx = jax.random.permutation(key, n)[: steps * bs].reshape(steps, bs)

        def body(carry, rows):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p, x[rows])
            upd, o = tx.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss

        (params, opt), losses = jax.lax.scan(body, (params, opt), idx)
        return params, opt, jnp.mean(losses)

    t0 = time.perf_counter()
    hist = []
    for k in jax.random.split(k_run, epochs):
        params, opt, loss = epoch(params, opt, k)
        hist.append(float(loss))
    test_mse = float("nan")
    if test_images is not None:
        rec = reconstruct(model, params, test_images)
        test_mse = float(np.mean((rec - np.asarray(test_images, np.float32)) ** 2))
    return AutoencoderFit(model, params, np.asarray(hist), test_mse, time.perf_counter() - t0)


def _batched(fn, arr: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(fn(jnp.asarray(arr[i : i + batch]))) for i in range(0, len(arr), batch)])


def encode(model: ConvAutoencoder, params: dict, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Latents ``(N, d)`` of ``images (N, H, W, C)``, computed ``batch`` images at a time."""
    check_images(images)
    f = jax.jit(lambda x: model.apply({"params": params}, x, method="encode"))
    return _batched(f, np.asarray(images, np.float32), batch)


def decode(model: ConvAutoencoder, params: dict, latents: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Images ``(N, H, W, C)`` decoded from ``latents (N, d)``."""
    latents = np.asarray(latents, np.float32)
    if latents.ndim != 2 or latents.shape[1] != model.latent_dim:
        raise ValueError(f"latents must have shape (N, {model.latent_dim}), got {latents.shape}")
    f = jax.jit(lambda z: model.apply({"params": params}, z, method="decode"))
    return _batched(f, latents, batch)


def reconstruct(model: ConvAutoencoder, params: dict, images: np.ndarray, batch: int = 1024) -> np.ndarray:
    """``decode(encode(images))``."""
    return decode(model, params, encode(model, params, images, batch), batch)


#: The standardization of latents (and of pixels in pixel space) is the package's one type,
#: :class:`adasym_jax.checkpoint.Standardization` (``fit``, ``apply``, ``invert``, ``log_det``
#: = +Σ log std); the old name stays importable.
LatentScaler = Standardization
