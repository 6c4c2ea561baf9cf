"""Image augmentation for training: random crops with padding and random flips, batch at a time.

A transform is a callable ``t(x) -> x'`` on a batch of images ``(batch, channels, H, W)``
(channels first, or ``(batch, H, W)``) that returns a new array of the same shape and dtype and
never modifies ``x``. Give one to the *training* :class:`cutedl.data.Dataset`; it is applied to
every batch as the batch is drawn, so each epoch sees new random variants and the dataset
itself is never copied or changed::

    >>> from cutedl import Dataset, augment
    >>> aug = augment.Compose([augment.RandomCrop(4), augment.RandomFlip("horizontal")])
    >>> train = Dataset(x_train, y_train, batch_size=128, transform=aug)
    >>> val = Dataset(x_val, y_val, batch_size=1000, shuffle=False)   # no transform

Each transform draws from its own generator (``seed``, else a child of the global one made
when the transform is created), so ``cutedl.set_seed`` makes a run repeatable.
"""
from __future__ import annotations

import numbers

from cutedl.backend import np

from cutedl import rng as rng_mod

_PAD_MODES = ("constant", "reflect", "edge")
_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


def _check_images(who: str, x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{who} expects a NumPy array of images, got {type(x).__name__}.")
    if x.ndim < 3:
        raise ValueError(f"{who} expects a batch of images (batch, channels, H, W) or (batch, H, W), got an "
                         f"array of shape {x.shape}. Flattened images (batch, features) cannot be cropped or "
                         f"flipped: reshape them first, e.g. x.reshape(-1, 3, 32, 32).")
    return x


def _pair(who: str, name: str, value) -> tuple:
    """An int or a pair of non-negative ints as ``(for H, for W)``."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0 for v in pair):
        raise ValueError(f"{who}: {name} must be a non-negative int or a pair (for H, for W) of them, got {value!r}.")
    return int(pair[0]), int(pair[1])


def random_crop(x: np.ndarray, padding=4, rng=None, mode: str = "constant") -> np.ndarray:
    """Pad every image by ``padding`` on each side, then cut a random window of the original size.

    The standard CIFAR augmentation: with ``padding=4`` each image is shifted by -4..4 pixels in
    each direction independently, the uncovered border filled per ``mode``.

    Args:
        x: images ``(batch, ..., H, W)``, any dtype.
        padding: pixels added on each side, an int or ``(ph, pw)``.
        rng: a ``numpy.random.Generator`` (default: the global cutedl generator).
        mode: border fill: ``'constant'`` (zeros), ``'reflect'`` (mirror without the edge pixel)
            or ``'edge'`` (repeat the edge pixel).
    Returns:
        A new array of ``x``'s shape and dtype.
    """
    x = _check_images("random_crop", x)
    ph, pw = _pair("random_crop", "padding", padding)
    if mode not in _PAD_MODES:
        raise ValueError(f"random_crop: mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}.")
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if mode == "reflect" and (ph >= h or pw >= w):
        raise ValueError(f"random_crop: mode='reflect' needs padding smaller than the image, got padding "
                         f"({ph}, {pw}) for {h}x{w} images. Use mode='edge' or 'constant'.")
    gen = rng_mod.global_rng() if rng is None else rng
    if ph == pw == 0 or n == 0:
        return x.copy()
    x4 = x.reshape(n, -1, h, w)   # (batch, channels, H, W), channels flattened
    padded = np.pad(x4, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode=mode)   # (n, c, H + 2ph, W + 2pw)
    dy = gen.integers(0, 2 * ph + 1, n)
    dx = gen.integers(0, 2 * pw + 1, n)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))   # (n, c, 2ph + 1, 2pw + 1, H, W), a view
    # sample i takes window (dy[i], dx[i]) of every channel: (n,) x c x (n,) x (n,) -> (n, c, H, W)
    out = windows[np.arange(n), :, dy, dx]
    return out.reshape(x.shape)


def random_flip(x: np.ndarray, mode: str = "horizontal", rng=None, probability: float = 0.5) -> np.ndarray:
    """Mirror each image with probability ``probability``, left-right and/or top-bottom.

    Args:
        x: images ``(batch, ..., H, W)``.
        mode: ``'horizontal'`` (left-right), ``'vertical'`` (top-bottom) or
            ``'horizontal_and_vertical'`` (each decided independently).
        rng: a ``numpy.random.Generator`` (default: the global cutedl generator).
        probability: chance that an image is flipped, in [0, 1].
    Returns:
        A new array of ``x``'s shape and dtype.
    """
    x = _check_images("random_flip", x)
    if mode not in _FLIP_MODES:
        raise ValueError(f"random_flip: mode must be one of {', '.join(_FLIP_MODES)}, got {mode!r}.")
    p = _probability("random_flip", probability)
    gen = rng_mod.global_rng() if rng is None else rng
    bshape = (x.shape[0],) + (1,) * (x.ndim - 1)   # one decision per image
    out = x
    if mode in ("horizontal", "horizontal_and_vertical"):
        out = np.where((gen.random(x.shape[0]) < p).reshape(bshape), out[..., ::-1], out)
    if mode in ("vertical", "horizontal_and_vertical"):
        out = np.where((gen.random(x.shape[0]) < p).reshape(bshape), out[..., ::-1, :], out)
    return out


def _probability(who: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{who}: probability must be a number in [0, 1], got {value!r}.")
    return float(value)


class Transform:
    """Base class: ``__call__(x)`` returns a new augmented batch, with the transform's own generator."""

    def __init__(self, seed=None):
        self.seed = seed
        self._rng = rng_mod.make_rng(seed)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomCrop(Transform):
    """:func:`random_crop` as a transform: ``RandomCrop(4)`` is the usual CIFAR shift by up to 4 pixels.

    Args:
        padding: pixels added on each side, an int or ``(ph, pw)``.
        mode: ``'constant'`` (zeros, default), ``'reflect'`` or ``'edge'``.
        seed: seed of the transform's generator.
    """

    def __init__(self, padding=4, mode: str = "constant", seed=None):
        _pair("RandomCrop", "padding", padding)
        if mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: mode must be one of {', '.join(_PAD_MODES)}, got {mode!r}.")
        super().__init__(seed)
        self.padding = padding
        self.mode = mode

    def __call__(self, x):
        return random_crop(x, self.padding, self._rng, self.mode)


class RandomFlip(Transform):
    """:func:`random_flip` as a transform (Keras' ``RandomFlip``): ``RandomFlip('horizontal')``.

    Args:
        mode: ``'horizontal'`` (default), ``'vertical'`` or ``'horizontal_and_vertical'``.
        probability: chance that an image is flipped (default 0.5).
        seed: seed of the transform's generator.
    """

    def __init__(self, mode: str = "horizontal", probability: float = 0.5, seed=None):
        if mode not in _FLIP_MODES:
            raise ValueError(f"RandomFlip: mode must be one of {', '.join(_FLIP_MODES)}, got {mode!r}.")
        self.probability = _probability("RandomFlip", probability)
        super().__init__(seed)
        self.mode = mode

    def __call__(self, x):
        return random_flip(x, self.mode, self._rng, self.probability)


class Compose(Transform):
    """Apply ``transforms`` one after the other: ``Compose([RandomCrop(4), RandomFlip()])``."""

    def __init__(self, transforms):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {t!r}.")
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
