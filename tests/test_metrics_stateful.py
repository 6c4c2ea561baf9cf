"""Stateful metrics (precision, recall, F1, AUC, confusion matrix) against references written here.

References are plain loops over samples (confusion counts, pairwise AUC), never the code under
test. Every metric is also checked for accumulation: the value after several uneven batches, or
after merging the states of two accumulators, equals the value on the concatenated data.
"""
import numpy as np
import pytest

from cutedl import Model, Session, layers, metrics
from cutedl.optimizers import SGD

NAMES = ["precision", "recall", "f1", "auc", "confusion_matrix"]


# --- references ---------------------------------------------------------------------------------


def ref_confusion(true, pred, classes):
    m = np.zeros((classes, classes), dtype=np.int64)
    for t, p in zip(true, pred):
        m[int(t), int(p)] += 1
    return m


def ref_scores(true, pred, classes):
    """Per-class (precision, recall, f1) by counting, 0 for a zero denominator."""
    out = []
    for c in range(classes):
        tp = sum(1 for t, p in zip(true, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(true, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(true, pred) if t == c and p != c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append((precision, recall, f1))
    return out


def ref_auc(positive, scores):
    """P(s+ > s-) + P(s+ == s-) / 2 over every (positive, negative) pair."""
    pos = [s for s, y in zip(scores, positive) if y]
    neg = [s for s, y in zip(scores, positive) if not y]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def binned(scores, num_thresholds=200):
    """The bin index the histogram AUC ranks a score by (see AUC's docstring)."""
    bins = num_thresholds - 1
    return np.clip(np.ceil(np.asarray(scores) * bins), 1, bins)


def softmax64(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def binary_data():
    rs = np.random.default_rng(0)
    y = rs.integers(0, 2, 37)
    p = np.clip(0.35 * y + rs.random(37) * 0.65, 0, 1)  # informative but imperfect
    return y, p


@pytest.fixture
def class_data():
    rs = np.random.default_rng(1)
    y = rs.integers(0, 4, 53)
    p = softmax64(rs.standard_normal((53, 4)) + 1.5 * np.eye(4)[y])
    return y, p


# --- exact values on small data -----------------------------------------------------------------


def test_binary_hand_values():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.8, 0.5])  # predicted 1 1 0 1 0 0 1 0 (0.5 is not > 0.5)
    # tp 3, fp 1, fn 1, tn 3
    assert metrics.get("precision")(y, p) == pytest.approx(3 / 4)
    assert metrics.get("recall")(y, p) == pytest.approx(3 / 4)
    assert metrics.get("f1")(y, p) == pytest.approx(3 / 4)
    assert metrics.Precision(threshold=0.65)(y, p) == pytest.approx(2 / 3)  # 0.9, 0.8 right, 0.7 wrong
    cm = metrics.ConfusionMatrix()
    cm.update(y, p)
    np.testing.assert_array_equal(cm.matrix(), [[3, 1], [1, 3]])
    assert cm.result() == pytest.approx(6 / 8)
    # AUC: positives 0.9 0.6 0.4 0.8, negatives 0.7 0.2 0.1 0.5: 13 of 16 pairs ranked right
    assert metrics.get("auc")(y, p) == pytest.approx(13 / 16)


@pytest.mark.parametrize("target", ["sparse", "column", "one_hot", "probabilities"])
def test_macro_scores_match_counting(class_data, target):
    y, p = class_data
    yt = {"sparse": y, "column": y.reshape(-1, 1), "one_hot": np.eye(4)[y],
          "probabilities": 0.7 * np.eye(4)[y] + 0.075}[target]  # smoothed rows: argmax is the label
    ref = ref_scores(y, p.argmax(axis=1), 4)
    for k, name in enumerate(["precision", "recall", "f1"]):
        assert metrics.get(name)(yt, p) == pytest.approx(np.mean([r[k] for r in ref]), rel=1e-12)
    cm = metrics.ConfusionMatrix(4)
    cm.update(yt, p)
    np.testing.assert_array_equal(cm.matrix(), ref_confusion(y, p.argmax(axis=1), 4))


def test_binary_scores_match_counting(binary_data):
    y, p = binary_data
    pred = (p > 0.5).astype(int)
    precision, recall, f1 = ref_scores(y, pred, 2)[1]
    for yt, pt in ((y, p), (y.reshape(-1, 1), p.reshape(-1, 1)), (y.astype(bool), p), (y.astype(np.float32), p)):
        assert metrics.get("precision")(yt, pt) == pytest.approx(precision, rel=1e-12)
        assert metrics.get("recall")(yt, pt) == pytest.approx(recall, rel=1e-12)
        assert metrics.get("f1")(yt, pt) == pytest.approx(f1, rel=1e-12)
    # macro over the two classes 0 and 1
    ref = ref_scores(y, pred, 2)
    assert metrics.Precision(average="macro")(y, p) == pytest.approx((ref[0][0] + ref[1][0]) / 2, rel=1e-12)
    # two softmax outputs: class 1 is the positive class, as with one output
    two = np.stack([1 - p, p], axis=1)
    assert metrics.get("recall")(np.eye(2)[y], two) == pytest.approx(ref_scores(y, two.argmax(1), 2)[1][1])


def test_classes_never_seen_count_as_zero_in_the_macro_mean():
    y = np.array([0, 0, 1, 1])
    p = np.eye(3)[[0, 0, 1, 0]]  # class 2 never true nor predicted
    # precision: class 0 2/3, class 1 1/1, class 2 0 -> (2/3 + 1 + 0) / 3
    assert metrics.get("precision")(y, p) == pytest.approx((2 / 3 + 1) / 3)


def test_auc_is_exact_when_no_positive_shares_a_bin_with_a_negative():
    rs = np.random.default_rng(2)
    y = rs.integers(0, 2, 40)
    scores = (rs.permutation(199)[:40] + 0.5) / 199  # one score per bin, bins all different
    assert metrics.get("auc")(y, scores) == pytest.approx(ref_auc(y, scores), rel=1e-12)


def test_auc_is_the_pairwise_auc_of_the_binned_scores(binary_data):
    y, p = binary_data
    for n in (200, 7, 2):
        assert metrics.AUC(num_thresholds=n)(y, p) == pytest.approx(ref_auc(y, binned(p, n)), rel=1e-12)
    # within a bin's width of the exact AUC (here: a few pairs tie at 200 thresholds)
    assert abs(metrics.get("auc")(y, p) - ref_auc(y, p)) < 0.01


def test_auc_bins_edges_and_ties():
    # 0 and scores up to 1/199 share the first bin; exact ties between a positive and a negative count half
    y = np.array([1, 0, 1, 0])
    assert metrics.get("auc")(y, np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.5)
    # 1/199 ties with 0 (first bin), 1.0 ties with 0.999 (last bin), 0.99 is a bin lower
    assert metrics.get("auc")(y, np.array([1 / 199, 0.0, 1.0, 0.999])) == pytest.approx((0.5 + 0 + 1 + 0.5) / 4)
    assert metrics.get("auc")(y, np.array([1 / 199, 0.0, 1.0, 0.99])) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert metrics.get("auc")(y, np.array([1.0, 0.0, 0.6, 0.4])) == pytest.approx(1.0)


def test_macro_auc_is_the_mean_one_vs_rest(class_data):
    y, p = class_data
    ref = np.mean([ref_auc(y == c, binned(p[:, c])) for c in range(4)])
    auc = metrics.get("auc")
    assert auc(y, p) == pytest.approx(ref, rel=1e-12)
    assert auc(np.eye(4)[y], p) == pytest.approx(ref, rel=1e-12)
    # a class with no positive (or no negative) is undefined and left out of the mean
    keep = y != 3
    ref3 = np.mean([ref_auc(y[keep] == c, binned(p[keep, c])) for c in range(3)])
    assert auc(y[keep], p[keep]) == pytest.approx(ref3, rel=1e-12)


def test_auc_from_logits_equals_auc_of_probabilities(binary_data, class_data):
    y, p = binary_data
    z = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    sig = 1 / (1 + np.exp(-z))
    assert metrics.AUC(from_logits=True)(y, z) == pytest.approx(metrics.AUC()(y, sig), rel=1e-12)
    yc, pc = class_data
    logits = np.log(pc) + 3.0
    assert metrics.AUC(from_logits=True)(yc, logits) == pytest.approx(metrics.AUC()(yc, softmax64(logits)),
                                                                      rel=1e-12)


def test_undefined_auc_is_zero():
    assert metrics.get("auc")(np.ones(4), np.array([0.1, 0.5, 0.7, 0.9])) == 0.0
    assert metrics.get("auc").result() == 0.0  # nothing seen yet


def test_sequences_and_masks():
    rs = np.random.default_rng(3)
    y = rs.integers(0, 3, (4, 6))
    p = softmax64(rs.standard_normal((4, 6, 3)))
    mask = rs.random((4, 6)) < 0.6
    for name in NAMES:
        m = metrics.get(name)
        assert m(y, p, mask=mask) == m(y[mask], p[mask])
        assert m(y, p) == m(y.reshape(-1), p.reshape(-1, 3))


# --- accumulation over batches ------------------------------------------------------------------


SPLITS = [0, 5, 6, 20, 31]  # uneven batches, one of a single sample


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["binary", "classes"])
def test_accumulated_over_batches_equals_one_batch(name, kind, binary_data, class_data):
    y, p = binary_data if kind == "binary" else class_data
    one = metrics.get(name)(y, p)
    m = metrics.get(name)
    m.reset()
    for a, b in zip(SPLITS, SPLITS[1:] + [len(y)]):
        m.update(y[a:b], p[a:b])
    assert m.result() == one
    # it is a ratio of sums: the mean of per-batch values differs
    per_batch = [metrics.get(name)(y[a:b], p[a:b]) for a, b in zip(SPLITS[1:], SPLITS[2:] + [len(y)])]
    assert np.mean(per_batch) != pytest.approx(one, rel=1e-6)
    m.reset()
    assert m.result() == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_merged_states_equal_the_whole(name, class_data):
    y, p = class_data
    a, b, empty = metrics.get(name), metrics.get(name), metrics.get(name)
    a.update(y[:20], p[:20])
    b.update(y[20:], p[20:])
    a.merge_state(b.get_state())
    a.merge_state(empty.get_state())  # an accumulator that saw nothing adds nothing
    assert a.result() == metrics.get(name)(y, p)
    empty.merge_state(a.get_state())  # and one that saw nothing takes the other's counts
    assert empty.result() == a.result()


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_and_copies(name, binary_data):
    y, p = binary_data
    m = metrics.get(name)
    m.update(y[:20], p[:20])
    state = m.get_state()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in state.values())
    restored = metrics.get(name)
    restored.set_state(state)
    for k in state:
        state[k][...] = 0  # get_state returned copies, and set_state copied them again
    m.update(y[20:], p[20:])
    restored.update(y[20:], p[20:])
    assert restored.result() == m.result() == metrics.get(name)(y, p)
    fresh = metrics.get(name)
    fresh.set_state(metrics.get(name).get_state())  # the state of a metric that saw nothing
    assert fresh.result() == 0.0


def test_calling_leaves_the_accumulated_state_alone(binary_data):
    y, p = binary_data
    m = metrics.get("f1")
    m.update(y, p)
    before = m.result()
    assert m(y[:5], p[:5]) == metrics.get("f1")(y[:5], p[:5])
    assert m.result() == before


def test_confusion_matrix_num_classes_fixes_the_state_shape():
    cm = metrics.ConfusionMatrix(3)
    np.testing.assert_array_equal(cm.matrix(), np.zeros((3, 3)))
    assert cm.get_state()["matrix"].shape == (3, 3)
    assert metrics.ConfusionMatrix().matrix().shape == (0, 0)


# --- protocol, registry and errors --------------------------------------------------------------


@pytest.mark.parametrize("name,cls", [("precision", metrics.Precision), ("recall", metrics.Recall),
                                      ("f1", metrics.F1Score), ("f1_score", metrics.F1Score),
                                      ("auc", metrics.AUC), ("confusion_matrix", metrics.ConfusionMatrix)])
def test_registry_direction_and_protocol(name, cls):
    m = metrics.get(name)
    assert type(m) is cls and m.name == name and m.stateful is True
    assert metrics.direction(name) == "max" and metrics.direction("val_" + name) == "max"
    assert metrics.get("accuracy").stateful is False
    clone = metrics.registry.deserialize(metrics.registry.serialize(m))
    assert type(clone) is cls and clone.get_config() == m.get_config()


@pytest.mark.parametrize("m", [metrics.Precision(threshold=0.3, average="macro", name="p"),
                               metrics.AUC(num_thresholds=50, from_logits=True), metrics.ConfusionMatrix(5, 0.2)])
def test_config_round_trip(m):
    clone = metrics.registry.deserialize(metrics.registry.serialize(m))
    assert clone.get_config() == m.get_config() and clone.name == m.name


def test_errors():
    with pytest.raises(ValueError, match=r"Precision expects binary targets 0 or 1.*got 2"):
        metrics.get("precision")(np.array([0, 2]), np.array([0.1, 0.9]))
    with pytest.raises(ValueError, match=r"Recall\(average='binary'\) got y_pred with 3 classes.*average='macro'"):
        metrics.Recall(average="binary")(np.array([0, 2]), np.eye(3)[[0, 2]])
    with pytest.raises(ValueError, match=r"average must be one of 'binary', 'macro', got 'micro'"):
        metrics.F1Score(average="micro")
    with pytest.raises(ValueError, match=r"ConfusionMatrix\(num_classes=3\) got y_pred with 4 classes"):
        metrics.ConfusionMatrix(3).update(np.array([0, 1]), np.eye(4)[[0, 1]])
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2 or None, got 1"):
        metrics.ConfusionMatrix(1)
    with pytest.raises(ValueError, match=r"AUC expects scores \(probabilities\) in \[0, 1\], got -0\.5.*from_logits=True"):
        metrics.get("auc")(np.array([0, 1]), np.array([-0.5, 0.5]))
    with pytest.raises(ValueError, match=r"AUC expects scores.*got nan"):
        metrics.get("auc")(np.array([0, 1]), np.array([np.nan, 0.5]))
    with pytest.raises(ValueError, match=r"num_thresholds must be an integer >= 2, got 1"):
        metrics.AUC(num_thresholds=1)
    m = metrics.get("precision")
    m.update(np.array([0, 1]), np.eye(3)[[0, 1]])
    with pytest.raises(ValueError, match=r"this batch has 4 classes but the earlier batches had 3.*reset\(\)"):
        m.update(np.array([0, 1]), np.eye(4)[[0, 1]])
    with pytest.raises(ValueError, match=r"merge_state: the other state counts 2 classes, this one 3"):
        m.merge_state({"matrix": np.zeros((2, 2), dtype=np.int64)})
    with pytest.raises(ValueError, match=r"set_state expects the dict returned by get_state\(\), with keys \['matrix'\]"):
        m.set_state({"positives": np.zeros((1, 199))})
    with pytest.raises(ValueError, match=r"'matrix' must be a table of counts \(integers >= 0\) of shape "
                                         r"\(classes, classes\), got dtype float64 and shape \(2, 2\)"):
        m.set_state({"matrix": np.full((2, 2), 0.5)})
    with pytest.raises(ValueError, match=r"'negatives' must be a table of counts.*\(classes, num_thresholds - 1 = 199\)"):
        metrics.AUC().set_state({"positives": np.zeros((1, 199), int), "negatives": np.zeros((1, 10), int)})
    with pytest.raises(ValueError, match=r"the state counts 2 classes but the metric was created with num_classes=3"):
        metrics.ConfusionMatrix(3).set_state({"matrix": np.zeros((2, 2), int)})


def test_session_logs_accumulated_values():
    rs = np.random.default_rng(4)
    x = rs.standard_normal((45, 3)).astype(np.float32)
    y = rs.integers(0, 3, 45)
    model = Model([layers.Dense(3, inshape=3, activation="softmax")]).assemble()
    sess = Session(model, "sparse_categorical_crossentropy", SGD(0.0), metrics=["f1", "auc", "confusion_matrix"])
    logs = sess.evaluate((x, y), batch_size=8)
    pred = sess.predict(x)
    for name in ("f1", "auc", "confusion_matrix"):
        assert logs[name] == pytest.approx(metrics.get(name)(y, pred), rel=1e-6)
