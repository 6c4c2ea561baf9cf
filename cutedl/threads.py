"""How many threads the BLAS (and OpenMP) libraries under the array backend use.

cutedl never changes thread counts on its own: the BLAS library starts with its default (all
cores, or ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` from the environment) until the user
calls :func:`set_num_threads`. On a machine shared with other jobs, fewer threads than cores is
often faster: busy-waiting BLAS threads that lose their core can make a step many times slower.

    >>> from cutedl import threads
    >>> threads.set_num_threads(2)
    >>> threads.get_num_threads()
    2

Both go through threadpoolctl (imported on first use, so ``import cutedl`` stays light).
"""
from __future__ import annotations

from cutedl._validate import check_int

__all__ = ["set_num_threads", "get_num_threads"]


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        raise RuntimeError("cutedl.threads needs threadpoolctl (pip install 'threadpoolctl>=3'); or set "
                           "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS before starting Python.") from None
    return threadpoolctl


def _load_blas() -> None:
    """Make sure the backend's BLAS library is loaded, so threadpoolctl can see it."""
    from cutedl import backend

    backend.np.dot  # noqa: B018  (NumPy loads its BLAS at import)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every BLAS / OpenMP library loaded in this process, from now on.

    Args:
        n: a positive integer.
    Raises:
        TypeError / ValueError: ``n`` is not a positive integer.
        RuntimeError: threadpoolctl is not installed.
    """
    n = check_int("set_num_threads", "n", n, minimum=1, what="a positive integer (threads)")
    tpc = _threadpoolctl()
    _load_blas()
    tpc.threadpool_limits(limits=n)


def get_num_threads() -> int:
    """Threads the backend's BLAS library uses now (the largest count among the loaded BLAS and
    OpenMP libraries; 1 when threadpoolctl finds none)."""
    tpc = _threadpoolctl()
    _load_blas()
    info = tpc.threadpool_info()
    blas = [i["num_threads"] for i in info if i.get("user_api") == "blas"]
    counts = blas or [i["num_threads"] for i in info]
    return max(counts) if counts else 1
