"""cutedl.datasets.safe_pickle: only allowlisted globals load; hostile pickles are refused unrun."""
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cutedl.datasets import safe_pickle
from cutedl.datasets.safe_pickle import RestrictedUnpickler, decode, numpy_array_globals

ARRAYS = numpy_array_globals()


class _System:
    """Unpickles to ``os.system(cmd)``."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_hostile_pickles_are_refused_before_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _System(f"touch {marker}"), "labels": [0]}, protocol=protocol)
    with pytest.raises(ValueError, match=r"^part 1: refused to load the global (posix|os|nt)\.system: a batch "
                                         r"never holds it.*Nothing in it was run\. Fix it\.$"):
        decode(evil, ARRAYS, what="part 1", content="a batch", hint="Fix it.")
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"refused to load the global (builtins|__builtin__)\.eval"):
        decode(pickle.dumps(_Eval(), protocol=protocol), ARRAYS)
    # the same stream with the global allowed does run: the refusal is what stopped it
    assert pickle.Unpickler(io.BytesIO(pickle.dumps(_Eval(), protocol=protocol))).load() == 2


def test_the_allowlist_maps_names_to_what_the_pickle_gets():
    raw = pickle.dumps(Path, protocol=2)          # a global: pathlib.Path (or its private module)
    key = (Path.__module__, "Path")
    assert decode(raw, {key: "stand-in"}) == "stand-in"
    with pytest.raises(ValueError, match=f"refused to load the global {key[0]}.Path"):
        decode(raw, {})
    # plain data needs no global at all
    data = {"a": [1, 2.5, "x", b"y", (None, True)]}
    assert decode(pickle.dumps(data, protocol=4), {}) == data


def test_numpy_arrays_load_and_lookalikes_do_not():
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4):   # (protocol 5 names numpy._core.numeric._frombuffer: not allowed)
        raw = pickle.dumps(x, protocol=protocol)
        got = decode(raw, {**ARRAYS, **safe_pickle.LATIN1_BYTES_GLOBALS})
        assert type(got) is np.ndarray and got.dtype == np.uint8
        np.testing.assert_array_equal(got, x)
    # NumPy 1 module name, as Keras-era and cPickle files spell it
    old = pickle.dumps(x, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in old
    np.testing.assert_array_equal(decode(old, {**ARRAYS, **safe_pickle.LATIN1_BYTES_GLOBALS}), x)
    # an ndarray subclass is a global of its own: refused
    with pytest.raises(ValueError, match="refused to load the global test_safe_pickle._Sub"):
        decode(pickle.dumps(x.view(_Sub), protocol=4), ARRAYS)
    # and the rebuilder refuses any subtype but ndarray even when it is allowed by name
    with pytest.raises(ValueError, match="refused to build an array of type"):
        decode(pickle.dumps(x.view(_Sub), protocol=4), {**ARRAYS, (__name__, "_Sub"): _Sub})
    # object dtype only where the kinds allow it
    obj = np.array([[1, 2], [3]], dtype=object)
    with pytest.raises(ValueError, match=r"refused dtype object \(allowed kinds: 'biuf'\)"):
        decode(pickle.dumps(obj, protocol=4), ARRAYS)
    got = decode(pickle.dumps(obj, protocol=4), numpy_array_globals(kinds="biufO"))
    assert got.dtype == object and got.tolist() == [[1, 2], [3]]
    with pytest.raises(ValueError, match="kinds must be dtype kind letters"):
        numpy_array_globals(kinds="V")


def test_numpy_scalars_and_latin1_bytes():
    allowed = {**ARRAYS, **safe_pickle.NUMPY_SCALAR_GLOBALS, **safe_pickle.LATIN1_BYTES_GLOBALS}
    got = decode(pickle.dumps([np.int64(4), np.float32(0.5)], protocol=2), allowed)
    assert got == [4, 0.5] and type(got[0]) is np.int64 and type(got[1]) is np.float32
    assert decode(pickle.dumps(b"\x00\xff", protocol=2), allowed) == b"\x00\xff"
    with pytest.raises(ValueError, match="refused to load the global numpy"):   # no scalar entry
        decode(pickle.dumps(np.int64(4), protocol=4), ARRAYS)
    # hand-made abuse of the stand-ins: an object scalar, a non-latin1 encode
    scalar_obj = (b"\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nU\x02O8\x89\x88\x87R"
                  b"K\x01\x86R.")
    with pytest.raises(ValueError, match="refused dtype object"):
        decode(scalar_obj, allowed)
    with_objects = {**numpy_array_globals(kinds="biufO"), **safe_pickle.NUMPY_SCALAR_GLOBALS}
    with pytest.raises(ValueError, match="refused a NumPy scalar that is not a plain number"):
        decode(scalar_obj, with_objects)
    encode_utf8 = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R."
    with pytest.raises(ValueError, match="refused _codecs.encode with anything but latin1 text"):
        decode(encode_utf8, allowed)


def test_corrupt_streams_and_persistent_ids():
    raw = pickle.dumps({"x": list(range(100))}, protocol=4)
    with pytest.raises(ValueError, match=r"^f is not a valid pickle of a dict \(corrupt or truncated: "
                                         r"UnpicklingError: .*\)\. Retry\.$"):
        decode(raw[: len(raw) // 2], {}, what="f", content="a dict", hint="Retry.")
    with pytest.raises(ValueError, match="not a valid pickle"):
        decode(b"", {})

    class _P(pickle.Pickler):
        def persistent_id(self, obj):
            return "ref" if obj == "secret" else None

    buf = io.BytesIO()
    _P(buf, protocol=2).dump(["secret"])
    with pytest.raises(ValueError, match="refused a persistent reference"):
        decode(buf.getvalue(), {})


def test_bad_arguments():
    with pytest.raises(TypeError, match="allowed must be a mapping"):
        RestrictedUnpickler(io.BytesIO(b"N."), [("os", "system")])
    with pytest.raises(TypeError, match="allowed must be a mapping"):
        RestrictedUnpickler(io.BytesIO(b"N."), {"os.system": os.system})
    with pytest.raises(TypeError, match="data must be bytes"):
        decode("N.", {})
    assert decode(b"N.", {}) is None


@pytest.mark.parametrize("module", ["cifar10", "imdb", "safe_pickle"])
def test_dataset_modules_never_call_pickle_load_directly(module):
    import cutedl.datasets as datasets
    src = Path(datasets.__file__).with_name(f"{module}.py").read_text(encoding="utf-8")
    assert "pickle.load(" not in src and "pickle.loads(" not in src
