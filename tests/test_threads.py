"""cutedl.threads: set_num_threads / get_num_threads through threadpoolctl."""
import os
import subprocess
import sys

import pytest

from cutedl import threads

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def restore_threads():
    """Put the BLAS thread count back after the test (other tests must not see our change)."""
    with threadpoolctl.threadpool_limits(limits=None):
        before = threads.get_num_threads()
        yield before
    threads.set_num_threads(before)


def test_set_then_get(restore_threads):
    threads.set_num_threads(1)
    assert threads.get_num_threads() == 1
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert blas and all(i["num_threads"] == 1 for i in blas)


def test_get_matches_threadpoolctl(restore_threads):
    blas = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert threads.get_num_threads() == max(blas)


@pytest.mark.parametrize("bad", [0, -2])
def test_non_positive_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: n must be a positive integer \(threads\), got"):
        threads.set_num_threads(bad)


@pytest.mark.parametrize("bad", ["2", None, True, 1.5])
def test_non_integer_is_rejected(bad):
    with pytest.raises((TypeError, ValueError), match="set_num_threads: n must be a positive integer"):
        threads.set_num_threads(bad)


def test_import_cutedl_changes_nothing_and_stays_light():
    """Importing cutedl neither imports threadpoolctl nor changes the BLAS thread count."""
    code = ("import sys, cutedl, cutedl.threads; assert 'threadpoolctl' not in sys.modules, 'imported'; "
            "import threadpoolctl; "
            "print(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))")
    env_threads = "1"  # OpenBLAS caps the count at the number of cores
    env = dict(os.environ, OPENBLAS_NUM_THREADS=env_threads, OMP_NUM_THREADS=env_threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == env_threads
