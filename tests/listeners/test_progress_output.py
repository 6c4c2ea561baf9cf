"""What the user sees on the terminal: full epoch summaries, one number format, why it stopped."""
import io
import os
import pty
import subprocess
import sys
import textwrap

import numpy as np

from cutedl import Model, Session, layers, listeners, optimizers
from cutedl.listeners.progress import format_logs, format_value

SCRIPT = textwrap.dedent("""
    import numpy as np, cutedl
    from cutedl import Model, Session, layers, listeners
    cutedl.set_seed(0)
    rs = np.random.default_rng(0)
    x = rs.standard_normal((64, 4)).astype('float32'); y = np.eye(3, dtype='float32')[rs.integers(0, 3, 64)]
    m = Model([layers.Dense(5, inshape=4, activation='relu'), layers.Dense(3, activation='softmax')]).assemble()
    s = Session(m, 'categorical_crossentropy', 'adam', metrics=['accuracy', 'top_k_accuracy'])
    s.fit(x, y, epochs=2, batch_size=16, val_data=(x, y), listeners=[listeners.EarlyStopping(patience=9)])
""")


def run_in_terminal(columns):
    """Run a short fit under a pseudo-terminal ``columns`` wide; return what the terminal got."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS=str(columns), LINES="24", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                            env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    assert proc.returncode == 0, proc.stderr.read().decode()
    return b"".join(chunks).decode("utf-8", "replace")


def test_epoch_summary_is_printed_whole_on_an_80_column_terminal():
    out = run_in_terminal(80)
    text = out.replace("\r\n", "\n")
    joined = " ".join(line.strip() for line in text.split("\n"))
    for key in ("val_loss:", "val_accuracy:", "val_top_k_accuracy:"):
        assert joined.count(key) >= 2, (key, out)  # once per epoch summary
    summary_lines = [line for line in text.split("\n") if "Epoch" in line and "s - loss:" in line]
    assert summary_lines and all(len(line.rstrip()) <= 80 for line in summary_lines)


def test_zero_width_terminal_still_prints_the_summary():
    out = run_in_terminal(0)
    assert "val_accuracy:" in out


def test_one_number_format_with_significant_digits_for_tiny_values():
    assert format_value(0.42591) == "0.4259"
    assert format_value(1.234e-5) == "1.23e-05"
    assert format_value(0.0) == "0.0000"
    assert format_logs({"step": 3, "loss": 2e-3, "val_loss": 0.5, "lr": 1e-3}) == "loss: 0.0020 - val_loss: 0.5000"
    assert format_logs({"loss": 2e-5}) == "loss: 2e-05"


def test_stop_message_names_the_restored_check_and_its_value():
    rs = np.random.default_rng(0)
    x = rs.standard_normal((32, 4)).astype("float32")
    y = rs.standard_normal((32, 1)).astype("float32")
    m = Model([layers.Dense(1, inshape=4)]).assemble()
    buf = io.StringIO()
    es = listeners.EarlyStopping("val_loss", patience=1)
    h = Session(m, "mse", optimizers.SGD(5.0)).fit(x, y, epochs=30, val_data=(x, y), batch_size=32,
                                                   listeners=[es, listeners.ProgressBar(stream=buf, tty=False)])
    assert h.stop_reason == "early_stopping"
    last = buf.getvalue().strip().splitlines()[-1]
    r = h.restored
    i = h.history["step"].index(r["step"])
    assert last.startswith(f"Training stopped: early_stopping at step {h.stopped_step} (epoch {h.stopped_epoch}).")
    assert f"Restored the weights of epoch {r['epoch']} (step {r['step']}): val_loss = " \
           f"{format_value(h.history['val_loss'][i])}." in last
