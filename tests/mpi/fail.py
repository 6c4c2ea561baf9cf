"""Run under ``mpiexec -n 2``: rank 1's listener raises at step 3; the job must abort, not hang."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402

from cutedl import distributed, listeners  # noqa: E402


class Boom(listeners.Listener):
    def on_batch_end(self, step, logs=None):
        if step == 3 and distributed.rank() == 1:
            raise ValueError("boom on purpose")


cases.fit("mlp64", distributed.DataParallel(), [Boom()])
print("unreachable: the fit went on after a rank failed", flush=True)
