"""fastnn.data: IDX reading (raw and gzipped, corrupt files), the MNIST-format loaders and their
errors, DataLoader batching/shuffling, random_split, digits."""
import gzip
import os

import numpy as np
import pytest

import fastnn
from fastnn import data
from fastnn.data import DataLoader, Dataset, TensorDataset, random_split
from fastnn.data.idx import read_idx, write_idx

# -- IDX files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    array = (rng.random((5, 3, 4)) * 100).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.shape == (5, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_idx_header_is_big_endian_mnist_layout(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.arange(3, dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])  # magic 2049, N = 3
    assert read_idx(path, expected_magic=2049).tolist() == [0, 1, 2]


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "labels-without-gz-suffix"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    assert read_idx(path).tolist() == [7, 9]


def test_bad_magic_raises_value_error_naming_file(tmp_path):
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not-idx.*magic"):
        read_idx(path)


def test_wrong_expected_magic(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"labels.*2049.*expected 2051"):
        read_idx(path, expected_magic=2051)


@pytest.mark.parametrize("cut", [2, 10, 30])
def test_truncated_raw_file(tmp_path, cut):
    path = tmp_path / "images"
    write_idx(path, np.zeros((2, 4, 4), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw[:cut])
    with pytest.raises(ValueError, match="images"):
        read_idx(path)


def test_truncated_file_message_names_expected_size(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((2, 4, 4), np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"truncated.*47 bytes, expected 48"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.arange(1000, dtype=np.uint8).reshape(10, 10, 10) % 251)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="images.gz"):
        read_idx(path)


# -- MNIST-format data sets ---------------------------------------------------------------------

def _write_split(folder, prefix, n, gz, rng):
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    ext = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("loader", [data.fashion_mnist, data.mnist])
def test_mnist_format_loader(tmp_path, gz, loader):
    rng = np.random.default_rng(1)
    images, labels = _write_split(tmp_path, "train", 6, gz, rng)
    _, test_labels = _write_split(tmp_path, "t10k", 3, gz, rng)
    train = loader(tmp_path)
    x, y = train.arrays
    assert x.shape == (6, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (6,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[:, 0] * 255, images, atol=1e-3)
    np.testing.assert_array_equal(y, labels)
    test = loader(str(tmp_path), train=False)
    assert len(test) == 3
    np.testing.assert_array_equal(test.arrays[1], test_labels)


def test_loader_finds_subfolder_and_env_override(tmp_path, monkeypatch):
    _write_split(tmp_path / "fashion-mnist", "t10k", 2, True, np.random.default_rng(2))
    assert len(data.fashion_mnist(tmp_path, train=False)) == 2
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    assert len(data.fashion_mnist(train=False)) == 2


def test_missing_folder_names_every_path_and_how_to_get_them(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        data.fashion_mnist(root)
    message = str(info.value)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        assert os.path.join(str(root), name + ".gz") in message
        assert os.path.join(str(root), name) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


def test_missing_labels_file_only_names_it(tmp_path):
    rng = np.random.default_rng(3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (2, 28, 28), dtype=np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        data.mnist(tmp_path, train=False)
    assert "t10k-labels-idx1-ubyte" in str(info.value)
    assert "t10k-images-idx3-ubyte" not in str(info.value)


def test_images_and_labels_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="3 images.*2 labels"):
        data.mnist(tmp_path)


def test_labels_file_in_place_of_images_is_rejected(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(3, np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*expected 2051"):
        data.mnist(tmp_path)


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_system_fashion_mnist_test_split():
    test = data.fashion_mnist(train=False)
    x, y = test.arrays
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [1000] * 10
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0


# -- Dataset, TensorDataset -------------------------------------------------------------------

def test_dataset_is_abstract():
    with pytest.raises(NotImplementedError):
        Dataset()[0]
    with pytest.raises(NotImplementedError):
        len(Dataset())


def test_tensor_dataset_items_and_validation():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    ds = TensorDataset(fastnn.tensor(x), y)
    assert len(ds) == 6
    xi, yi = ds[4]
    assert isinstance(xi, fastnn.Tensor) and xi.numpy().tolist() == [8.0, 9.0] and yi.item() == 4
    with pytest.raises(ValueError, match=r"same first dimension.*\[6, 5\]"):
        TensorDataset(x, np.arange(5))
    with pytest.raises(ValueError):
        TensorDataset()


# -- DataLoader ---------------------------------------------------------------------------------

def _dataset(n=10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return TensorDataset(x, np.arange(n, dtype=np.int32))


class _ListDataset(Dataset):
    """A plain map-style data set (no arrays to fancy-index): exercises the per-sample path."""

    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        return np.full(3, i, np.float64).astype(np.float32), i

    def __len__(self):
        return self.n


@pytest.mark.parametrize("make", [_dataset, _ListDataset], ids=["tensor", "generic"])
@pytest.mark.parametrize("n,batch,drop_last,expected", [
    (10, 3, False, [3, 3, 3, 1]), (10, 3, True, [3, 3, 3]), (9, 3, True, [3, 3, 3]),
    (10, 10, False, [10]), (10, 16, False, [10]), (10, 16, True, []), (10, 1, False, [1] * 10)])
def test_batch_counts(make, n, batch, drop_last, expected):
    loader = DataLoader(make(n), batch_size=batch, drop_last=drop_last)
    assert len(loader) == len(expected)
    assert [len(y) for _, y in loader] == expected


@pytest.mark.parametrize("make", [_dataset, _ListDataset], ids=["tensor", "generic"])
def test_batches_are_tensors_float32_and_int64(make):
    x, y = next(iter(DataLoader(make(10), batch_size=4)))
    assert isinstance(x, fastnn.Tensor) and isinstance(y, fastnn.Tensor)
    assert x.dtype == np.float32 and x.shape == (4, 3)
    assert y.dtype == np.int64 and y.numpy().tolist() == [0, 1, 2, 3]


def test_float64_data_and_float_targets_keep_their_dtype():
    ds = TensorDataset(np.zeros((4, 2)), np.zeros((4, 1), np.float32))
    x, y = next(iter(DataLoader(ds, batch_size=2)))
    assert x.dtype == np.float64 and y.dtype == np.float32


@pytest.mark.parametrize("make", [_dataset, _ListDataset], ids=["tensor", "generic"])
def test_every_sample_once_per_epoch_and_reshuffled(make):
    loader = DataLoader(make(50), batch_size=7, shuffle=True, seed=0)
    epochs = []
    for _ in range(3):
        labels = np.concatenate([y.numpy() for _, y in loader])
        assert sorted(labels.tolist()) == list(range(50))
        epochs.append(labels.tolist())
    assert epochs[0] != epochs[1] != epochs[2]
    assert epochs[0] != list(range(50))


def test_rows_stay_paired_when_shuffled():
    for x, y in DataLoader(_dataset(20), batch_size=6, shuffle=True, seed=3):
        np.testing.assert_array_equal(x.numpy()[:, 0], 3 * y.numpy())


def test_shuffle_is_deterministic_with_seed():
    def order(seed):
        loader = DataLoader(_dataset(30), batch_size=4, shuffle=True, seed=seed)
        return [np.concatenate([y.numpy() for _, y in loader]).tolist() for _ in range(2)]
    assert order(5) == order(5)
    assert order(5) != order(6)


def test_unseeded_shuffle_follows_manual_seed():
    def order():
        fastnn.manual_seed(11)
        loader = DataLoader(_dataset(30), batch_size=4, shuffle=True)
        return np.concatenate([y.numpy() for _, y in loader]).tolist()
    assert order() == order()


def test_drop_last_with_shuffle_drops_only_the_remainder():
    loader = DataLoader(_dataset(10), batch_size=3, shuffle=True, drop_last=True, seed=0)
    labels = np.concatenate([y.numpy() for _, y in loader])
    assert len(labels) == 9 and len(set(labels.tolist())) == 9


def test_no_shuffle_batches_share_memory_with_the_dataset():
    ds = TensorDataset(np.zeros((8, 2), np.float32), np.zeros(8, np.int64))
    x, _ = next(iter(DataLoader(ds, batch_size=4)))
    assert np.shares_memory(x.numpy(), ds.arrays[0])


def test_tensor_dataset_path_does_not_index_samples(monkeypatch):
    ds = _dataset(10)

    def forbidden(self, index):
        raise AssertionError("per-sample __getitem__ called on the fast path")
    monkeypatch.setattr(TensorDataset, "__getitem__", forbidden)
    train, _ = random_split(ds, [6, 4], seed=0)
    assert sum(len(y) for _, y in DataLoader(ds, batch_size=3, shuffle=True, seed=0)) == 10
    assert sum(len(y) for _, y in DataLoader(train, batch_size=4, shuffle=True, seed=0)) == 6


def test_loader_over_subset_yields_exactly_the_subset():
    train, test = random_split(_dataset(20), [0.75, 0.25], seed=1)
    for part in (train, test):
        got = np.concatenate([y.numpy() for _, y in DataLoader(part, batch_size=4, shuffle=True, seed=0)])
        assert sorted(got.tolist()) == sorted(part.indices.tolist())
        got = np.concatenate([y.numpy() for _, y in DataLoader(part, batch_size=4)])
        assert got.tolist() == part.indices.tolist()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(_dataset(), batch_size=bad)


# -- random_split -------------------------------------------------------------------------------

@pytest.mark.parametrize("lengths,sizes", [
    ([7, 3], [7, 3]), ([0.8, 0.2], [8, 2]), ([0.5, 0.3, 0.2], [5, 3, 2]),
    ([1 / 3, 1 / 3, 1 / 3], [4, 3, 3]), ([10, 0], [10, 0])])
def test_random_split_sizes_and_disjointness(lengths, sizes):
    parts = random_split(_dataset(10), lengths, seed=0)
    assert [len(p) for p in parts] == sizes
    indices = np.concatenate([p.indices for p in parts])
    assert sorted(indices.tolist()) == list(range(10))


def test_random_split_is_seeded():
    a = random_split(_dataset(10), [5, 5], seed=1)[0].indices
    b = random_split(_dataset(10), [5, 5], seed=1)[0].indices
    c = random_split(_dataset(10), [5, 5], seed=2)[0].indices
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_subset_items():
    ds = _dataset(10)
    part = random_split(ds, [4, 6], seed=0)[0]
    _, y = part[1]
    assert y.item() == part.indices[1]


@pytest.mark.parametrize("lengths", [[5, 4], [0.5, 0.4], [11, -1], [0.5, 5]])
def test_random_split_rejects_bad_lengths(lengths):
    with pytest.raises((ValueError, TypeError)):
        random_split(_dataset(10), lengths)


# -- digits -------------------------------------------------------------------------------------

def test_digits():
    ds = data.digits()
    x, y = ds.arrays
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert sorted(set(y.tolist())) == list(range(10))
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    reference = sklearn_datasets.load_digits()
    np.testing.assert_allclose(x[:, 0], reference.images / 16, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y, reference.target)
