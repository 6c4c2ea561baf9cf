import math

import pytest

from cutedl import History


def test_append_backfills_new_keys_with_nan():
    h = History()
    h.append({"step": 1, "epoch": 1, "loss": 0.5})
    h.append({"step": 2, "epoch": 2, "loss": 0.4, "val_loss": 0.6})
    assert h["step"] == [1, 2] and h["loss"] == [0.5, 0.4]
    assert math.isnan(h["val_loss"][0]) and h["val_loss"][1] == 0.6
    h.append({"step": 3, "epoch": 3, "val_loss": 0.7})
    assert math.isnan(h["loss"][2]) and len(h) == 3
    assert h.last() == {"step": 3, "epoch": 3, "loss": h["loss"][2], "val_loss": 0.7}


def test_values_are_plain_python_numbers():
    import numpy as np

    h = History()
    h.append({"step": np.int64(3), "loss": np.float32(0.25)})
    assert type(h["step"][0]) is int and type(h["loss"][0]) is float


def test_save_load_round_trip(tmp_path):
    h = History()
    h.append({"step": 10, "epoch": 1, "loss": 1.0})
    h.append({"step": 20, "epoch": 2, "loss": 0.5, "val_loss": 0.8})
    h.stop_reason, h.stopped_step, h.stopped_epoch = "early_stopping", 20, 2
    h.best = {"monitor": "val_loss", "mode": "min", "value": 0.8, "step": 20, "epoch": 2}
    h.wall_time = 3.5
    path = tmp_path / "h.json"
    h.save(path)
    h2 = History.load(path)
    assert h2.to_dict() == h.to_dict()
    assert math.isnan(h2["val_loss"][0])


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No history file"):
        History.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid history"):
        History.load(bad)
    bad.write_text('{"history": {"a": [1, 2], "b": [1]}}')
    with pytest.raises(ValueError, match="different lengths"):
        History.load(bad)
