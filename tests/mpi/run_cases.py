"""Run under ``mpiexec -n N``: every case of cases.py with a DataParallel strategy, plus the
file, resume and dropout checks; each rank writes ``OUT/rank<r>.npz`` (arrays) and
``OUT/rank<r>.json`` for tests/test_distributed.py to compare.

    mpiexec -n 2 python tests/mpi/run_cases.py OUT [case ...]
"""
import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402

from cutedl import distributed, listeners  # noqa: E402
from cutedl.training import checkpoint  # noqa: E402


def main(out, names):
    strategy = distributed.DataParallel()
    r = distributed.rank()
    arrays, doc = {}, {"rank": r, "size": distributed.size(), "is_main": distributed.is_main(), "cases": {}}
    for name in names or cases.CASES:
        res = cases.run(name, strategy)
        doc["cases"][name] = {"history": res["history"], "steps": res["steps"]}
        for i, w in enumerate(res["weights"]):
            arrays[f"{name}/{i}"] = w
    doc["local_samples"] = strategy.local_samples

    # dropout: the same seed gives the same per-rank streams; ranks draw different masks
    again = cases.run("dropout64", distributed.DataParallel())
    doc["dropout_repeatable"] = all(np.array_equal(a, b) for a, b in
                                    zip(again["weights"], [arrays[f"dropout64/{i}"] for i in range(len(again["weights"]))]))
    sess, _ = cases.session("dropout64", distributed.DataParallel())
    drop = [layer for layer in sess.model.layers if type(layer).__name__ == "Dropout"][0]
    sess.fit(*cases.data("mlp", 20, "float64"), epochs=1, batch_size=20, verbose=0)
    doc["dropout_state"] = str(checkpoint.generator_states(drop))

    # files and output from rank 0 only (each rank names its own files, to see who wrote)
    stream = io.StringIO()
    cases.fit("mlp64", distributed.DataParallel(), [
        listeners.CSVLogger(os.path.join(out, f"log-rank{r}.csv")),
        listeners.ModelCheckpoint(os.path.join(out, f"model-rank{r}-{{epoch}}.npz")),
        listeners.ProgressBar(stream=stream, tty=False)], epochs=2)
    doc["progress_chars"] = len(stream.getvalue())

    # BackupAndRestore: stop at step 17, resume, compare with a straight run (dropout included)
    straight = cases.run("dropout64", distributed.DataParallel())
    backup = os.path.join(out, "backup")
    cases.fit("dropout64", distributed.DataParallel(), [listeners.BackupAndRestore(backup, every=3),
                                                       cases.StopAt(17)])
    doc["checkpoint_left"] = os.path.exists(os.path.join(backup, "training-state.npz"))
    keep = os.path.join(out, "kept-state.npz")
    if r == 0:
        import shutil
        shutil.copy(os.path.join(backup, "training-state.npz"), keep)
    b = listeners.BackupAndRestore(backup, every=3)
    sess, h = cases.fit("dropout64", distributed.DataParallel(), [b])
    doc["restored"] = b.restored
    doc["resume_equal"] = all(np.array_equal(a, w) for a, w in zip(straight["weights"], sess.model.get_weights()))
    doc["resume_history_equal"] = h.history["loss"] == straight["history"]["loss"]

    np.savez(os.path.join(out, f"rank{r}.npz"), **arrays)
    with open(os.path.join(out, f"rank{r}.json"), "w") as f:
        json.dump(doc, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
