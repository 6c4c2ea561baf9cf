"""Metrics: hand-made values, accuracy's three modes, top-k, directions, batch averaging, errors."""
import numpy as np
import pytest

from cutedl import metrics


# --- accuracy, three modes --------------------------------------------------------------------------


def test_accuracy_binary_mode():
    p = np.array([[0.9], [0.4], [0.6], [0.1]])
    y = np.array([1, 1, 0, 0])
    acc = metrics.get("accuracy")
    # thresholded predictions 1, 0, 1, 0 -> right, wrong, wrong, right
    assert acc(y, p) == 0.5
    assert acc(y.reshape(4, 1), p) == 0.5
    assert acc(y.astype(bool), p.ravel()) == 0.5
    assert acc(y.astype(np.float32), p.ravel()) == 0.5


def test_accuracy_categorical_mode():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    y = np.eye(3)[[1, 1, 2]]
    assert metrics.get("accuracy")(y, p) == pytest.approx(2 / 3)


def test_accuracy_sparse_mode():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    labels = np.array([1, 1, 2])
    acc = metrics.get("acc")
    assert acc(labels, p) == pytest.approx(2 / 3)
    assert acc(labels.reshape(3, 1), p) == pytest.approx(2 / 3)
    assert acc(labels.astype(np.float32), p) == pytest.approx(2 / 3)


def test_accuracy_sparse_sequences():
    # (batch 2, T 3, classes 2): argmax per step is 0,1,0 / 1,1,1
    p = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]],
                  [[0.3, 0.7], [0.1, 0.9], [0.4, 0.6]]])
    labels = np.array([[0, 1, 1], [1, 0, 1]])
    assert metrics.get("accuracy")(labels, p) == pytest.approx(4 / 6)
    assert metrics.get("sparse_categorical_accuracy")(labels, p) == pytest.approx(4 / 6)


def test_accuracy_unmatched_shapes():
    with pytest.raises(ValueError, match=r"Accuracy cannot match y_true of shape \(3, 2\) with y_pred of shape "
                                         r"\(3, 4\).*one-hot.*integer labels of shape \(3,\)"):
        metrics.get("accuracy")(np.zeros((3, 2)), np.zeros((3, 4)))


# --- explicit accuracies ----------------------------------------------------------------------------


def test_binary_accuracy_threshold():
    p = np.array([0.2, 0.45, 0.55, 0.9])
    y = np.array([0, 1, 1, 1])
    assert metrics.get("binary_accuracy")(y, p) == 0.75
    assert metrics.BinaryAccuracy(threshold=0.3)(y, p) == 1.0
    # several outputs per sample: the mean over every entry
    assert metrics.get("binary_accuracy")(np.array([[1, 0], [1, 1]]), np.array([[0.8, 0.7], [0.6, 0.1]])) == 0.5


def test_categorical_accuracy_and_integer_labels_message():
    p = np.array([[0.1, 0.9], [0.8, 0.2]])
    assert metrics.get("categorical_accuracy")(np.array([[0, 1], [0, 1]]), p) == 0.5
    with pytest.raises(ValueError, match=r"CategoricalAccuracy expected one-hot y_true of shape \(2, 2\).*"
                                         r"got \(2,\).*sparse_categorical_accuracy"):
        metrics.get("categorical_accuracy")(np.array([1, 1]), p)


def test_sparse_categorical_accuracy_label_out_of_range():
    with pytest.raises(ValueError, match=r"SparseCategoricalAccuracy: label 5 is out of range for 3 classes"):
        metrics.get("sparse_categorical_accuracy")(np.array([0, 5]), np.zeros((2, 3)))


def test_top_k_accuracy():
    p = np.array([[0.5, 0.3, 0.1, 0.1],   # true 1: rank 1
                  [0.1, 0.2, 0.3, 0.4],   # true 0: rank 3
                  [0.25, 0.25, 0.4, 0.1],  # true 0: one class strictly higher, tie with class 1
                  [0.7, 0.1, 0.1, 0.1]])  # true 0: rank 0
    labels = np.array([1, 0, 0, 0])
    assert metrics.TopKAccuracy(k=1)(labels, p) == 0.25
    assert metrics.TopKAccuracy(k=2)(labels, p) == 0.75
    assert metrics.TopKAccuracy(k=3)(labels, p) == 0.75
    assert metrics.TopKAccuracy(k=4)(labels, p) == 1.0
    # one-hot targets give the same answer
    assert metrics.TopKAccuracy(k=2)(np.eye(4)[labels], p) == 0.75
    default = metrics.get("top_k_accuracy")
    assert default.k == 5 and default.name == "top_k_accuracy" and default(labels, p) == 1.0
    assert metrics.get("top_k_accuracy", k=2)(labels, p) == 0.75


def test_top_k_equals_categorical_accuracy_for_k_1():
    rs = np.random.default_rng(0)
    p = rs.random((50, 7))
    labels = rs.integers(0, 7, 50)
    expected = np.mean([p[i].argmax() == labels[i] for i in range(50)])
    assert metrics.TopKAccuracy(k=1)(labels, p) == pytest.approx(expected)


def test_top_k_bad_k():
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.TopKAccuracy(k=0)


# --- regression metrics -----------------------------------------------------------------------------


def test_mae_and_mse_values():
    y = np.array([[0.0, 1.0], [2.0, 3.0]])
    p = np.array([[1.0, 1.0], [2.0, 0.0]])
    assert metrics.get("mae")(y, p) == pytest.approx(1.0)
    assert metrics.get("mean_absolute_error")(y, p) == pytest.approx(1.0)
    assert metrics.get("mse")(y, p) == pytest.approx(2.5)
    assert metrics.get("mean_squared_error")(y, p) == pytest.approx(2.5)
    # integer inputs and a trailing axis of 1
    assert metrics.get("mse")(np.array([1, 2]), np.array([[1], [4]])) == pytest.approx(2.0)


def test_regression_shape_mismatch():
    with pytest.raises(ValueError, match=r"MeanSquaredError expected y_true of shape \(2, 3\).*got \(2, 2\)"):
        metrics.get("mse")(np.zeros((2, 2)), np.zeros((2, 3)))


# --- names, directions, registry --------------------------------------------------------------------


def test_names_follow_the_identifier():
    assert metrics.get("accuracy").name == "accuracy"
    assert metrics.get("acc").name == "acc"
    assert metrics.get("MAE").name == "mae"
    assert metrics.Accuracy().name == "accuracy"
    assert metrics.Accuracy(name="my_acc").name == "my_acc"


@pytest.mark.parametrize("key,expected", [
    ("loss", "min"), ("val_loss", "min"), ("accuracy", "max"), ("val_accuracy", "max"), ("val_acc", "max"),
    ("top_k_accuracy", "max"), ("sparse_categorical_accuracy", "max"), ("mae", "min"), ("val_mse", "min"),
    ("mean_squared_error", "min"), ("val_categorical_crossentropy", "min"),
])
def test_direction(key, expected):
    assert metrics.direction(key) == expected


def test_direction_unknown_key_lists_known_keys():
    with pytest.raises(ValueError, match=r"Unknown log key 'val_kappa'.*loss.*accuracy.*mae"):
        metrics.direction("val_kappa")


def test_metric_directions():
    for name, cls in metrics.registry.classes().items():
        expected = "min" if name in ("mae", "mse") else "max"
        assert cls.direction == expected, name


def test_config_round_trip():
    for m in (metrics.TopKAccuracy(k=3), metrics.BinaryAccuracy(threshold=0.2, name="b"), metrics.get("acc")):
        clone = metrics.registry.deserialize(metrics.registry.serialize(m))
        assert type(clone) is type(m) and clone.get_config() == m.get_config() and clone.name == m.name


# --- batch-weighted averaging -----------------------------------------------------------------------


def _dataset(name, rs):
    n = 23
    if name in ("mae", "mse"):
        return rs.standard_normal((n, 3)), rs.standard_normal((n, 3))
    if name == "binary_accuracy":
        return rs.integers(0, 2, (n, 1)), rs.random((n, 1))
    if name == "categorical_accuracy":
        return np.eye(6)[rs.integers(0, 6, n)], rs.random((n, 6))
    return rs.integers(0, 6, n), rs.random((n, 6))  # sparse labels: accuracy, sparse, top-k


# stateful metrics (precision, AUC...) are ratios of sums instead: tests/test_metrics_stateful.py
@pytest.mark.parametrize("name", [n for n, cls in metrics.registry.classes().items() if not cls.stateful])
def test_batch_weighted_average_equals_dataset_value(name):
    rs = np.random.default_rng(42)
    y, p = _dataset(name, rs)
    kwargs = {"k": 2} if name == "top_k_accuracy" else {}
    metric = metrics.get(name, **kwargs)
    edges = [0, 8, 16, 23]  # the last batch is smaller
    weighted = sum(metric(y[a:b], p[a:b]) * (b - a) for a, b in zip(edges, edges[1:])) / 23
    assert weighted == pytest.approx(metric(y, p), rel=1e-12)


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", metrics.registry.names())
def test_batch_sizes_differ(name):
    with pytest.raises(ValueError, match=r"batch sizes differ: y_true has 3 samples.*y_pred has 4"):
        metrics.get(name)(np.zeros(3, dtype=np.int64), np.full((4, 2), 0.5))


@pytest.mark.parametrize("name", metrics.registry.names())
def test_empty_batch(name):
    with pytest.raises(ValueError, match="got an empty batch"):
        metrics.get(name)(np.zeros(0), np.zeros((0, 2)))


def test_non_numeric_raises_type_error():
    with pytest.raises(TypeError, match="Accuracy expects numeric arrays, got y_true with dtype"):
        metrics.get("accuracy")(np.array(["a", "b"]), np.zeros((2, 2)))
