"""Images in one sub-folder per class, read lazily batch by batch (Keras' ``image_dataset_from_directory``).

    >>> from cutedl import datasets, augment
    >>> train, val = datasets.image_folder("flowers/", size=(64, 64), validation_split=0.2,
    ...                                    subset="both", seed=0,
    ...                                    transform=augment.RandomFlip("horizontal"))
    >>> train.class_names
    ['daisy', 'rose', 'tulip']
    >>> x, y = train[0]          # float32 (32, 3, 64, 64) in [0, 1], int64 (32,)
    >>> session.fit(train, epochs=10, val_data=val)

The folder holds one sub-folder per class (its name is the class name; classes are numbered in
sorted order unless ``class_names`` says otherwise); every PNG, JPEG, BMP or GIF file below a
class folder, at any depth, is an image of that class. Other files (``README.txt``, ``.DS_Store``)
are ignored. Only the file list is built up front; each ``source[i]`` opens, decodes and resizes
the ``batch_size`` files of batch ``i`` with Pillow, so the images never all sit in memory.

The result is an *indexable source* (:mod:`cutedl.data.sources`): ``len(source)`` batches, and
``source[i] -> (x, y)``; ``Session.fit`` / ``evaluate`` / ``predict`` take it directly, and a fit
resumed by BackupAndRestore continues at the batch it stopped at, in the same order.

Bad files. A file with an image extension that Pillow cannot decode (not an image, truncated,
corrupt) raises a ``ValueError`` naming the file when its batch is read (silently skipping it
would change batch sizes and class balance behind the user's back). ``verify=True`` decodes
every file once up front and raises one ``ValueError`` listing all the bad ones, before training.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from cutedl import rng as rng_mod
from cutedl._validate import check_bool, check_choice, check_int, check_number
from cutedl.backend import np
from cutedl.datasets.utils import one_hot

__all__ = ["image_folder", "ImageFolder", "IMAGE_EXTENSIONS"]

#: File extensions read as images (lower case); every other file is ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

_COLOR_MODES = {"rgb": "RGB", "grayscale": "L", "rgba": "RGBA"}
_LABEL_MODES = ("int", "categorical", "binary", None)
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos")


def image_folder(path, size=(256, 256), color_mode: str = "rgb", batch_size: int = 32,
                 validation_split: float | None = None, subset: str | None = None, seed: int | None = None,
                 shuffle: bool = True, transform=None, label_mode: str | None = "int", class_names=None,
                 interpolation: str = "bilinear", verify: bool = False):
    """An indexable source of ``(x, y)`` batches from a folder with one sub-folder of images per class.

    Args:
        path: the folder.
        size: ``(height, width)`` every image is resized to (an int for square images).
        color_mode: ``'rgb'`` (3 channels; grayscale and palette images converted, alpha
            dropped), ``'grayscale'`` (1 channel) or ``'rgba'`` (4).
        batch_size: images per batch; the last batch holds the remainder.
        validation_split: fraction in (0, 1) of the images held out for validation; needs
            ``subset`` and ``seed``.
        subset: with ``validation_split``: ``'training'``, ``'validation'``, or ``'both'``
            (returns ``(training, validation)``). The split is a permutation of all the files drawn
            from ``seed``, the last ``int(validation_split * n)`` going to validation, so two calls
            with the same seed give complementary subsets.
        seed: seed of the split and of the shuffling (default: a child of cutedl's global generator
            for the shuffling; required with ``validation_split``).
        shuffle: a new random order of the images every epoch (``on_epoch_end``); False keeps the
            sorted file order.
        transform: a callable applied to every batch ``x`` (float32 ``(batch, C, h, w)``), e.g.
            ``augment.Compose([augment.RandomCrop(4), augment.RandomFlip()])``. Give it to the
            training subset only (with ``subset='both'`` it goes to the training subset).
        label_mode: ``'int'`` (int64 class ids ``(batch,)``), ``'categorical'`` (float32 one-hot
            ``(batch, classes)``), ``'binary'`` (float32 ``(batch, 1)``, two classes) or None (batches
            are ``(x,)``, for ``predict``).
        class_names: the class folders to use, in label order (default: every sub-folder, sorted).
        interpolation: resizing filter: ``'bilinear'`` (default), ``'nearest'``, ``'bicubic'``,
            ``'area'`` or ``'lanczos'``.
        verify: decode every image once now and raise one ValueError listing the bad files.
    Returns:
        An :class:`ImageFolder` (or a pair of them with ``subset='both'``).
    Raises:
        FileNotFoundError: ``path`` is not a folder. ValueError: no class folder or no image, a
        class name that is not a folder, bad split arguments, or (``verify=True``) bad files.
    """
    who = "image_folder"
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{who}: {str(root)!r} is not a folder; pass a folder holding one sub-folder "
                                f"of images per class.")
    size = _size(who, size)
    color_mode = check_choice(who, "color_mode", color_mode, tuple(_COLOR_MODES))
    batch_size = check_int(who, "batch_size", batch_size, minimum=1)
    shuffle = check_bool(who, "shuffle", shuffle)
    label_mode = check_choice(who, "label_mode", label_mode, _LABEL_MODES)
    interpolation = check_choice(who, "interpolation", interpolation, _INTERPOLATIONS)
    if transform is not None and not callable(transform):
        raise TypeError(f"{who}: transform must be a callable on a batch of images, got {transform!r}.")
    seed = check_int(who, "seed", seed, minimum=0, allow_none=True)
    if validation_split is not None:
        validation_split = check_number(who, "validation_split", validation_split, minimum=0.0, maximum=1.0,
                                        low_open=True, high_open=True)
        if subset is None:
            raise ValueError(f"{who}: validation_split={validation_split} needs subset='training', 'validation' or "
                             f"'both'.")
        if seed is None:
            raise ValueError(f"{who}: validation_split needs a seed (e.g. seed=0), so that the 'training' and "
                             f"'validation' subsets of two calls are complementary.")
    if subset is not None:
        check_choice(who, "subset", subset, ("training", "validation", "both"))
        if validation_split is None:
            raise ValueError(f"{who}: subset={subset!r} needs a validation_split, e.g. validation_split=0.2.")

    class_names, files, labels = _index(who, root, class_names)
    if label_mode == "binary" and len(class_names) != 2:
        raise ValueError(f"{who}: label_mode='binary' needs exactly 2 classes, found {len(class_names)}: "
                         f"{class_names}. Use label_mode='int' or 'categorical'.")
    if verify:
        _verify(who, files)
    common = dict(class_names=class_names, size=size, color_mode=color_mode, batch_size=batch_size,
                  shuffle=shuffle, label_mode=label_mode, interpolation=interpolation)
    if validation_split is None:
        return ImageFolder(files, labels, seed=seed, transform=transform, **common)
    n = len(files)
    n_val = int(validation_split * n)
    if not 0 < n_val < n:
        raise ValueError(f"{who}: validation_split={validation_split} of {n} images leaves "
                         f"{n - n_val} for training and {n_val} for validation; both need at least one.")
    perm = np.random.default_rng((seed, 1)).permutation(n)   # its own stream: not the shuffling's
    train_idx, val_idx = np.sort(perm[:n - n_val]), np.sort(perm[n - n_val:])

    def part(idx, tf, offset):
        return ImageFolder([files[i] for i in idx], labels[idx], seed=seed + offset, transform=tf, **common)

    if subset == "training":
        return part(train_idx, transform, 0)
    if subset == "validation":
        return part(val_idx, transform, 2)
    return part(train_idx, transform, 0), part(val_idx, None, 2)


class ImageFolder:
    """Batches of images read from files on demand (see :func:`image_folder`, which builds it).

    Attributes:
        class_names: class names in label order.
        file_paths: the image files of this subset, in sorted order (not the epoch's order).
        labels: int64 class id of every file, ``(len(file_paths),)``.
        rng: the generator that draws each epoch's order; an attribute, so checkpoints save and
            restore it.
    Indexing: ``source[i] -> (x, y)`` with x float32 ``(batch, C, h, w)`` in [0, 1] (before the
    transform) and y per ``label_mode``; ``len(source)`` is the number of batches. The order of an
    epoch is drawn from ``rng`` when its first batch is read, so a resumed fit whose ``rng`` is
    restored to the epoch's start reads the same order.
    """

    def __init__(self, files, labels, class_names, size, color_mode="rgb", batch_size=32, shuffle=True,
                 seed=None, transform=None, label_mode="int", interpolation="bilinear"):
        self.file_paths = [str(f) for f in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.size = tuple(size)
        self.color_mode = color_mode
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.transform = transform
        self.label_mode = label_mode
        self.interpolation = interpolation
        self.rng = rng_mod.make_rng(seed)
        self._order = None

    @property
    def channels(self) -> int:
        return len(_COLOR_MODES[self.color_mode])

    @property
    def num_samples(self) -> int:
        return len(self.file_paths)

    def __len__(self) -> int:
        return math.ceil(len(self.file_paths) / self.batch_size)

    def order(self):
        """This epoch's order of the files (drawn on first use after :meth:`on_epoch_end`)."""
        if self._order is None:
            n = len(self.file_paths)
            self._order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        return self._order

    def __getitem__(self, i):
        if not isinstance(i, int) and not (hasattr(i, "__index__") and not isinstance(i, bool)):
            raise TypeError(f"ImageFolder: batch index must be an int, got {type(i).__name__}.")
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"ImageFolder: batch {i} out of range for {len(self)} batches.")
        idx = self.order()[i * self.batch_size:(i + 1) * self.batch_size]
        h, w = self.size
        x = np.empty((len(idx), self.channels, h, w), dtype=np.float32)   # (batch, C, h, w)
        for row, k in enumerate(idx):
            x[row] = self.load(self.file_paths[k])
        if self.transform is not None:
            x = self.transform(x)
        if self.label_mode is None:
            return (x,)
        y = self.labels[idx]
        if self.label_mode == "categorical":
            y = one_hot(y, len(self.class_names))
        elif self.label_mode == "binary":
            y = y.astype(np.float32).reshape(-1, 1)
        return x, y

    def load(self, path) -> "np.ndarray":
        """One image file as float32 ``(C, h, w)`` in [0, 1], or a ValueError naming the file."""
        return _read(path, self.color_mode, self.size, self.interpolation)

    def on_epoch_end(self) -> None:
        """Forget this epoch's order: the next epoch draws a new one (when shuffling)."""
        if self.shuffle:
            self._order = None

    def __repr__(self) -> str:
        return (f"ImageFolder({len(self.file_paths)} images, {len(self.class_names)} classes, size={self.size}, "
                f"color_mode={self.color_mode!r}, batch_size={self.batch_size}, batches={len(self)})")


# ---------------------------------------------------------------------------- helpers
def _size(who: str, size) -> tuple:
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    try:
        h, w = pair
        return check_int(who, "size", h, minimum=1), check_int(who, "size", w, minimum=1)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: size must be (height, width) of positive ints, or one int, got {size!r}.") from None


def _index(who: str, root: Path, class_names):
    """``(class_names, files, labels)``: every image file under each class folder, sorted."""
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is None:
        class_names = folders
        if not class_names:
            raise ValueError(f"{who}: {str(root)!r} has no sub-folders; put the images of each class in a "
                             f"sub-folder named after the class, e.g. {str(root / 'cat')}/ and {str(root / 'dog')}/.")
    else:
        class_names = [str(c) for c in class_names]
        missing = [c for c in class_names if c not in folders]
        if missing or len(set(class_names)) != len(class_names):
            raise ValueError(f"{who}: class_names must be distinct sub-folders of {str(root)!r}; "
                             f"{missing or 'duplicates'} are not (found {folders}).")
    files, labels = [], []
    for label, name in enumerate(class_names):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS)]
        files += sorted(found)
        labels += [label] * len(found)
    if not files:
        raise ValueError(f"{who}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders "
                         f"{class_names} of {str(root)!r}.")
    return class_names, files, np.asarray(labels, dtype=np.int64)


_RESAMPLING = {"bilinear": "BILINEAR", "nearest": "NEAREST", "bicubic": "BICUBIC", "area": "BOX",
               "lanczos": "LANCZOS"}


def _decode(path, mode: str):
    """The image in ``path`` decoded and converted to PIL ``mode``; Pillow's errors as they are."""
    from PIL import Image   # Pillow comes with matplotlib; imported only when images are read

    with Image.open(path) as img:
        return img.convert(mode)   # decodes the whole file: a truncated one fails here


# Pillow's errors for a file it cannot decode: UnidentifiedImageError and "image file is
# truncated" are OSErrors; broken headers raise ValueError or SyntaxError; DecompressionBombError
# (an image of absurd size) is an Exception of its own.
def _decode_errors():
    from PIL import Image

    return OSError, ValueError, SyntaxError, Image.DecompressionBombError


def _read(path, color_mode: str, size, interpolation: str):
    from PIL import Image

    try:
        img = _decode(path, _COLOR_MODES[color_mode])
    except _decode_errors() as err:
        raise ValueError(f"image_folder: cannot read {str(path)!r} as an image ({type(err).__name__}: {err}). "
                         f"Remove or re-save the file; image_folder(..., verify=True) lists every bad file "
                         f"before training.") from None
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), getattr(Image.Resampling, _RESAMPLING[interpolation]))
    a = np.asarray(img, dtype=np.float32)   # (h, w) or (h, w, C), 0..255
    a = a.reshape(h, w, -1).transpose(2, 0, 1)   # (C, h, w)
    return a * np.float32(1.0 / 255.0)


def _verify(who: str, files) -> None:
    bad = []
    errors = _decode_errors()
    for f in files:
        try:
            _decode(f, "RGB")
        except errors as err:
            bad.append(f"{f} ({type(err).__name__}: {err})")
    if bad:
        raise ValueError(f"{who}: {len(bad)} of {len(files)} files cannot be read as images; remove or re-save "
                         f"them: " + "; ".join(bad[:20]) + (" ..." if len(bad) > 20 else ""))
