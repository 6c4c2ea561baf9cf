"""cutedl.augment (random crop with padding, random flip) and Dataset's per-batch transform."""
import numpy as np
import pytest

import cutedl
from cutedl import Dataset, Model, Session, augment, layers


def images(n=6, c=3, h=5, w=4, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(dtype)


def shifted(img, dy, dx, fill="constant"):
    """Naive reference: ``img`` (c, H, W) moved by (dy, dx) pixel by pixel, the border filled."""
    c, h, w = img.shape
    out = np.zeros_like(img)
    for r in range(h):
        for k in range(w):
            sr, sk = r + dy, k + dx
            if fill == "edge":
                sr, sk = min(max(sr, 0), h - 1), min(max(sk, 0), w - 1)
            elif fill == "reflect":
                sr = -sr if sr < 0 else (2 * (h - 1) - sr if sr >= h else sr)
                sk = -sk if sk < 0 else (2 * (w - 1) - sk if sk >= w else sk)
            if 0 <= sr < h and 0 <= sk < w:
                out[:, r, k] = img[:, sr, sk]
    return out


def find_shift(src, out, p, fill="constant"):
    hits = [(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)
            if np.array_equal(shifted(src, dy, dx, fill), out)]
    assert hits, "the output is no shift of the input"
    return hits[0]


@pytest.mark.parametrize("fill", ["constant", "edge", "reflect"])
def test_random_crop_is_a_random_shift_of_each_image(fill):
    x = images(n=40, h=5, w=6)
    x0 = x.copy()
    out = augment.random_crop(x, 2, np.random.default_rng(1), mode=fill)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(x, x0)   # input untouched
    shifts = {find_shift(x[i], out[i], 2, fill) for i in range(len(x))}
    assert len(shifts) > 10   # 25 possible shifts, each image drawn independently


def test_random_crop_covers_every_shift_and_keeps_dtype():
    x = np.arange(200 * 9, dtype=np.uint8).reshape(200, 3, 3) % 250 + 1   # (batch, H, W), no zeros
    out = augment.random_crop(x, 1, np.random.default_rng(2))
    assert out.dtype == np.uint8 and out.shape == x.shape
    shifts = [find_shift(x[i][None], out[i][None], 1) for i in range(len(x))]
    assert set(shifts) == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    # zero border exactly where the shift uncovered it
    moved = [i for i, s in enumerate(shifts) if s == (1, 1)]
    assert moved and all((out[i][-1] == 0).all() and (out[i][:, -1] == 0).all() for i in moved)


def test_random_crop_padding_pairs_and_zero():
    x = images(n=30, h=4, w=4)
    out = augment.random_crop(x, (0, 1), np.random.default_rng(3))
    assert all(find_shift(x[i], out[i], 1)[0] == 0 for i in range(len(x)))   # no vertical moves
    same = augment.random_crop(x, 0)
    np.testing.assert_array_equal(same, x)
    assert same is not x


def test_random_flip():
    x = images(n=400, h=3, w=4)
    out = augment.random_flip(x, rng=np.random.default_rng(4))
    flipped = [np.array_equal(out[i], x[i, :, :, ::-1]) for i in range(len(x))]
    kept = [np.array_equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 150 < sum(flipped) < 250
    np.testing.assert_array_equal(augment.random_flip(x, probability=0.0), x)
    np.testing.assert_array_equal(augment.random_flip(x, probability=1.0), x[..., ::-1])
    np.testing.assert_array_equal(augment.random_flip(x, "vertical", probability=1.0), x[..., ::-1, :])
    both = augment.random_flip(x, "horizontal_and_vertical", np.random.default_rng(5))
    kinds = {next(j for j, v in enumerate([x[i], x[i, :, :, ::-1], x[i, :, ::-1], x[i, :, ::-1, ::-1]])
                  if np.array_equal(both[i], v)) for i in range(len(x))}
    assert kinds == {0, 1, 2, 3}


def test_transforms_are_seeded_and_composable():
    x = images(n=16)
    aug = lambda: augment.Compose([augment.RandomCrop(2, seed=7), augment.RandomFlip(seed=8)])  # noqa: E731
    a, b = aug(), aug()
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a(x), b(x))   # the streams advance together
    assert not np.array_equal(a(x), x)
    assert "RandomCrop(seed=7, padding=2" in repr(a)


@pytest.mark.parametrize("call, error, match", [
    (lambda: augment.random_crop(np.zeros((4, 10))), ValueError, r"got an array of shape \(4, 10\).*reshape"),
    (lambda: augment.random_crop([[1]]), TypeError, "expects a NumPy array"),
    (lambda: augment.random_crop(np.zeros((1, 3, 3)), -1), ValueError, "padding must be a non-negative int"),
    (lambda: augment.random_crop(np.zeros((1, 3, 3)), 3, mode="reflect"), ValueError, "smaller than the image"),
    (lambda: augment.RandomCrop(2, mode="wrap"), ValueError, "mode must be one of constant, reflect, edge"),
    (lambda: augment.RandomFlip("diagonal"), ValueError, "mode must be one of horizontal"),
    (lambda: augment.RandomFlip(probability=1.5), ValueError, r"probability must be a number in \[0, 1\]"),
    (lambda: augment.Compose([3]), TypeError, "must be callable"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------------------- Dataset(transform=...)
def test_dataset_applies_the_transform_per_batch_without_touching_the_data():
    x = images(n=10)
    y = np.arange(10)
    x0 = x.copy()
    seen = []

    def flip_all(batch):
        seen.append(len(batch))
        return batch[..., ::-1] * 1   # a new array

    for shuffle in (False, True):
        seen.clear()
        ds = Dataset(x, y, batch_size=4, shuffle=shuffle, transform=flip_all, seed=0)
        for xb, yb in ds:
            np.testing.assert_array_equal(xb, x[yb][..., ::-1])   # labels follow their images
        assert seen == [4, 4, 2]
        for xb, yb in ds.batches(transform=False):
            np.testing.assert_array_equal(xb, x[yb])
        assert seen == [4, 4, 2]
        assert ds.x is x
    np.testing.assert_array_equal(x, x0)


def test_dataset_transform_checks():
    x = images(n=4)
    with pytest.raises(TypeError, match="transform must be a callable"):
        Dataset(x, transform="flip")
    ds = Dataset(x, batch_size=2, transform=lambda b: b[:1])
    with pytest.raises(ValueError, match=r"must return a batch of 2 inputs, got \(1, 3, 5, 4\)"):
        next(iter(ds))
    assert "transform=" in repr(ds)


def test_split_keeps_the_transform_on_the_training_part_only():
    ds = Dataset(images(n=10), np.arange(10), batch_size=5, transform=augment.RandomFlip(seed=0))
    train, val = ds.split(0.2)
    assert train.transform is ds.transform and val.transform is None


def test_fit_augments_training_batches_only():
    cutedl.set_seed(0)
    x = images(n=24, c=1, h=4, w=4)
    y = np.eye(2, dtype=np.float32)[np.arange(24) % 2]
    calls = []

    def crop(batch):
        calls.append(len(batch))
        return augment.random_crop(batch, 1)

    model = Model([layers.Flatten(inshape=(1, 4, 4)), layers.Dense(2, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", "sgd")
    sess.fit(Dataset(x[:16], y[:16], batch_size=8, transform=crop), epochs=3,
             val_data=(x[16:], y[16:]), verbose=0)
    assert calls == [8, 8] * 3   # 2 training batches per epoch; validation untouched
