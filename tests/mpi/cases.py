"""Training cases run both in one process (the reference) and under ``mpiexec`` by run_cases.py.

Each case builds its data and model from fixed seeds, so rank 0's model, every rank's data order
and the one-process run start from the same point; ``run(name, strategy)`` returns what the
tests compare: final weights and the History.
"""
import numpy as np

import cutedl
from cutedl import Dataset, Model, Session, layers, listeners, optimizers


def data(kind, n, dtype, seed=0):
    rs = np.random.default_rng(seed)
    if kind == "cnn":
        x = rs.standard_normal((n, 1, 6, 6))
    elif kind == "lstm":
        x = rs.standard_normal((n, 5, 3))
    else:
        x = rs.standard_normal((n, 7))
    y = np.eye(3)[rs.integers(0, 3, n)]
    return x.astype(dtype), y.astype(dtype)


def model(kind, dtype, dropout=0.0, bn=None):
    cutedl.set_seed(3)
    if kind == "cnn":
        stack = [layers.Conv2D(3, 3, inshape=(1, 6, 6), activation="relu", dtype=dtype), layers.MaxPooling2D(2),
                 layers.Flatten(), layers.Dense(3, activation="softmax", dtype=dtype)]
    elif kind == "lstm":
        stack = [layers.LSTM(6, inshape=(5, 3), dtype=dtype), layers.Dense(3, activation="softmax", dtype=dtype)]
    else:
        stack = [layers.Dense(8, inshape=7, dtype=dtype)]
        if bn is not None:
            stack.append(layers.BatchNormalization(sync=bn, momentum=0.9, dtype=dtype))
        stack.append(layers.Activation("tanh"))
        if dropout:
            stack.append(layers.Dropout(dropout))
        stack.append(layers.Dense(3, activation="softmax", dtype=dtype))
    return Model(stack).assemble()


# name: (model kind, dtype, training samples, batch size, epochs, dropout, BatchNormalization sync)
# 91 samples in batches of 10 end with a batch of 1: one rank of 2 or 3 trains on nothing there.
CASES = {
    "mlp64": ("mlp", "float64", 91, 10, 5, 0.0, None),
    "cnn64": ("cnn", "float64", 91, 10, 5, 0.0, None),
    "lstm64": ("lstm", "float64", 91, 10, 5, 0.0, None),
    "mlp32": ("mlp", "float32", 91, 10, 5, 0.0, None),
    "syncbn64": ("mlp", "float64", 90, 15, 5, 0.0, True),
    "bn64": ("mlp", "float64", 90, 15, 2, 0.0, False),
    "dropout64": ("mlp", "float64", 91, 10, 2, 0.3, None),
}


def session(name, strategy=None):
    kind, dtype, n, batch, epochs, dropout, bn = CASES[name]
    m = model(kind, dtype, dropout, bn)
    sess = Session(m, "categorical_crossentropy", optimizers.Adam(0.01), metrics=["accuracy"], strategy=strategy)
    return sess, epochs


def fit(name, strategy=None, listeners_=(), epochs=None):
    kind, dtype, n, batch, default_epochs, dropout, bn = CASES[name]
    x, y = data(kind, n, dtype)
    vx, vy = data(kind, 23, dtype, seed=1)  # 23 in batches of 10: a last shard of 3
    sess, _ = session(name, strategy)
    h = sess.fit(Dataset(x, y, batch_size=batch, seed=5), epochs=epochs or default_epochs,
                 val_data=Dataset(vx, vy, batch_size=10, shuffle=False), listeners=list(listeners_), verbose=0)
    return sess, h


def run(name, strategy=None):
    sess, h = fit(name, strategy)
    return {"weights": [np.array(w) for w in sess.model.get_weights()], "history": h.history,
            "steps": sess.state.step}


class StopAt(listeners.Listener):
    """Stop the fit (as Ctrl-C would) after ``step``."""

    def __init__(self, step):
        self.step = step

    def on_batch_end(self, step, logs=None):
        if step == self.step:
            self.session.stop_fit("interrupted")
