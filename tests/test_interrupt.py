"""Never lose work: Ctrl-C stops at a batch boundary, listener errors name the listener and leave
the model and the last checkpoint intact."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cutedl
from cutedl import History, Model, Session, checkpoint, layers, listeners

ROOT = Path(__file__).resolve().parents[1]


class At(listeners.Listener):
    """Run ``action(session)`` in hook ``event`` at step ``step``."""

    def __init__(self, event=None, step=None, action=None):
        self.event, self.step, self.action = event, step, action
        self.fit_ended = False
        if event is not None:
            setattr(self, f"on_{event}", self._hook)

    def _hook(self, step, logs=None):
        if step == self.step:
            self.action(self.session)

    def on_fit_end(self, logs=None):
        self.fit_ended = True


def _fit(tmp, at, every=4, epochs=4, report=False):
    """A small fit (7 steps per epoch) with early stopping, a checkpointer and ``at``."""
    cutedl.set_seed(2)
    rs = np.random.default_rng(4)
    x = rs.standard_normal((100, 5)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    model = Model([layers.Dense(8, inshape=5, activation="relu"), layers.Dropout(0.25),
                   layers.Dense(2, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", "adam", metrics=["accuracy"])
    lst = [listeners.EarlyStopping("val_loss", patience=20), listeners.BackupAndRestore(tmp / "backup", every=every)]
    if report:
        lst.append(listeners.FitReport(tmp / "report.png"))
    lst.append(at)
    h = sess.fit((x[:84], y[:84]), epochs=epochs, batch_size=12, val_data=(x[84:], y[84:]), listeners=lst,
                 verbose=0)
    return sess, h


def _raise(exc):
    def action(session):
        raise exc
    return action


def _same(sa, ha, sb, hb):
    for p, q in zip(sa.model.params, sb.model.params):
        np.testing.assert_array_equal(p.value, q.value)
    for k in ha.keys():
        if k != "time":
            np.testing.assert_array_equal(np.asarray(ha[k], float), np.asarray(hb[k], float), err_msg=k)


def test_keyboard_interrupt_from_a_listener_ends_the_fit_cleanly(tmp_path):
    at = At("batch_start", 10, _raise(KeyboardInterrupt))
    sess, h = _fit(tmp_path, at, report=True)
    # batch_start of step 10 comes right after the boundary of step 9: nothing half done
    assert h.stop_reason == "interrupted" and h.stopped_step == 9 and h.stopped_epoch == 2
    assert at.fit_ended and (tmp_path / "report.png").stat().st_size > 1000
    assert h.restored is not None  # EarlyStopping restored its best weights in on_fit_end
    assert h["step"] == [7, 9]  # the epoch-1 check, then the interrupted epoch's partial check
    ckpt = checkpoint.read(tmp_path / "backup" / "training-state.npz")
    assert ckpt["session"]["step"] == 9 and ckpt["position"]["batches_done"] == 2
    # resuming from the interrupt checkpoint gives the uninterrupted run
    resumed, h2 = _fit(tmp_path, At())
    straight, h3 = _fit(tmp_path / "s", At())
    assert h2.stop_reason == "completed"
    _same(straight, h3, resumed, h2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_keyboard_interrupt_mid_step_keeps_the_last_periodic_checkpoint(tmp_path):
    at = At("batch_end", 10, _raise(KeyboardInterrupt))
    sess, h = _fit(tmp_path, at)
    assert h.stop_reason == "interrupted" and h.stopped_step == 10 and at.fit_ended
    # batch_end was half delivered, so the boundary of step 10 never happened: step 8's checkpoint stays
    assert checkpoint.read(tmp_path / "backup" / "training-state.npz")["session"]["step"] == 8


def test_sigint_stops_at_the_next_boundary_and_second_aborts(tmp_path):
    at = At("batch_start", 5, lambda s: os.kill(os.getpid(), signal.SIGINT))
    sess, h = _fit(tmp_path, at)
    # the signal arrives during step 5's batch_start: step 5 still completes, then the fit stops
    assert h.stop_reason == "interrupted" and h.stopped_step == 5 and at.fit_ended
    assert checkpoint.read(tmp_path / "backup" / "training-state.npz")["session"]["step"] == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def twice(session):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    at = At("batch_end", 3, twice)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "b", at)
    assert not at.fit_ended  # aborted at once: no on_fit_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_listener_error_names_the_listener_and_spares_model_and_checkpoint(tmp_path):
    class Flaky(At):
        def __repr__(self):
            return "Flaky()"

    at = Flaky("batch_end", 10, _raise(ValueError("bad value in my listener")))
    with pytest.raises(ValueError, match=r"listener Flaky\(\) failed in on_batch_end \(step 10\): bad value in my "
                                         r"listener") as info:
        _fit(tmp_path, at)
    assert isinstance(info.value.__cause__, ValueError)
    assert not at.fit_ended
    sess = at.session
    # the model holds the weights after step 10, exactly those of a run stopped there
    ref, _ = _fit(tmp_path / "ref", At("batch_end", 10, lambda s: s.stop_fit("stop_fit")), every="epoch")
    for p, q in zip(sess.model.params, ref.model.params):
        np.testing.assert_array_equal(p.value, q.value)
    # the last checkpoint (step 8) is valid: resuming it gives the uninterrupted run
    assert checkpoint.read(tmp_path / "backup" / "training-state.npz")["session"]["step"] == 8
    resumed, h = _fit(tmp_path, Flaky())
    straight, h2 = _fit(tmp_path / "s", Flaky())
    _same(straight, h2, resumed, h)


def test_errors_keep_their_type_when_it_cannot_take_a_message(tmp_path):
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a, b)

    with pytest.raises(RuntimeError, match=r"failed in on_epoch_end .*\(Odd\)"):
        _fit(tmp_path, At("epoch_end", 1, _raise(Odd(1, 2))))


# ---------------------------------------------------------------------------- a real Ctrl-C
WORKER = r'''
import json, sys, time
import numpy as np
import cutedl
from cutedl import Model, Session, layers, listeners

class Slow(listeners.Listener):
    def on_batch_end(self, step, logs=None):
        if step == 3:
            print("ready", flush=True)
        time.sleep(0.05)

    def on_fit_end(self, logs=None):
        time.sleep(0.5)  # a second Ctrl-C landing here (after the fit's own handler) must abort too

cutedl.set_seed(0)
rs = np.random.default_rng(0)
x = rs.standard_normal((64, 4)).astype(np.float32)
y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
model = Model([layers.Dense(4, inshape=4, activation="relu"), layers.Dense(2, activation="softmax")]).assemble()
sess = Session(model, "categorical_crossentropy", "sgd")
h = sess.fit((x, y), epochs=1000, batch_size=8, listeners=[Slow(), listeners.CSVLogger(sys.argv[1])], verbose=0)
print(json.dumps({"stop_reason": h.stop_reason, "step": h.stopped_step, "rows": len(h)}), flush=True)
'''


def _start():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return env


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_in_a_subprocess(tmp_path, presses):
    csv = tmp_path / "log.csv"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(csv)], env=_start(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if presses == 1:
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["stop_reason"] == "interrupted" and result["step"] >= 3
        # on_fit_end ran: the final partial check is in the CSV too
        assert len(csv.read_text().splitlines()) == result["rows"] + 1
    else:
        assert proc.returncode != 0 and "KeyboardInterrupt" in err
