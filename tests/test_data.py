"""The data: the loader against the facts of the real MNIST (shared/data/mnist/README.md) and of the 8x8 digits
(their README), the checks that refuse corrupt, truncated, missing or inconsistent files, in the bundled data and in
a data.path, digit selection and splits (a test split for a dataset without one; splits that would leave a class or
a split empty are refused), and the Sampler/DataLoader pair."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, one_line_error, tiny, train, write_yaml

from digitlab.data import DataLoader, Dataloader, Sampler, load_data, stratified_split
from digitlab.data import digits8x8 as d8
from digitlab.data import mnist as bundled
from digitlab.data.idx import FILES
from digitlab.data.idx import load_idx_set as read_idx_folder
from digitlab.errors import DataError


def load_digits(digits, validation=0.0, limit=None, path=None, rng=None):
    return load_data({"digits": digits, "validation": validation, "limit": limit, "path": path}, rng)


def load_idx_set(folder=None):
    """The four arrays of a folder of IDX files, or of the bundled MNIST (checked against its md5s)."""
    return read_idx_folder(folder) if folder is not None else read_idx_folder(bundled.BUNDLED, bundled.MNIST_MD5)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def raw():
    return load_idx_set()


@pytest.fixture(scope="module")
def three_eight():
    return load_digits([3, 8])


# -- the real MNIST -------------------------------------------------------------------------------------------------
def test_shapes_and_types(raw):
    assert raw["train_images"].shape == (60000, 28, 28) and raw["test_images"].shape == (10000, 28, 28)
    assert raw["train_labels"].shape == (60000,) and raw["test_labels"].shape == (10000,)
    for array in raw.values():
        assert array.dtype == np.uint8


def test_label_counts_per_digit(raw):
    assert np.bincount(raw["train_labels"], minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(raw["test_labels"], minlength=10).tolist() == TEST_COUNTS


def test_labels_at_known_positions(raw):
    assert raw["train_labels"][7777] == 8
    assert raw["train_labels"][7776] == 2


def test_three_versus_eight_sizes(three_eight):
    assert len(three_eight.train) == 11982 and len(three_eight.test) == 1984
    assert three_eight.val is None
    assert three_eight.classes == [3, 8]
    assert three_eight.sizes() == {"train": 11982, "val": 0, "test": 1984}


def test_pixels_are_float32_in_0_1_scaled_once(raw, three_eight):
    x = three_eight.train.x
    assert x.dtype == np.float32 and x.shape == (11982, 1, 28, 28)
    assert x.min() == 0.0 and x.max() == 1.0
    first = np.flatnonzero(np.isin(raw["train_labels"], [3, 8]))[0]
    np.testing.assert_allclose(x[0, 0], raw["train_images"][first] / 255.0, rtol=1e-6)
    assert three_eight.test.x.dtype == np.float32 and three_eight.test.x.max() <= 1.0


def test_class_index_follows_the_order_of_digits(raw, three_eight):
    # [3, 8]: 3 is class 0, 8 is class 1, in the file's order
    labels = raw["train_labels"][np.isin(raw["train_labels"], [3, 8])]
    np.testing.assert_array_equal(three_eight.train.y, np.where(labels == 3, 0, 1))
    assert np.bincount(three_eight.train.y).tolist() == [6131, 5851]
    assert np.bincount(three_eight.test.y).tolist() == [1010, 974]
    reverse = load_digits([8, 3])
    assert np.bincount(reverse.train.y).tolist() == [5851, 6131]
    np.testing.assert_array_equal(reverse.train.y, 1 - three_eight.train.y)
    three = load_digits([1, 7, 9])
    assert np.bincount(three.test.y).tolist() == [1135, 1028, 1009]
    assert three.train.y.dtype == np.int64


def test_validation_is_stratified_and_seeded(three_eight):
    a = load_digits([3, 8], validation=0.1, rng=np.random.default_rng(0))
    assert np.bincount(a.val.y).tolist() == [613, 585]  # round(0.1 * 6131), round(0.1 * 5851)
    assert len(a.train) + len(a.val) == 11982
    assert a.sizes() == {"train": 10784, "val": 1198, "test": 1984}
    np.testing.assert_array_equal(a.test.x, three_eight.test.x)  # the test set is never split
    b = load_digits([3, 8], validation=0.1, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.val.x, b.val.x)
    np.testing.assert_array_equal(a.train.y, b.train.y)
    c = load_digits([3, 8], validation=0.1, rng=np.random.default_rng(1))
    assert not np.array_equal(a.val.x, c.val.x)


def test_stratified_split_partitions_each_class():
    y = np.repeat([0, 1, 2], [100, 50, 7])
    kept, held = stratified_split(y, 0.2, np.random.default_rng(0))
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(y)))
    assert np.bincount(y[held]).tolist() == [20, 10, 1]
    assert list(held) == sorted(held) and list(kept) == sorted(kept)
    again, _ = stratified_split(y, 0.2, np.random.default_rng(0))
    other, _ = stratified_split(y, 0.2, np.random.default_rng(1))
    np.testing.assert_array_equal(kept, again)
    assert not np.array_equal(kept, other)


def test_limit_caps_the_training_set(three_eight):
    a = load_digits([3, 8], limit=500, rng=np.random.default_rng(0))
    assert len(a.train) == 500 and len(a.test) == 1984
    assert 200 < np.count_nonzero(a.train.y == 0) < 300  # a random subset, not the first 500 of one digit
    b = load_digits([3, 8], limit=500, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(a.train.x, b.train.x)
    with_val = load_digits([3, 8], validation=0.1, limit=300, rng=np.random.default_rng(0))
    assert with_val.sizes() == {"train": 270, "val": 30, "test": 1984}  # the limit is drawn before the split
    assert len(load_digits([3, 8], limit=10**6).train) == 11982


# -- the 8x8 digits ------------------------------------------------------------------------------------------------
COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
IMAGE0 = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
          [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
          [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]


def test_the_8x8_digits_against_their_readme():
    images, labels = d8.read_digits_csv()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == COUNTS
    assert labels[:10].tolist() == list(range(10)) and labels[-5:].tolist() == [9, 0, 8, 9, 8]
    assert images[0].tolist() == IMAGE0
    assert images.min() == 0 and images.max() == 16


@pytest.mark.parametrize("damage", ["truncate", "one byte"])
def test_a_damaged_8x8_file_is_refused_with_one_line(tmp_path, damage):
    raw = gzip.decompress(d8.FILE.read_bytes())
    path = tmp_path / "digits.csv.gz"
    if damage == "truncate":
        path.write_bytes(d8.FILE.read_bytes()[:5000])
    else:
        path.write_bytes(gzip.compress(raw.replace(b"0,0,5,13", b"0,0,5,14", 1)))
    with pytest.raises(DataError) as error:
        d8.read_digits_csv(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert ("truncated" if damage == "truncate" else "md5") in str(error.value)


def test_the_test_split_is_stratified_the_same_for_every_seed_and_recorded(average_image_run):
    a = load_data({"dataset": "digits8x8", "digits": list(range(10)), "test": 0.2, "validation": 0.1},
                  np.random.default_rng(0))
    b = load_data({"dataset": "digits8x8", "digits": list(range(10)), "test": 0.2, "validation": 0.1},
                  np.random.default_rng(1))
    assert np.bincount(a.test.y).tolist() == [round(0.2 * c) for c in COUNTS]
    np.testing.assert_array_equal(a.indices["test"], b.indices["test"])  # every run tests on the same images
    assert not np.array_equal(a.indices["val"], b.indices["val"])  # the validation split follows the seed
    assert not set(a.indices["test"]) & (set(a.indices["train"]) | set(a.indices["val"]))
    assert a.image_shape == (1, 8, 8) and a.test.x.shape[1:] == (1, 8, 8) and a.train.x.max() == 1.0
    run = average_image_run  # trained with data.test 0.2
    with np.load(run / "splits.npz") as npz:
        np.testing.assert_array_equal(npz["test"], a.indices["test"])
    summary = json.loads((run / "summary.json").read_text())
    assert cli("evaluate", run).output.startswith(f"test_accuracy {summary['test_accuracy']:.6f}")


# -- splits that would leave a class or a split empty ----------------------------------------------------------------
def test_a_split_that_leaves_a_class_without_training_examples_is_an_error(tmp_path):
    cfg = tiny(name="empty", data={"digits": [3, 8, 1], "limit": 2}, loss="cross_entropy", model=[{"linear": 3}])
    _, result = train(cfg, tmp_path / "runs", codes=(2,))
    assert "has no training example left" in result.output and "digit " in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("data,words", [
    ({"test": 0.0001}, "data.test: 0.0001 of the 357 images of digits [3, 8] holds out no test image; raise "
                       "data.test"),
    ({"test": 0.999}, "data: digit 3 has no image in digits8x8's training pool once data.test 0.999 is held out; "
                      "lower data.test"),
    ({"validation": 0.0001}, "data.validation: 0.0001 of a training pool of 285 images holds out no validation "
                             "image"),
])
def test_fractions_that_leave_a_split_empty_are_refused_naming_the_config(tmp_path, data, words):
    """Before, an empty test or validation split trained, scored nan and exited 0 as `complete`."""
    config = write_yaml(tmp_path / "empty.yaml", tiny(name="empty", data={"dataset": "digits8x8", "digits": [3, 8],
                                                                          **data}))
    for args in ((), ("--dry-run",)):
        _, result = train(config, tmp_path / "runs", *args, codes=(2,))
        assert len(result.output.splitlines()) == 1
        assert result.output.startswith(f"error: {config}: {words}"), result.output
    assert not (tmp_path / "runs").exists()
    look = cli("data", "--dataset", "digits8x8", "--digits", "3,8", *[f"--{k}={v}" for k, v in data.items()])
    assert look.exit_code == 2 and words in look.output and len(look.output.splitlines()) == 1


# -- refusing bad files ----------------------------------------------------------------------------------------------
@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIGITLAB_CACHE", str(cache))
    return cache


def copy_of_mnist(folder: Path, damaged: str, damage) -> Path:
    """A folder with the bundled files linked in, except `damaged`, which is a copy passed through damage(bytes)."""
    folder.mkdir()
    for name in FILES.values():
        source = bundled.BUNDLED / name
        if name == damaged:
            (folder / name).write_bytes(damage(source.read_bytes()))
        else:
            os.symlink(source, folder / name)
    return folder


def one_line_naming(error: pytest.ExceptionInfo, path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize("name", ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"])
def test_truncated_gz_in_data_path(tmp_path, tmp_cache, name):
    folder = copy_of_mnist(tmp_path / "mnist", name, lambda data: data[: len(data) // 2])
    with pytest.raises(DataError) as error:
        load_digits([3, 8], path=str(folder))
    assert "corrupt or truncated" in one_line_naming(error, folder / name)


def test_corrupt_gz_in_data_path(tmp_path, tmp_cache):
    name = "train-labels-idx1-ubyte.gz"

    def flip(data):
        data = bytearray(data)
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0xFF
        return bytes(data)

    folder = copy_of_mnist(tmp_path / "mnist", name, flip)
    with pytest.raises(DataError) as error:
        load_idx_set(folder)
    assert "corrupt or truncated" in one_line_naming(error, folder / name)


def test_md5_of_the_bundled_files_is_checked(tmp_path, tmp_cache, monkeypatch):
    """A bundled file that still decompresses but whose bytes changed (one label) is refused by its md5."""
    name = "train-labels-idx1-ubyte.gz"

    def one_label_changed(data):
        raw = bytearray(gzip.decompress(data))
        raw[8 + 7777] = 3  # the 8 at index 7777
        return gzip.compress(bytes(raw), mtime=0)

    folder = copy_of_mnist(tmp_path / "mnist", name, one_label_changed)
    monkeypatch.setattr(bundled, "BUNDLED", folder)
    with pytest.raises(DataError) as error:
        load_idx_set()
    message = one_line_naming(error, folder / name)
    assert "md5" in message and bundled.MNIST_MD5[name] in message
    # the same file through data.path has no published md5: it loads, with the changed label
    assert load_idx_set(folder)["train_labels"][7777] == 3


def test_damaged_cache_entry_is_rebuilt(tmp_cache, raw):
    load_idx_set()  # fills the temporary cache
    entries = sorted(tmp_cache.glob("train-labels-*.npy"))
    assert len(entries) == 1
    entries[0].write_bytes(b"not an npy file")
    np.testing.assert_array_equal(load_idx_set()["train_labels"], raw["train_labels"])
    np.testing.assert_array_equal(np.load(entries[0]), raw["train_labels"])


def test_missing_file(fake_idx_folder, tmp_cache):
    folder = fake_idx_folder()
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as error:
        load_digits([3, 8], path=str(folder))
    message = one_line_naming(error, folder / "t10k-labels-idx1-ubyte.gz")
    assert "not found" in message


def test_path_that_is_not_a_folder(tmp_path, tmp_cache):
    with pytest.raises(DataError, match="not a folder"):
        load_idx_set(tmp_path / "nowhere")


def test_images_and_labels_of_different_counts(fake_idx_folder, tmp_cache):
    folder = fake_idx_folder(n_train=40, n_train_labels=39)
    with pytest.raises(DataError) as error:
        load_idx_set(folder)
    message = str(error.value)
    assert "\n" not in message and str(folder) in message
    assert "train-images-idx3-ubyte.gz holds 40 images" in message and "39 labels" in message


@pytest.mark.parametrize("gz", [True, False])
def test_a_header_that_declares_more_than_the_file_holds_is_refused_before_any_memory_is_sized(tmp_path, gz):
    """2^32-1 images of 28x28 in a 39-byte file: before, the config was blamed for needing 3 million GiB."""
    import struct

    from digitlab.config import load_config
    folder = copy_of_mnist(tmp_path / "mnist", "train-images-idx3-ubyte.gz", lambda data: gzip.compress(
        struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 2**32 - 1, 28, 28) + bytes(1000)))
    name = "train-images-idx3-ubyte.gz"
    if not gz:
        (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress((folder / name).read_bytes()))
        (folder / name).unlink()
        name = name.removesuffix(".gz")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{digits: [3, 8], path: {folder}}}\nmodel: [{{linear: 1}}, sigmoid]\nloss: bce\n")
    with pytest.raises(DataError) as error:
        load_config(config)
    message = one_line_naming(error, folder / name)
    assert "header declares 4294967295 x 28 x 28 values" in message and "truncated or its header damaged" in message


def test_not_an_idx_file(fake_idx_folder, tmp_cache):
    folder = fake_idx_folder()
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04 not idx"))
    with pytest.raises(DataError) as error:
        load_idx_set(folder)
    assert "not a valid IDX file" in one_line_naming(error, folder / "t10k-labels-idx1-ubyte.gz")


def test_data_path_with_a_small_data_set(fake_idx_folder, tmp_cache, write_idx):
    folder = fake_idx_folder(n_train=40, n_test=20)
    data = load_digits([3, 8], path=str(folder))
    assert data.sizes() == {"train": 8, "val": 0, "test": 4}  # labels cycle 0..9
    assert data.train.y.tolist() == [0, 1] * 4
    raw = load_idx_set(folder)
    np.testing.assert_allclose(data.train.x[0, 0], raw["train_images"][3] / 255.0, rtol=1e-6)
    # uncompressed IDX files with MNIST's names (without .gz) are read too
    plain = folder.parent / "plain"
    plain.mkdir()
    for key, name in FILES.items():
        write_idx(plain / name.removesuffix(".gz"), raw[key])
    np.testing.assert_array_equal(load_idx_set(plain)["test_images"], raw["test_images"])


def test_data_path_problems_name_the_file(write_config, fake_idx_folder):
    folder = fake_idx_folder(n_train=40, n_train_labels=30)
    message = one_line_error(cli("train", write_config(tiny(data={"digits": [3, 8], "path": str(folder)}))))
    assert "train-images-idx3-ubyte.gz" in message and "40" in message and "30" in message
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    message = one_line_error(cli("train", write_config(tiny(data={"digits": [3, 8], "path": str(folder)}))))
    assert "t10k-labels-idx1-ubyte.gz" in message and "not found" in message


def test_a_data_path_without_an_image_of_a_digit_says_which_part(tmp_path, fake_idx_folder):
    folder = fake_idx_folder(n_train=40, n_test=3)  # test labels 0, 1, 2
    _, result = train(tiny(data={"digits": [3, 8], "path": str(folder)}), tmp_path / "runs", codes=(2,))
    assert "test part has no image of digits [3, 8]" in result.output, result.output


def test_images_of_another_size_train_and_mismatched_sizes_are_one_line(tmp_path, write_config, write_idx):
    """A dataset knows its image size: 32x32 IDX files train a dense or a conv model; train and test images of
    different sizes are one line, before any run folder exists."""
    folder = tmp_path / "small"
    folder.mkdir()
    rng = np.random.default_rng(0)
    write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 32, 32)))
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(40) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 32, 32)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    dense = write_config(tiny(data={"digits": [3, 8], "path": str(folder)}, epochs=1), "dense.yaml")
    train(dense, tmp_path / "runs", "--quiet")
    conv = write_config(tiny(data={"digits": [3, 8], "path": str(folder)}, epochs=1,
                             model=[{"conv2d": 2}, "relu", {"maxpool2d": 2}, "flatten", {"linear": 1}, "sigmoid"]),
                        "conv.yaml")
    _, result = train(conv, tmp_path / "runs")
    assert "15x15" not in result.output, result.output
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    message = one_line_error(cli("train", dense, "--runs-dir", tmp_path / "other"))
    assert "32x32" in message and "28x28" in message
    assert not (tmp_path / "other").exists()


# -- Sampler and DataLoader -----------------------------------------------------------------------------------------
def epoch(sampler):
    return [batch.tolist() for batch in sampler]


def test_sampler_covers_every_sample_once_per_epoch_with_a_last_partial_batch():
    sampler = Sampler(103, 10, shuffle=True, rng=np.random.default_rng(0))
    batches = epoch(sampler)
    assert len(batches) == len(sampler) == 11
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(i for b in batches for i in b) == list(range(103))


def test_sampler_shuffles_differently_each_epoch():
    sampler = Sampler(100, 10, shuffle=True, rng=np.random.default_rng(0))
    first, second = epoch(sampler), epoch(sampler)
    assert first != second
    assert sorted(sum(first, [])) == sorted(sum(second, [])) == list(range(100))
    assert sum(first, []) != list(range(100))  # shuffled samples, not only shuffled batches
    # the same seed gives the same epochs
    again = Sampler(100, 10, shuffle=True, rng=np.random.default_rng(0))
    assert epoch(again) == first and epoch(again) == second


def test_sampler_without_shuffle_keeps_the_order():
    sampler = Sampler(25, 10, shuffle=False)
    assert epoch(sampler) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    assert epoch(sampler) == epoch(sampler)


def test_sampler_drop_last():
    sampler = Sampler(25, 10, shuffle=True, rng=np.random.default_rng(0), drop_last=True)
    batches = epoch(sampler)
    assert len(batches) == len(sampler) == 2 and all(len(b) == 10 for b in batches)
    assert len(set(sum(batches, []))) == 20
    assert len(Sampler(20, 10, shuffle=False, drop_last=True)) == 2
    tiny = Sampler(5, 10, shuffle=False, drop_last=True)
    assert len(tiny) == 0 and epoch(tiny) == []


def test_shuffling_sampler_needs_a_generator():
    with pytest.raises(ValueError):
        Sampler(10, 2, shuffle=True)


def test_dataloader_gathers_matching_rows():
    x = np.arange(23 * 3, dtype=np.float32).reshape(23, 3)
    y = np.arange(23)
    loader = DataLoader((x, y), Sampler(23, 5, shuffle=True, rng=np.random.default_rng(2)))
    assert len(loader) == 5
    seen = []
    for xb, yb in loader:
        np.testing.assert_array_equal(xb, x[yb])
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(23)) and seen != list(range(23))
    assert Dataloader is DataLoader
    with pytest.raises(ValueError):
        DataLoader((x, y[:-1]), Sampler(23, 5, shuffle=False))
