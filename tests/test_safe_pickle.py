"""The restricted unpickler: data loads, code never runs."""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from tune_m3.data.safe_pickle import UnsafePickleError, safe_load
from tune_m3.errors import UserError


class _Payload:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_round_trips(tmp_path, protocol):
    obj = {
        "train": {
            "x": np.arange(12, dtype=np.float32).reshape(2, 3, 2),
            "ids": np.array(["a", "b"]),
            "obj_ids": np.array([["a", 1], ["b", 2]], dtype=object),
            "s": np.float64(1.5),
            "list": [1, 2.0, "three", b"four", None, True],
            "set": {1, 2},
            "od": OrderedDict(a=1),
        }
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    back = safe_load(path)["train"]
    np.testing.assert_array_equal(back["x"], obj["train"]["x"])
    assert back["x"].dtype == np.float32
    assert list(back["ids"]) == ["a", "b"]
    assert back["obj_ids"][1, 0] == "b"
    assert back["list"] == obj["train"]["list"]
    assert back["set"] == {1, 2}
    assert back["s"] == 1.5


def test_malicious_pickle_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": _Payload(marker)}))
    with pytest.raises(UnsafePickleError, match=r"evil.pkl.*(posix|os)\.system"):
        safe_load(path)
    assert not marker.exists()
    # the same file under plain pickle would have run the payload: proof the test is real
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        (eval, ("1+1",)),
        (getattr, ("text", "upper")),
        (__import__, ("os",)),
    ],
)
def test_other_callables_refused(tmp_path, payload):
    class P:
        def __reduce__(self):
            return payload

    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps([P()]))
    with pytest.raises(UnsafePickleError):
        safe_load(path)


def test_truncated_and_garbage_files(tmp_path):
    good = pickle.dumps({"a": np.zeros((100, 100), np.float32)})
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        safe_load(trunc)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle at all")
    with pytest.raises(UserError, match="not a readable pickle"):
        safe_load(junk)
    with pytest.raises(UserError, match="no such file"):
        safe_load(tmp_path / "absent.pkl")
