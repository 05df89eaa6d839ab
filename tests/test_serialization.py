"""fastnn.save / fastnn.load: round trips, key order, dtypes, nested optimizer-style state, atomic
writes, no pickle, and clear errors for truncated, foreign and corrupt files."""
import io
import os
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

import fastnn
from fastnn import serialization


def _state():
    rng = np.random.default_rng(0)
    return OrderedDict([
        ("0.weight", rng.standard_normal((4, 1, 3, 3)).astype(np.float32)),
        ("0.bias", rng.standard_normal(4).astype(np.float32)),
        ("1.running_mean", rng.standard_normal(4)),  # float64
        ("1.num_batches_tracked", np.array(7, dtype=np.int64)),
        ("mask", np.array([True, False])),
        ("a.b.c", np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2]),  # non-contiguous
        ("empty", np.zeros((0, 3), np.float32)),
    ])


def test_round_trip_preserves_order_dtypes_and_values(tmp_path):
    state = _state()
    path = tmp_path / "model.npz"
    fastnn.save(state, path)
    loaded = fastnn.load(path)
    assert isinstance(loaded, OrderedDict)
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert isinstance(loaded[key], np.ndarray)
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value)


def test_key_order_is_the_given_order_not_sorted(tmp_path):
    keys = ["z", "b", "10.weight", "2.weight", "a"]
    fastnn.save(OrderedDict((k, np.zeros(1)) for k in keys), tmp_path / "s.npz")
    assert list(fastnn.load(tmp_path / "s.npz")) == keys


def test_tensors_and_numbers(tmp_path):
    t = fastnn.tensor([[1.0, 2.0]], requires_grad=True)
    fastnn.save({"t": t, "n": 3, "f": 0.5, "np_scalar": np.float32(2.5)}, str(tmp_path / "s.npz"))
    loaded = fastnn.load(str(tmp_path / "s.npz"))
    assert loaded["t"].dtype == np.float32 and loaded["t"].tolist() == [[1.0, 2.0]]
    assert loaded["n"] == 3 and loaded["f"] == 0.5
    assert loaded["np_scalar"].dtype == np.float32 and loaded["np_scalar"] == 2.5


def test_nested_optimizer_state_round_trip(tmp_path):
    opt_state = {
        "state": {0: {"step": 3, "exp_avg": np.ones(3, np.float32), "exp_avg_sq": np.full(3, 2.0, np.float32)},
                  1: {"step": 3, "exp_avg": np.zeros((2, 2), np.float32)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                          "amsgrad": False, "maximize": None, "params": [0, 1]}],
    }
    checkpoint = {"model": _state(), "optimizer": opt_state, "epoch": 4, "best": float("inf")}
    fastnn.save(checkpoint, tmp_path / "ckpt.npz")
    loaded = fastnn.load(tmp_path / "ckpt.npz")
    assert list(loaded) == ["model", "optimizer", "epoch", "best"]
    assert loaded["epoch"] == 4 and loaded["best"] == float("inf")
    group = loaded["optimizer"]["param_groups"][0]
    assert group == opt_state["param_groups"][0]
    assert isinstance(group["betas"], tuple)
    state = loaded["optimizer"]["state"]
    assert list(state) == [0, 1]  # int keys stay ints
    assert state[0]["step"] == 3
    np.testing.assert_array_equal(state[0]["exp_avg_sq"], opt_state["state"][0]["exp_avg_sq"])
    np.testing.assert_array_equal(loaded["model"]["0.weight"], checkpoint["model"]["0.weight"])


def test_file_is_npz_readable_by_numpy(tmp_path):
    state = _state()
    fastnn.save(state, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["0.weight"], state["0.weight"])


def test_file_object_round_trip():
    buffer = io.BytesIO()
    fastnn.save(_state(), buffer)
    buffer.seek(0)
    assert list(fastnn.load(buffer)) == list(_state())


def test_module_state_dict_round_trip(tmp_path):
    from fastnn import nn

    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3))
    fastnn.save(model.state_dict(), tmp_path / "m.npz")
    other = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3))
    other.load_state_dict(fastnn.load(tmp_path / "m.npz"))
    for (k, a), (k2, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


# -- errors -------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        fastnn.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6, 0.95])
def test_truncated_file_raises_value_error_naming_path(tmp_path, keep):
    path = tmp_path / "s.npz"
    fastnn.save(_state(), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ValueError, match="s.npz"):
        fastnn.load(path)


def test_corrupt_member_raises_value_error(tmp_path):
    path = tmp_path / "s.npz"
    state = OrderedDict([("w", np.arange(1000, dtype=np.float32))])
    fastnn.save(state, path)
    raw = bytearray(path.read_bytes())
    start = raw.find(np.arange(1000, dtype=np.float32)[100:110].tobytes())
    raw[start:start + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="s.npz"):
        fastnn.load(path)


def test_non_zip_file(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x80\x04\x95 this looks like a pickle")
    with pytest.raises(ValueError, match=r"weights.pt.*fastnn.save"):
        fastnn.load(path)


def test_foreign_npz_without_marker(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.zeros(3))
    with pytest.raises(ValueError, match=r"plain.npz.*__fastnn__"):
        fastnn.load(path)


def test_foreign_zip(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="other.zip"):
        fastnn.load(path)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fastnn.save({"w": np.ones(1)}, tmp_path / "nowhere" / "s.npz")


def test_object_arrays_and_arbitrary_objects_are_refused(tmp_path):
    path = tmp_path / "s.npz"
    with pytest.raises((TypeError, ValueError), match="object"):
        fastnn.save({"w": np.array([{"a": 1}], dtype=object)}, path)
    with pytest.raises(TypeError, match="set"):
        fastnn.save({"w": {1, 2}}, path)
    with pytest.raises(TypeError):
        fastnn.save({(1, 2): np.zeros(1)}, path)
    assert not path.exists()
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_pickled_member_is_never_unpickled(tmp_path):
    """A hand-made file whose member is a pickled object array: load refuses, nothing executes."""
    path = tmp_path / "evil.npz"
    fastnn.save({"w": np.zeros(2)}, path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    payload = io.BytesIO()
    np.lib.format.write_array(payload, np.array([print], dtype=object), allow_pickle=True)
    members["w.npy"] = payload.getvalue()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    with pytest.raises(ValueError, match="evil.npz"):
        fastnn.load(path)


# -- atomicity ----------------------------------------------------------------------------------

def test_failing_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    fastnn.save({"w": np.ones(3)}, path)
    before = path.read_bytes()
    calls = []
    original = np.lib.format.write_array

    def write_then_fail(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 3:
            raise OSError("disk full")
        return original(fp, array, *args, **kwargs)
    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        fastnn.save({"a": np.zeros(5), "b": np.zeros(6), "c": np.zeros(7)}, path)
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["s.npz"]  # the temporary file was removed
    monkeypatch.undo()
    np.testing.assert_array_equal(fastnn.load(path)["w"], np.ones(3))


def test_save_replaces_via_rename_after_fsync(tmp_path, monkeypatch):
    path = tmp_path / "s.npz"
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(serialization.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(serialization.os, "replace",
                        lambda a, b: (events.append(("replace", os.path.dirname(a) == str(tmp_path))),
                                      real_replace(a, b))[1])
    fastnn.save({"w": np.ones(2)}, path)
    assert events[0] == "fsync" and events[1] == ("replace", True)
    assert list(fastnn.load(path)) == ["w"]


def test_overwrite_keeps_permissions(tmp_path):
    path = tmp_path / "s.npz"
    fastnn.save({"w": np.ones(2)}, path)
    os.chmod(path, 0o640)
    fastnn.save({"w": np.zeros(2)}, path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert fastnn.load(path)["w"].tolist() == [0.0, 0.0]


def test_new_file_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        fastnn.save({"w": np.ones(2)}, tmp_path / "s.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "s.npz").st_mode & 0o777 == 0o644
