"""Benchmark: the overhead of listeners.Dynamics on an MNIST MLP epoch (784-400-100-10, batch 128, Adam).

Epochs with and without the listener alternate in one process (one check per epoch on the 10k
test images, so both include the same validation pass); the table gives the min and median
seconds per epoch, their ratio, and the time spent inside the listener's hooks (measured
directly, the less noisy figure).

    python bench/dynamics.py --rounds 5 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time


def _load():
    from cutedl import datasets

    (x, y), (xt, yt) = datasets.mnist.load_data()
    flat = lambda a: datasets.normalize(a.reshape(len(a), -1))  # noqa: E731
    return flat(x), datasets.one_hot(y, 10), flat(xt), datasets.one_hot(yt, 10)


class _Timed:
    """Wrap a listener's hooks and sum the seconds spent in them."""

    def __init__(self, listener):
        self.seconds = 0.0
        for name in ("on_fit_start", "on_batch_start", "on_batch_end", "on_val_end"):
            setattr(listener, name, self._wrap(getattr(listener, name)))

    def _wrap(self, hook):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
        return timed


def run(rounds: int, batch_size: int, seed: int) -> dict:
    import cutedl
    from cutedl import Dataset, Model, Session, layers, listeners, optimizers

    cutedl.set_seed(seed)
    x, y, xt, yt = _load()
    model = Model([layers.Dense(400, inshape=784, activation="relu"), layers.Dense(100, activation="relu"),
                   layers.Dense(10, activation="softmax")]).assemble()
    sess = Session(model, "categorical_crossentropy", optimizers.Adam(1e-3), metrics=["accuracy"])
    train = Dataset(x, y, batch_size=batch_size)
    times = {"without": [], "with": []}
    hooks = []
    sess.fit(train, epochs=1, val_data=(xt, yt), verbose=0)  # warm-up
    for _ in range(rounds):
        for case in ("without", "with"):
            lst = []
            if case == "with":
                dyn = listeners.Dynamics()
                timer = _Timed(dyn)
                lst = [dyn]
            t0 = time.perf_counter()
            sess.fit(train, epochs=1, val_data=(xt, yt), listeners=lst, verbose=0)
            times[case].append(time.perf_counter() - t0)
            if case == "with":
                hooks.append(timer.seconds)
    return {"times": times, "hooks": hooks, "diagnoses": dyn.diagnoses()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="epochs with and without the listener, alternating")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=0, help="BLAS threads (0: leave as is; needs threadpoolctl)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    res = run(args.rounds, args.batch_size, args.seed)
    w, wo = res["times"]["with"], res["times"]["without"]
    base = statistics.median(wo)
    print(f"{'case':<18}{'min s/epoch':>12}{'median':>10}")
    print(f"{'without Dynamics':<18}{min(wo):>12.3f}{base:>10.3f}")
    print(f"{'with Dynamics':<18}{min(w):>12.3f}{statistics.median(w):>10.3f}")
    print(f"epoch time ratio (medians): {statistics.median(w) / base:.3f}  (mins: {min(w) / min(wo):.3f})")
    print(f"time inside the Dynamics hooks: {1e3 * statistics.median(res['hooks']):.1f} ms per epoch = "
          f"{100 * statistics.median(res['hooks']) / base:.2f} % of an epoch")
    print("diagnoses:", res["diagnoses"] or "none")
    return res


if __name__ == "__main__":
    main()
