"""datasets.image_folder: a lazily read folder of class sub-folders, on PNG/JPEG trees made here with Pillow.

Covers the file index (classes, nested folders, ignored files), decoding and resizing, colour
modes, label modes, the seeded split, per-epoch shuffling with its own checkpointed generator,
transforms per batch, bad files (a ValueError naming the file, or all of them with verify=True),
and a fit / evaluate / predict on it.
"""
import importlib

import numpy as np
import pytest
from PIL import Image

from cutedl import Model, Session, augment, datasets, layers, losses, optimizers
from cutedl.data.sources import IndexedSource
from cutedl.training import checkpoint

# the module (``datasets.image_folder`` is the function it exports)
folder_mod = importlib.import_module("cutedl.datasets.image_folder")

# class -> the grey level of its solid-colour images, so labels can be read back from pixels
LEVELS = {"cat": 40, "dog": 120, "emu": 200}


def solid(level, size=(6, 5), mode="RGB"):
    value = (level, 255 - level, level // 2) if mode == "RGB" else level
    if mode == "RGBA":
        value = (level, 255 - level, level // 2, 128)
    return Image.new(mode, size, value)


@pytest.fixture
def tree(tmp_path):
    """cat: 4 PNG (one grayscale, one in a nested folder), dog: 3 JPEG + 1 RGBA PNG, emu: 2 PNG; plus junk."""
    root = tmp_path / "images"
    for name in LEVELS:
        (root / name).mkdir(parents=True)
    lv = LEVELS
    for i in range(3):
        solid(lv["cat"], (6 + i, 5)).save(root / "cat" / f"c{i}.png")
    (root / "cat" / "nested").mkdir()
    solid(lv["cat"], mode="L").save(root / "cat" / "nested" / "gray.PNG")
    for i in range(3):
        solid(lv["dog"], (8, 8)).save(root / "dog" / f"d{i}.jpg", quality=95)
    solid(lv["dog"], mode="RGBA").save(root / "dog" / "alpha.png")
    for i in range(2):
        solid(lv["emu"]).save(root / "emu" / f"e{i}.png")
    (root / "emu" / "README.txt").write_text("not an image, ignored")
    (root / ".hidden").mkdir()   # not a class
    return root


def test_index_shapes_values_and_labels(tree):
    src = datasets.image_folder(tree, size=(4, 3), batch_size=4, shuffle=False)
    assert src.class_names == ["cat", "dog", "emu"]
    assert len(src.file_paths) == 10 and len(src) == 3
    assert src.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert src.file_paths[3].endswith("gray.PNG")   # nested folders count, extensions in any case
    xs, ys = zip(*(src[i] for i in range(len(src))))
    assert [len(x) for x in xs] == [4, 4, 2]
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.dtype == np.float32 and x.shape == (10, 3, 4, 3) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    for img, label in zip(x, y):
        level = LEVELS[src.class_names[label]]
        tol = 3 / 255 if label == 1 else 1e-6   # JPEG is lossy
        if img[0, 0, 0] == img[1, 0, 0]:   # the grayscale file: level in every channel
            np.testing.assert_allclose(img, level / 255, atol=tol)
        else:
            np.testing.assert_allclose(img[0], level / 255, atol=tol)
            np.testing.assert_allclose(img[1], (255 - level) / 255, atol=tol)


def test_reads_lazily_only_the_batch(tree, monkeypatch):
    reads = []
    real = folder_mod._decode
    monkeypatch.setattr(folder_mod, "_decode", lambda path, mode: reads.append(path) or real(path, mode))
    src = datasets.image_folder(tree, size=(4, 4), batch_size=3, seed=0)
    assert reads == []
    src[2]
    assert len(reads) == 3 and set(reads) == {src.file_paths[k] for k in src.order()[6:9]}


def test_color_and_label_modes(tree):
    gray = datasets.image_folder(tree, size=5, color_mode="grayscale", batch_size=10, label_mode="categorical",
                                 shuffle=False)
    x, y = gray[0]
    assert x.shape == (10, 1, 5, 5) and y.shape == (10, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y.argmax(1), gray.labels)
    rgba = datasets.image_folder(tree, size=5, color_mode="rgba", batch_size=10, label_mode=None, shuffle=False)
    (x,) = rgba[0]
    assert x.shape == (10, 4, 5, 5)
    np.testing.assert_allclose(x[4, 3], 128 / 255)   # dog/alpha.png (the first dog file) keeps its alpha
    assert np.all(x[0, 3] == 1.0)                    # opaque RGB -> alpha 1
    with pytest.raises(ValueError, match="label_mode='binary' needs exactly 2 classes, found 3"):
        datasets.image_folder(tree, label_mode="binary")
    two = datasets.image_folder(tree, class_names=["emu", "cat"], label_mode="binary", batch_size=6, shuffle=False)
    x, y = two[0]
    assert two.class_names == ["emu", "cat"] and y.shape == (6, 1) and y[:, 0].tolist() == [0, 0, 1, 1, 1, 1]


def test_split_is_deterministic_and_complementary(tree):
    train, val = datasets.image_folder(tree, size=4, validation_split=0.3, subset="both", seed=7)
    assert len(val.file_paths) == 3 and len(train.file_paths) == 7
    assert not set(train.file_paths) & set(val.file_paths)
    assert sorted(train.file_paths + val.file_paths) == sorted(datasets.image_folder(tree).file_paths)
    again = datasets.image_folder(tree, size=4, validation_split=0.3, subset="validation", seed=7)
    assert again.file_paths == val.file_paths
    assert datasets.image_folder(tree, validation_split=0.3, subset="training", seed=7).file_paths == train.file_paths
    others = [datasets.image_folder(tree, validation_split=0.3, subset="validation", seed=s).file_paths
              for s in range(1, 6)]
    assert any(o != val.file_paths for o in others)
    for f, label in zip(val.file_paths, val.labels):   # labels follow their files
        assert f.split("/")[-2 if "nested" not in f else -3] == val.class_names[label]


def test_shuffle_per_epoch_with_its_own_checkpointed_generator(tree):
    src = datasets.image_folder(tree, size=4, batch_size=4, seed=3)
    epochs = []
    for _ in range(4):
        ys = [src[i][1] for i in range(len(src))]
        epochs.append(src.order().copy())
        assert sorted(np.concatenate(ys).tolist()) == sorted(src.labels.tolist())   # every file once
        src.on_epoch_end()
    assert any((a != epochs[0]).any() for a in epochs[1:])
    twin = datasets.image_folder(tree, size=4, batch_size=4, seed=3)
    assert (twin.order() == epochs[0]).all()
    # the order is drawn from src.rng when an epoch's first batch is read: restoring the generator
    # state saved at an epoch's start (what a checkpoint does) reproduces that epoch's order
    states = checkpoint.generator_states(IndexedSource(src))
    assert "source.rng" in states
    order = src.order().copy()
    fresh = datasets.image_folder(tree, size=4, batch_size=4, seed=99)
    checkpoint.set_generator_states(IndexedSource(fresh), states, "the training data")
    assert (fresh.order() == order).all()
    plain = datasets.image_folder(tree, size=4, batch_size=4, shuffle=False)
    plain.on_epoch_end()
    assert plain.order().tolist() == list(range(10))


def test_transform_is_applied_per_batch(tree):
    seen = []
    flip = augment.RandomFlip("horizontal", probability=1.0, seed=0)
    src = datasets.image_folder(tree, size=(4, 6), batch_size=5, shuffle=False,
                                transform=lambda x: seen.append(x.shape) or flip(x))
    plain = datasets.image_folder(tree, size=(4, 6), batch_size=5, shuffle=False)
    np.testing.assert_array_equal(src[1][0], plain[1][0][..., ::-1])
    assert seen == [(5, 3, 4, 6)]
    train, val = datasets.image_folder(tree, validation_split=0.2, subset="both", seed=0, transform=flip)
    assert train.transform is flip and val.transform is None


def test_bad_files_raise_naming_the_file_or_are_listed_by_verify(tree):
    (tree / "dog" / "notes.png").write_bytes(b"this is text, not a PNG")
    raw = (tree / "dog" / "d0.jpg").read_bytes()
    (tree / "dog" / "truncated.jpg").write_bytes(raw[: len(raw) // 2])
    src = datasets.image_folder(tree, size=4, batch_size=1, shuffle=False)
    bad = {f.rsplit("/", 1)[1]: k for k, f in enumerate(src.file_paths)}
    for name in ("notes.png", "truncated.jpg"):
        with pytest.raises(ValueError, match=rf"cannot read '.*dog/{name}' as an image.*verify=True"):
            src[bad[name]]
    src[bad["d0.jpg"]]   # the good files still read
    with pytest.raises(ValueError, match=r"2 of 12 files cannot be read as images.*notes\.png.*truncated\.jpg"):
        datasets.image_folder(tree, verify=True)


def test_argument_errors(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        datasets.image_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="has no sub-folders; put the images of each class"):
        datasets.image_folder(tmp_path / "flat")
    (tmp_path / "flat" / "a").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        datasets.image_folder(tmp_path / "flat")
    with pytest.raises(ValueError, match="validation_split needs a seed"):
        datasets.image_folder(tree, validation_split=0.2, subset="training")
    with pytest.raises(ValueError, match="needs subset='training', 'validation' or 'both'"):
        datasets.image_folder(tree, validation_split=0.2, seed=0)
    with pytest.raises(ValueError, match="subset='training' needs a validation_split"):
        datasets.image_folder(tree, subset="training")
    with pytest.raises(ValueError, match="leaves 10 for training and 0 for validation"):
        datasets.image_folder(tree, validation_split=0.05, subset="both", seed=0)
    with pytest.raises(ValueError, match="color_mode"):
        datasets.image_folder(tree, color_mode="cmyk")
    with pytest.raises(ValueError, match="size must be"):
        datasets.image_folder(tree, size=(0, 4))
    with pytest.raises(ValueError, match=r"class_names must be distinct sub-folders.*\['cow'\]"):
        datasets.image_folder(tree, class_names=["cat", "cow"])
    with pytest.raises(IndexError, match="out of range"):
        datasets.image_folder(tree, batch_size=4)[3]


def test_fit_evaluate_predict_on_a_folder(tree):
    train, val = datasets.image_folder(tree, size=(8, 8), batch_size=4, validation_split=0.3, subset="both",
                                       seed=0, transform=augment.RandomFlip(seed=1))
    model = Model([layers.Conv2D(4, 3, padding="same", activation="relu", inshape=(3, 8, 8)),
                   layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")]).assemble()
    sess = Session(model, loss=losses.SparseCategoricalCrossentropy(), optimizer=optimizers.Adam(0.01),
                   metrics=["accuracy"])
    history = sess.fit(train, epochs=3, val_data=val, verbose=0)
    assert len(history) == 3 and np.isfinite(history["loss"]).all() and np.isfinite(history["val_loss"]).all()
    result = sess.evaluate(val)
    assert 0.0 <= result["accuracy"] <= 1.0
    unlabeled = datasets.image_folder(tree, size=(8, 8), batch_size=4, label_mode=None, shuffle=False)
    assert model.predict(unlabeled).shape == (10, 3)
