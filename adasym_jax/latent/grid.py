"""Image grids as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def tile(images: np.ndarray, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile ``images (n, H, W, C)`` into one ``(rows·(H+pad)−pad, ncols·(W+pad)−pad, C)`` array,
    rows filled left to right; empty cells and padding are the minimum value (-1)."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    ncols = max(1, min(ncols, n))
    rows = -(-n // ncols)
    out = np.full((rows * (h + pad) - pad, ncols * (w + pad) - pad, c), -1.0, np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, ncols)
        out[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = img
    return out


def _to_rgb(tiled: np.ndarray) -> np.ndarray:
    x = np.clip((tiled + 1.0) / 2.0, 0.0, 1.0)  # [-1, 1] -> [0, 1]
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]


def save_grids(
    path: str | os.PathLike,
    panels: Sequence[np.ndarray],
    titles: Optional[Sequence[str]] = None,
    ncols: int = 10,
    invert: bool = False,
) -> Path:
    """Save one PNG with the image sets ``panels`` (each ``(n, H, W, C)`` in [-1, 1], clipped)
    side by side, each tiled ``ncols`` wide under its title. ``invert`` shows dark-on-light
    (digits are light-on-dark in scikit-learn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = list(titles) if titles is not None else [""] * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, imgs, title in zip(axes[0], panels, titles):
        rgb = _to_rgb(tile(imgs, ncols))
        ax.imshow(1.0 - rgb if invert else rgb, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
