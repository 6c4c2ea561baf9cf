"""cutedl.experiments: repeated runs over seeds (in processes) and comparisons with intervals."""
import math

import numpy as np
import pytest

from cutedl import Dataset, History, Model, Session, experiments, layers
from cutedl.experiments import Run, Runs, compare, repeat, t_quantile


def _data(seed=0, n=60):
    rs = np.random.default_rng(seed)
    labels = rs.integers(0, 2, n)
    x = rs.standard_normal((n, 4)).astype(np.float32)
    x[:, 0] += 2.0 * labels
    return x, labels


def build_session(seed):
    """(Session, fit kwargs): a tiny classifier, seeded batches."""
    x, y = _data()
    model = Model([layers.Dense(8, inshape=(4,), activation="relu"), layers.Dense(2, activation="softmax")]).assemble()
    sess = Session(model, "sparse_categorical_crossentropy", "adam", metrics=["accuracy"])
    return sess, dict(data=Dataset(x[:40], y[:40], batch_size=8, seed=seed), epochs=2, val_data=(x[40:], y[40:]),
                      verbose=0)


def build_callable(seed):
    """A callable that fits and returns (History, extra); seed 3 fails on purpose."""
    def run():
        if seed == 3:
            raise RuntimeError("planted failure")
        sess, kwargs = build_session(seed)
        history = sess.fit(**kwargs)
        return history, {"test_accuracy": np.float64(sess.evaluate(kwargs["val_data"])["accuracy"])}
    return run


# ---------------------------------------------------------------------------- repeat
def test_repeat_in_process_returns_histories_in_seed_order_and_repeats_exactly():
    runs = repeat(build_session, seeds=[2, 0, 1], processes=1)
    assert isinstance(runs, Runs) and runs.seeds == [2, 0, 1] and len(runs.histories) == 3
    assert all(len(h) == 2 for h in runs.histories)
    again = repeat(build_session, seeds=[2], processes=1)
    assert again[0].history["val_loss"] == runs[0].history["val_loss"]  # same seed, same run
    assert runs[0].history["val_loss"] != runs[1].history["val_loss"]  # another seed, another run


def test_repeat_keeps_the_other_runs_when_one_fails_and_reports_its_traceback():
    runs = repeat(build_callable, seeds=[3, 4], processes=1)
    bad, good = runs
    assert not bad.ok and bad.history is None and "planted failure" in bad.error and "Traceback" in bad.error
    assert good.ok and isinstance(good.extra["test_accuracy"], float)
    assert [r.seed for r in runs.failures] == [3]
    assert "seed 3 failed: RuntimeError: planted failure" in str(runs)


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_repeat_in_processes_gives_the_same_histories_as_in_process(context):
    parallel = repeat(build_callable, seeds=[0, 1, 3], processes=2, context=context, threads=1)
    serial = repeat(build_callable, seeds=[0, 1, 3], processes=1)
    assert parallel.seeds == [0, 1, 3] and [r.ok for r in parallel] == [True, True, False]
    for p, s in zip(parallel.ok, serial.ok):
        assert p.history["val_loss"] == s.history["val_loss"] and p.extra == s.extra
    assert "planted failure" in parallel[2].error


def test_repeat_names_an_unpicklable_build():
    runs = repeat(lambda seed: None, seeds=[0, 1], processes=2, context="spawn")
    assert not any(r.ok for r in runs) and "picklable" in runs[0].error


def test_repeat_argument_errors():
    with pytest.raises(TypeError, match="build must be a function"):
        repeat(3)
    with pytest.raises(ValueError, match="seeds is empty"):
        repeat(build_session, seeds=[])
    with pytest.raises(ValueError, match="distinct"):
        repeat(build_session, seeds=[1, 1])
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        repeat(build_session, processes=0)
    runs = repeat(lambda seed: 42, seeds=[0], processes=1)
    assert "must return (Session, fit kwargs)" in runs[0].error


# ---------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("p, df, expected", [  # printed t tables
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262), (0.975, 30, 2.042),
    (0.95, 10, 1.812), (0.995, 5, 4.032), (0.975, 10**7, 1.960), (0.025, 4, -2.776)])
def test_t_quantile_matches_the_table(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-3)


def test_compare_means_intervals_and_paired_bootstrap():
    a = {0: 0.90, 1: 0.92, 2: 0.91, 3: 0.95, 4: 0.93}
    b = {s: v + 0.01 + 0.001 * s for s, v in a.items()}  # always better by 0.010..0.014
    result = compare({"a": a, "b": b}, metric="test_accuracy")
    sa = result.settings["a"]
    v = np.array(list(a.values()))
    half = 2.7764451 * v.std(ddof=1) / math.sqrt(5)
    assert sa.n == 5 and sa.mean == pytest.approx(v.mean()) and sa.std == pytest.approx(v.std(ddof=1))
    assert (sa.low, sa.high) == pytest.approx((v.mean() - half, v.mean() + half))
    d = result.difference("b", "a")
    assert d.n == 5 and d.mean == pytest.approx(0.012)
    # paired: the difference is clearly positive although the two intervals overlap
    assert 0.0104 < d.low < d.mean < d.high < 0.0136 and d.p_positive == 1.0
    assert sa.high > result.settings["b"].low
    text = str(result)
    assert "mean +- CI" in text and f"{v.mean():.4f} +- {half:.4f}" in text and "b - a" in text


def test_compare_takes_runs_and_history_columns_at_the_restored_check():
    def history(values, restored_step=None):
        h = History()
        for i, v in enumerate(values):
            h.append({"step": i + 1, "epoch": i + 1, "val_accuracy": v})
        if restored_step is not None:
            h.restored = {"step": restored_step, "epoch": restored_step}
        return h

    runs = Runs([Run(0, history([0.5, 0.8, 0.7], restored_step=2)), Run(1, history([0.6, 0.7, 0.9])),
                 Run(2, None, error="Traceback ...\nValueError: boom")])
    assert runs.values("val_accuracy") == {0: 0.8, 1: 0.9}
    assert runs.values("val_accuracy", at="last") == {0: 0.7, 1: 0.9}
    assert runs.values("val_accuracy", at="best") == {0: 0.8, 1: 0.9}
    result = compare({"x": runs, "y": [history([0.1]), history([0.2])]}, metric="val_accuracy")
    assert result.settings["x"].n == 2 and result.difference("y", "x").n == 2
    with pytest.raises(KeyError, match="no 'test_accuracy'"):
        runs.values("test_accuracy")


def test_compare_with_real_runs_and_errors():
    runs = repeat(build_callable, seeds=[0, 1], processes=1)
    result = compare({"one": runs, "two": runs}, metric="test_accuracy", baseline="two")
    assert result.difference("one", "two").mean == 0.0
    with pytest.raises(ValueError, match="baseline 'nope'"):
        compare({"one": runs}, baseline="nope")
    with pytest.raises(TypeError, match="non-empty dict"):
        compare({})
    with pytest.raises(TypeError, match="must be Runs"):
        compare({"a": 3})
    assert experiments.__all__
