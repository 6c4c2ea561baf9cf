"""Image grids for the examples' report PNGs (shared by autoencoder.py and gan.py).

Like :mod:`cutedl.reports`, nothing here touches ``matplotlib.pyplot``: a figure is a
``Figure`` on its own Agg canvas (headless, no global figure registry), rendered to memory and
written through a temporary file and ``os.replace``, so a reader (or an image viewer refreshing
during training) never sees half a PNG. matplotlib is imported inside the functions.

    >>> fig = new_figure((6, 3))
    >>> draw_images(fig.add_subplot(), x[:20], ncols=10, row_labels=['input', 'output'])
    >>> save_png(fig, 'reports/grid.png')
"""
from __future__ import annotations

import io
import math
import os
import tempfile

import numpy as np

__all__ = ["image_grid", "draw_images", "new_figure", "save_png"]


def image_grid(images, ncols: int | None = None, shape: tuple[int, int] = (28, 28), pad: int = 1,
               fill: float = 1.0) -> np.ndarray:
    """Tile ``images`` row by row into one 2-D array.

    Args:
        images: ``(n, h * w)`` flat or ``(n, h, w)`` images, values in [0, 1].
        ncols: images per row (default: the smallest square grid that holds them all).
        shape: ``(h, w)`` of one image when they are flat.
        pad: pixels of ``fill`` between images and around the grid.
        fill: value of the padding (1.0: white lines on the gray colormap).

    Returns:
        ``(rows * (h + pad) + pad, ncols * (w + pad) + pad)`` float32 array; unused cells are ``fill``.
    """
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    h, w = shape if images.ndim == 2 else images.shape[1:3]
    if images.ndim not in (2, 3) or images[0].size != h * w:
        raise ValueError(f"image_grid expects (n, {h * w}) flat or (n, h, w) images, got shape {images.shape}.")
    if n == 0:
        raise ValueError("image_grid got no images.")
    ncols = math.ceil(math.sqrt(n)) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"image_grid: ncols must be a positive integer, got {ncols!r}.")
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), fill, dtype=np.float32)
    for i, img in enumerate(images.reshape(n, h, w)):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = img
    return grid


def draw_images(ax, images, ncols: int | None = None, shape: tuple[int, int] = (28, 28),
                row_labels=None, title: str | None = None) -> None:
    """Draw :func:`image_grid` of ``images`` into a Matplotlib ``Axes`` (gray, 0 black, 1 white).

    ``row_labels``, one string per grid row, are written left of the rows; ticks are hidden.
    """
    pad = 1
    grid = image_grid(images, ncols=ncols, shape=shape, pad=pad)
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    h = shape[0] if np.ndim(images) == 2 else np.shape(images)[1]
    if row_labels:
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(row_labels))], labels=list(row_labels))
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, fontsize=10)


def new_figure(figsize: tuple[float, float], dpi: int = 100):
    """A ``Figure`` on its own Agg canvas (no pyplot, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path, dpi: int = 100) -> str:
    """Render ``fig`` to PNG and replace ``path`` atomically (parent directories are created)."""
    path = os.fspath(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    fig.clear()  # drop the artists now: the figure is redrawn at every check
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
