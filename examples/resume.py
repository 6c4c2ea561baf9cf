"""Training that never loses work: a run killed mid-epoch resumes from its checkpoint, bit for bit.

The MNIST MLP (784-400-100-10, ReLU, Dropout) trains with Adam on a cosine learning-rate
schedule with warm-up. ``BackupAndRestore`` writes a full training checkpoint every
``--every`` steps (model, optimizer state, listener states, history, position in the epoch,
data order, random-generator states). The script trains twice:

1. straight through, ``--epochs`` epochs;
2. again from scratch, but the process "dies" at step ``--kill-at`` (a listener raises); then a
   fresh model, optimizer, dataset and listener list, built with another global seed as a new
   process would, call ``fit`` with the same BackupAndRestore directory and continue from the
   last checkpoint.

It prints whether the final weights and the History (every column but wall-clock time) are
identical, and writes the resumed run's fit report (loss, accuracy and the lr schedule) to
``reports/resume.png``. The CSV log of the resumed run has every check exactly once.

    python examples/resume.py                         # 10,000 images, 4 epochs, killed at step 150
    python examples/resume.py --kill-at 333 --every 50
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np

import cutedl
from cutedl import Dataset, History, Model, Session, datasets, layers, listeners, optimizers, reports, schedules


class Crash(listeners.Listener):
    """Stands for a killed process: raises at the end of step ``at`` (None: never)."""

    def __init__(self, at=None):
        self.at = at

    def on_batch_end(self, step, logs=None):
        if self.at is not None and step == self.at:
            raise RuntimeError(f"simulated crash at step {step}")


def build_session(args, seed: int):
    cutedl.set_seed(seed)
    model = Model([layers.Dense(400, inshape=784, activation="relu"), layers.Dropout(0.2),
                   layers.Dense(100, activation="relu"), layers.Dense(10, activation="softmax")]).assemble()
    steps = args.epochs * -(-args.limit // args.batch_size)
    warmup = max(1, steps // 10)
    lr = schedules.CosineDecay(0.0, decay_steps=max(1, steps - warmup), warmup_steps=warmup, warmup_target=args.lr,
                               alpha=0.05)
    return Session(model, "categorical_crossentropy", optimizers.Adam(lr=lr), metrics=["accuracy"])


def train(args, data, workdir, seed, kill_at=None):
    """One fit with checkpoints in ``workdir``; returns (session, History or the crash)."""
    (x_train, y_train), (x_val, y_val) = data
    sess = build_session(args, seed)
    # EarlyStopping is stateful (wait, best value, best weights): all of it resumes too
    lst = [listeners.EarlyStopping("val_loss", patience=10**6),
           listeners.CSVLogger(os.path.join(workdir, "log.csv"), append=True),
           listeners.BackupAndRestore(os.path.join(workdir, "backup"), every=args.every),
           Crash(kill_at)]
    try:
        h = sess.fit(Dataset(x_train, y_train, batch_size=args.batch_size), epochs=args.epochs,
                     val_data=Dataset(x_val, y_val, batch_size=1000, shuffle=False), val_steps=args.val_steps,
                     listeners=lst, verbose=args.verbose)
    except RuntimeError as err:
        return sess, lst, err
    return sess, lst, h


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak lr of the cosine schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=10000, help="training images to use")
    p.add_argument("--kill-at", type=int, default=150, help="step at which the second run dies")
    p.add_argument("--every", type=int, default=40, help="steps between checkpoints")
    p.add_argument("--val-steps", type=int, default=20, help="steps between checks (0: once per epoch)")
    p.add_argument("--report", default="reports/resume.png")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="BLAS threads (cutedl.threads.set_num_threads); None leaves them as they are")
    args = p.parse_args(argv)
    if args.threads is not None:
        from cutedl import threads

        threads.set_num_threads(args.threads)

    cutedl.set_seed(args.seed)
    (x_train, y_train), (x_val, y_val), _ = datasets.mnist.load_vectors(limit=args.limit)
    args.limit = len(x_train)
    data = ((x_train, y_train), (x_val, y_val))
    root = tempfile.mkdtemp(prefix="cutedl-resume-")
    try:
        t0 = time.perf_counter()
        straight, _, h_straight = train(args, data, os.path.join(root, "straight"), args.seed)
        t_straight = time.perf_counter() - t0
        _, _, crash = train(args, data, os.path.join(root, "killed"), args.seed, kill_at=args.kill_at)
        if not isinstance(crash, RuntimeError):
            raise ValueError(f"--kill-at {args.kill_at} is beyond the run's {straight.step} steps.")
        t0 = time.perf_counter()
        resumed, lst, h = train(args, data, os.path.join(root, "killed"), args.seed + 1)
        t_resumed = time.perf_counter() - t0
        backup = lst[2]
        with open(os.path.join(root, "killed", "log.csv")) as f:
            csv_rows = len(f.read().splitlines()) - 1
    finally:
        shutil.rmtree(root, ignore_errors=True)

    max_diff = max(float(np.max(np.abs(p.value.astype(np.float64) - q.value))) if p.value.size else 0.0
                   for p, q in zip(straight.model.params, resumed.model.params))
    same_weights = all(np.array_equal(p.value, q.value) for p, q in zip(straight.model.params, resumed.model.params))
    same_history = _same_history(h_straight, h)
    resumed_at = backup.restored
    title = (f"MNIST MLP, Adam + cosine lr with warm-up: killed at step {args.kill_at}, resumed from the "
             f"step-{_step_of(resumed_at, h)} checkpoint; "
             f"{'identical' if same_weights and same_history else 'DIFFERENT'} to the straight run")
    reports.fit_report(h, args.report, title=title)
    print(f"straight run: {straight.step} steps in {t_straight:.1f}s; killed at step {args.kill_at}; resumed from "
          f"epoch {resumed_at['epoch']}, {resumed_at['batches_done']} batches in "
          f"({_step_of(resumed_at, h)} steps), finished in {t_resumed:.1f}s")
    print(f"final weights identical: {same_weights} (max |diff| {max_diff:g}); history identical: {same_history}; "
          f"CSV rows {csv_rows} for {len(h)} checks; val_accuracy {h['val_accuracy'][-1]:.4f}; report {args.report}")
    return {"history": h, "straight": h_straight, "same_weights": same_weights, "same_history": same_history,
            "max_diff": max_diff, "resumed_at": resumed_at, "csv_rows": csv_rows, "report": args.report}


def _step_of(position: dict, history: History) -> int:
    """Global step of a checkpoint position (steps per epoch from the fit's params)."""
    per_epoch = history.params["steps_per_epoch"]
    done = position["epoch"] * per_epoch if position["epoch_done"] else (position["epoch"] - 1) * per_epoch
    return done + (0 if position["epoch_done"] else position["batches_done"])


def _same_history(a: History, b: History) -> bool:
    keys = [k for k in a.keys() if k != "time"]
    return set(a.keys()) == set(b.keys()) and all(
        np.array_equal(np.asarray(a[k], float), np.asarray(b[k], float), equal_nan=True) for k in keys) and (
        a.stop_reason, a.stopped_step, a.best, a.restored) == (b.stop_reason, b.stopped_step, b.best, b.restored)


if __name__ == "__main__":
    main()
