"""Repeated runs and honest comparisons: one setting is a distribution over seeds, not one number.

    >>> runs_a = experiments.repeat(build_patience_3, seeds=range(5), processes=2)
    >>> runs_b = experiments.repeat(build_patience_10, seeds=range(5), processes=2)
    >>> print(experiments.compare({'patience=3': runs_a, 'patience=10': runs_b}, metric='test_accuracy'))

:func:`repeat` runs ``build(seed)`` for every seed, in parallel processes
(:mod:`concurrent.futures`), and returns :class:`Runs`: each seed's History and extra numbers,
failed seeds reported with their traceback while the others are kept. :func:`compare` gives
each setting's mean, standard deviation and 95 % confidence interval (Student's t) and the
paired bootstrap difference between settings (paired by seed: the same seed gives both
settings the same initial weights and batch order when ``build`` seeds them, so the noise they
share cancels). :func:`cutedl.reports.compare_report` draws the runs as mean curves with bands.

Histories and extras travel between processes as plain JSON-like data (``History.to_dict``),
never as pickled objects of the caller's: only the ``build`` function and the seed are pickled,
by reference.
"""
from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import time
import traceback
from collections.abc import Mapping, Sequence

from cutedl._validate import check_choice, check_int, check_number, is_int, is_number
from cutedl.backend import np
from cutedl.testing import format_table
from cutedl.training.history import History

__all__ = ["Run", "Runs", "repeat", "compare", "Comparison", "Summary", "Difference", "t_quantile"]


# ---------------------------------------------------------------------------- runs
class Run:
    """One seed's outcome.

    Attributes:
        seed: the seed ``build`` got.
        history: the :class:`~cutedl.training.history.History` (None when the run failed).
        extra: numbers the run returned besides its History, e.g. ``{'test_accuracy': 0.981}``.
        error: the traceback text of a failed run, else None.
        seconds: wall time of the run.
    """

    def __init__(self, seed, history=None, extra=None, error: str | None = None, seconds: float = 0.0):
        self.seed, self.history, self.extra, self.error, self.seconds = seed, history, dict(extra or {}), error, seconds

    @property
    def ok(self) -> bool:
        return self.error is None

    def value(self, metric: str, at: str = "restored"):
        """``metric`` of this run: from :attr:`extra` when it is there, else from the History's
        column at the check ``at`` names: 'restored' (the check whose weights the model ended with:
        ``history.restored``, else the last), 'last', or 'best' (in the metric's direction)."""
        if metric in self.extra:
            return float(self.extra[metric])
        h = self.history
        if h is None or metric not in h.history:
            raise KeyError(f"run with seed {self.seed} has no {metric!r}: extras {sorted(self.extra)}, History columns "
                           f"{sorted(h.history) if h is not None else []}.")
        col = [v if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in h.history[metric]]
        if at == "best":
            from cutedl.metrics import direction

            finite = [v for v in col if v == v]
            if not finite:
                return math.nan
            return min(finite) if direction(metric, guess=True) == "min" else max(finite)
        i = len(col) - 1
        if at == "restored" and isinstance(h.restored, dict) and h.restored.get("step") is not None:
            steps = h.history.get("step", [])
            hits = [k for k, s in enumerate(steps) if s == h.restored["step"]]
            i = hits[-1] if hits else i
        return col[i] if col else math.nan

    def __repr__(self) -> str:
        what = f"error={self.error.strip().splitlines()[-1]!r}" if self.error else f"rows={len(self.history)}"
        return f"Run(seed={self.seed!r}, {what}, extra={self.extra})"


class Runs(Sequence):
    """The runs of one setting, in seed order (a sequence of :class:`Run`).

    ``runs.histories`` are the Histories of the runs that finished, ``runs.failures`` the runs
    that raised (``str(runs)`` shows their seeds and last traceback lines).
    """

    def __init__(self, runs):
        self.runs = list(runs)

    def __getitem__(self, i):
        return self.runs[i]

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def ok(self) -> list:
        return [r for r in self.runs if r.ok]

    @property
    def histories(self) -> list:
        return [r.history for r in self.runs if r.ok]

    @property
    def failures(self) -> list:
        return [r for r in self.runs if not r.ok]

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.runs]

    def values(self, metric: str, at: str = "restored") -> dict:
        """``{seed: value}`` of ``metric`` for the runs that finished (see :meth:`Run.value`)."""
        return {r.seed: r.value(metric, at) for r in self.runs if r.ok}

    def __str__(self) -> str:
        lines = [f"{len(self.ok)} of {len(self)} runs finished (seeds {self.seeds})"]
        for r in self.failures:
            last = r.error.strip().splitlines()[-1] if r.error else "?"
            lines.append(f"  seed {r.seed} failed: {last}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Runs({self.runs!r})"


def _plain(value):
    """Numbers (NumPy scalars included) as Python floats/ints; containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        value = value.item()
    return value


def _outcome(result, seed):
    """``(History, extra)`` from what ``build(seed)`` returned (see :func:`repeat`)."""
    from cutedl.training.session import Session

    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Session):
        sess, kwargs = result
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"repeat: build({seed}) returned (Session, {type(kwargs).__name__}); the second item must "
                            f"be a dict of fit arguments, e.g. dict(data=train, epochs=10).")
        return sess.fit(**kwargs), {}
    if callable(result) and not isinstance(result, History):
        result = result()
    if isinstance(result, History):
        return result, {}
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], History) and isinstance(result[1], Mapping):
        return result
    raise TypeError(f"repeat: build({seed}) must return (Session, fit kwargs), a History, or a callable returning a "
                    f"History or (History, extra dict); got {type(result).__name__}.")


def _run_seed(build, seed, threads):
    """Run one seed (in a worker process, or in-process); returns plain data, never raises."""
    t0 = time.perf_counter()
    try:
        from cutedl import rng

        if threads is not None:
            from cutedl import threads as threads_mod

            threads_mod.set_num_threads(threads)
        rng.set_seed(seed)
        history, extra = _outcome(build(seed), seed)
        return {"seed": seed, "history": history.to_dict(), "extra": _plain(dict(extra)), "error": None,
                "seconds": time.perf_counter() - t0}
    except Exception:  # a failed run is reported with its traceback; the other seeds go on
        return {"seed": seed, "history": None, "extra": {}, "error": traceback.format_exc(),
                "seconds": time.perf_counter() - t0}


def _as_run(d) -> Run:
    h = History.from_dict(d["history"]) if d["history"] is not None else None
    return Run(d["seed"], h, d["extra"], d["error"], d["seconds"])


def repeat(build, seeds=range(5), processes: int = 2, *, context: str = "spawn", threads: int | None = None) -> Runs:
    """Run ``build(seed)`` for every seed; return the :class:`Runs` (failed seeds included, marked).

    ``build(seed)`` returns one of:

    - ``(session, fit_kwargs)``: ``session.fit(**fit_kwargs)`` runs, its History is kept;
    - a callable doing the fit: it returns a History, or ``(History, extra)`` with a dict of
      numbers such as ``{'test_accuracy': acc}`` (kept as :attr:`Run.extra`);
    - a History (the fit already ran).

    Before ``build(seed)``, :func:`cutedl.set_seed` is called with the seed, so models built
    without explicit seeds differ (and repeat) by seed. Pass the seed to your Datasets too
    (``Dataset(..., seed=seed)``) for batch orders that depend on it alone.

    Args:
        build: a function of the seed; with ``processes > 1`` it must be picklable: a top-level
            function of an importable module (or a ``functools.partial`` of one), not a lambda or
            a function defined in a test body. A script's own functions work under
            ``if __name__ == '__main__':``.
        seeds: the seeds (integers >= 0), run in this order; results come back in this order.
        processes: worker processes (``concurrent.futures.ProcessPoolExecutor``); 1 runs every
            seed in this process, one after the other (and changes cutedl's global seed).
        context: 'spawn' (default: a fresh interpreter per worker, safe with threaded BLAS) or
            'fork' (faster start; Linux/macOS; the function need not be importable).
        threads: BLAS threads per run (``cutedl.threads.set_num_threads``); None leaves them.
            Results depend on the thread count, so fix it to compare runs across machines.

    A run that raises is kept as a :class:`Run` with its ``error`` (the traceback) and no History;
    a worker process that dies (out of memory) fails its seed the same way.

    Example:
        >>> def build(seed):
        ...     model = Model([layers.Dense(64, inshape=20, activation='relu'), layers.Dense(3, activation='softmax')]).assemble()
        ...     sess = Session(model, 'sparse_categorical_crossentropy', 'adam', metrics=['accuracy'])
        ...     return sess, dict(data=Dataset(x, y, seed=seed), epochs=5, val_data=(x_val, y_val), verbose=0)
        >>> runs = experiments.repeat(build, seeds=range(5))
        >>> runs.values('val_accuracy')
        {0: 0.91, 1: 0.93, ...}
    """
    who = "repeat"
    if not callable(build):
        raise TypeError(f"{who}: build must be a function build(seed), got {type(build).__name__}.")
    try:
        seeds = list(seeds)
    except TypeError:
        raise TypeError(f"{who}: seeds must be an iterable of integers, e.g. range(5), got {seeds!r}.") from None
    if not seeds:
        raise ValueError(f"{who}: seeds is empty; pass e.g. seeds=range(5).")
    seeds = [check_int(who, "each seed", s, minimum=0) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{who}: seeds must be distinct, got {seeds}.")
    processes = check_int(who, "processes", processes, minimum=1)
    context = check_choice(who, "context", context, ("spawn", "fork", "forkserver"))
    threads = check_int(who, "threads", threads, minimum=1, allow_none=True)
    if processes == 1 or len(seeds) == 1:
        return Runs(_as_run(_run_seed(build, s, threads)) for s in seeds)
    ctx = multiprocessing.get_context(context)
    results = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(processes, len(seeds)), mp_context=ctx) as pool:
        futures = {pool.submit(_run_seed, build, s, threads): s for s in seeds}
        for fut in concurrent.futures.as_completed(futures):
            s = futures[fut]
            try:
                results[s] = fut.result()
            except Exception as err:  # the worker died, or build could not be pickled
                hint = ""
                if "pickle" in f"{type(err).__name__} {err}".lower():
                    hint = (" build must be picklable: a top-level function of an importable module (not a lambda "
                            "or a nested function), or use processes=1.")
                results[s] = {"seed": s, "history": None, "extra": {}, "seconds": 0.0,
                              "error": f"{type(err).__name__}: {err}.{hint}"}
    return Runs(_as_run(results[s]) for s in seeds)


# ---------------------------------------------------------------------------- statistics
def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (regularized incomplete beta)."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t > 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side only
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f / a


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom (df >= 1),
    by bisection on its CDF (no SciPy): ``t_quantile(0.975, 4)`` is 2.776."""
    p = check_number("t_quantile", "p", p, minimum=0.0, maximum=1.0, low_open=True, high_open=True)
    df = check_number("t_quantile", "df", df, minimum=0.0, low_open=True)
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


class Summary:
    """One setting in a :class:`Comparison`: ``n``, ``mean``, ``std`` (ddof 1), ``low``/``high`` (the
    confidence interval of the mean, Student's t; NaN with one run) and ``values`` ``{seed: value}``."""

    def __init__(self, label, values: dict, confidence: float):
        self.label, self.values = label, dict(values)
        v = np.array([x for x in self.values.values() if math.isfinite(x)], dtype=np.float64)
        self.n = int(v.size)
        self.mean = float(v.mean()) if v.size else math.nan
        self.std = float(v.std(ddof=1)) if v.size > 1 else math.nan
        half = t_quantile(0.5 + confidence / 2, self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else math.nan
        self.half_width = half
        self.low, self.high = self.mean - half, self.mean + half

    def __repr__(self) -> str:
        return f"Summary({self.label!r}, n={self.n}, mean={self.mean:.6g}, ci=[{self.low:.6g}, {self.high:.6g}])"


class Difference:
    """``a - b`` paired by seed: ``n`` pairs, ``mean`` difference, bootstrap interval ``low``/``high``
    and ``p_positive``, the bootstrap share of resampled mean differences above 0."""

    def __init__(self, a, b, diffs, confidence: float, n_boot: int, rs):
        self.a, self.b = a, b
        d = np.array(diffs, dtype=np.float64)
        self.n = int(d.size)
        self.mean = float(d.mean()) if d.size else math.nan
        if d.size:
            means = d[rs.integers(0, d.size, (n_boot, d.size))].mean(axis=1)
            alpha = (1.0 - confidence) / 2
            self.low, self.high = (float(q) for q in np.quantile(means, [alpha, 1.0 - alpha]))
            self.p_positive = float((means > 0).mean())
        else:
            self.low = self.high = self.p_positive = math.nan

    def __repr__(self) -> str:
        return f"Difference({self.a!r} - {self.b!r}, n={self.n}, mean={self.mean:.4g}, ci=[{self.low:.4g}, {self.high:.4g}])"


class Comparison:
    """What :func:`compare` found: ``settings`` ``{label: Summary}``, ``differences`` (a list of
    :class:`Difference`, every later setting against the first unless ``baseline`` chose another)
    and ``str(comparison)``: a table of 'mean +- CI' per setting and the paired differences."""

    def __init__(self, metric, settings, differences, confidence, at):
        self.metric, self.settings, self.differences, self.confidence, self.at = (metric, settings, differences,
                                                                                  confidence, at)

    def difference(self, a, b) -> Difference:
        for d in self.differences:
            if (d.a, d.b) == (a, b):
                return d
        raise KeyError(f"no difference {a!r} - {b!r}; have {[(d.a, d.b) for d in self.differences]}.")

    def __str__(self) -> str:
        pct = f"{100 * self.confidence:g} %"
        head = ("setting", "n", "mean +- CI", f"{pct} CI", "std", "min", "max")
        rows = []
        for s in self.settings.values():
            vals = [v for v in s.values.values() if math.isfinite(v)]
            rows.append((str(s.label), str(s.n), f"{s.mean:.4f} +- {s.half_width:.4f}" if s.n > 1 else f"{s.mean:.4f}",
                         f"[{s.low:.4f}, {s.high:.4f}]" if s.n > 1 else "-", f"{s.std:.4f}" if s.n > 1 else "-",
                         f"{min(vals):.4f}" if vals else "-", f"{max(vals):.4f}" if vals else "-"))
        out = [f"{self.metric} ({self.at} check unless the runs returned it) over seeds: mean +- half-width of the "
               f"{pct} confidence interval (Student's t)", format_table(head, rows)]
        if self.differences:
            drows = [(f"{d.a} - {d.b}", str(d.n), f"{d.mean:+.4f}", f"[{d.low:+.4f}, {d.high:+.4f}]",
                      f"{100 * d.p_positive:.0f} %") for d in self.differences]
            out += ["", f"paired by seed, bootstrap {pct} interval of the mean difference",
                    format_table(("difference", "pairs", "mean", f"{pct} CI", "P(> 0)"), drows)]
        return "\n".join(out)

    def print_report(self) -> None:
        print(self)

    def __repr__(self) -> str:
        return f"Comparison({self.metric!r}, settings={list(self.settings)})"


def _values_of(label, runs, metric, at) -> dict:
    if isinstance(runs, Mapping):
        out = {}
        for seed, v in runs.items():
            if not is_number(v):
                raise TypeError(f"compare: setting {label!r} maps seed {seed!r} to {v!r}, not a number.")
            out[seed] = float(v)
        return out
    if isinstance(runs, (Runs, list, tuple)):
        items = list(runs)
        if all(isinstance(r, Run) for r in items):
            return Runs(items).values(metric, at)
        if all(isinstance(r, History) for r in items):
            return Runs(Run(i, h) for i, h in enumerate(items)).values(metric, at)
    raise TypeError(f"compare: setting {label!r} must be Runs (from repeat), a list of Run or History, or a dict "
                    f"{{seed: value}}, got {type(runs).__name__}.")


def compare(settings: Mapping, metric: str = "val_accuracy", *, at: str = "restored", confidence: float = 0.95,
            baseline=None, n_boot: int = 10000, seed: int = 0) -> Comparison:
    """Mean, std and confidence interval of ``metric`` per setting, and paired differences.

    Args:
        settings: ``{label: runs}``; runs are :class:`Runs` from :func:`repeat`, a list of
            :class:`Run` or History objects (a History list is paired by position), or
            ``{seed: value}``.
        metric: a key of the runs' ``extra`` (e.g. 'test_accuracy') or a History column.
        at: which check of a History column: 'restored' (the weights the model ended with; the
            last check when nothing was restored), 'last' or 'best' (see :meth:`Run.value`).
        confidence: of the intervals (default 95 %). The interval of a mean is
            ``mean +- t(1 - alpha/2, n - 1) * std / sqrt(n)``.
        baseline: the label every other setting is compared with (default: the first).
        n_boot, seed: bootstrap resamples of the paired differences, and their seed.
    Returns:
        a :class:`Comparison`; ``print()`` it for the table.

    The difference ``a - b`` uses the seeds both settings ran (failed runs drop out of the pair),
    so the seed-to-seed spread they share cancels: with 5 seeds a difference can be clear while
    the two intervals overlap.
    """
    who = "compare"
    if not isinstance(settings, Mapping) or not settings:
        raise TypeError(f"{who}: settings must be a non-empty dict {{label: runs}}, got {settings!r}.")
    if not isinstance(metric, str):
        raise TypeError(f"{who}: metric must be a string, got {metric!r}.")
    at = check_choice(who, "at", at, ("restored", "last", "best"))
    confidence = check_number(who, "confidence", confidence, minimum=0.0, maximum=1.0, low_open=True, high_open=True)
    n_boot = check_int(who, "n_boot", n_boot, minimum=100)
    labels = list(settings)
    if baseline is None:
        baseline = labels[0]
    elif baseline not in settings:
        raise ValueError(f"{who}: baseline {baseline!r} is not one of the settings {labels}.")
    values = {label: _values_of(label, runs, metric, at) for label, runs in settings.items()}
    summaries = {label: Summary(label, v, confidence) for label, v in values.items()}
    rs = np.random.default_rng(check_int(who, "seed", seed, minimum=0) if is_int(seed) else seed)
    diffs = []
    for label in labels:
        if label == baseline:
            continue
        common = [s for s in values[label] if s in values[baseline]
                  and math.isfinite(values[label][s]) and math.isfinite(values[baseline][s])]
        diffs.append(Difference(label, baseline, [values[label][s] - values[baseline][s] for s in common],
                                confidence, n_boot, rs))
    return Comparison(metric, summaries, diffs, confidence, at)
