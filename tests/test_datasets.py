"""Dataset loaders: the IDX reader, Fashion-MNIST, the digits as images, torchvision datasets.

Fashion-MNIST is tested on tiny IDX files written here in the real format; the installed files
of the Debian package are read too when present. Nothing is downloaded.
"""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Subset, TensorDataset

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import (
    CIFAR100_HIERARCHY,
    CIFAR100_SUPERCLASSES,
    DIGITS_HIERARCHY,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_HIERARCHY,
    check_image_tree,
    dataset_with_labels,
    load_digits_images,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from sklearn_task2vec.task_library import RelabelledSubset, hierarchy_tasks

IDX_TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def idx_bytes(array, type_code=None):
    """``array`` in the IDX format: magic number, big-endian dimensions, big-endian values."""
    dtype = np.dtype(array.dtype).newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if type_code is None:
        type_code = next(code for name, code in IDX_TYPE_CODES.items() if np.dtype(name) == dtype)
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path, array, compress=True):
    data = idx_bytes(array)
    if compress:
        with gzip.open(path, "wb") as file:
            file.write(data)
    else:
        Path(path).write_bytes(data)


def fake_fashion_mnist(directory, n=5, compress=True, labels=None):
    """Tiny Fashion-MNIST training files in ``directory``: image ``i`` is all ``10 * i``."""
    directory.mkdir(exist_ok=True)
    images = np.repeat(10 * np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
    labels = np.arange(n, dtype=np.uint8) % 10 if labels is None else labels
    suffix = ".gz" if compress else ""
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


# ----------------------------------------------------------------- read_idx
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trips_every_type(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    write_idx(tmp_path / "values.idx.gz", array)
    read = read_idx(tmp_path / "values.idx.gz")
    assert read.shape == (2, 3, 4) and read.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(read, array)
    read[0, 0, 0] = 1  # a writable array of its own
    write_idx(tmp_path / "values.idx", array, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "values.idx"), array)


def test_read_idx_refuses_truncated_and_corrupt_files(tmp_path):
    data = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    (tmp_path / "short.idx").write_bytes(data[:-1])
    with pytest.raises(
        ValueError, match=r"short.idx: truncated IDX file: .*shape \(3, 4\).*12 bytes, but 11"
    ):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "long.idx").write_bytes(data + b"\x00")
    with pytest.raises(ValueError, match="IDX file with trailing data"):
        read_idx(tmp_path / "long.idx")
    (tmp_path / "header.idx").write_bytes(data[:6])
    with pytest.raises(
        ValueError, match="truncated IDX file: its header announces 2 dimensions but ends early"
    ):
        read_idx(tmp_path / "header.idx")
    (tmp_path / "magic.idx").write_bytes(b"\x01" + data[1:])
    with pytest.raises(ValueError, match="not an IDX file: bad magic number 01000802"):
        read_idx(tmp_path / "magic.idx")
    (tmp_path / "type.idx").write_bytes(data[:2] + b"\x07" + data[3:])
    with pytest.raises(ValueError, match="not an IDX file: bad magic number 00000702"):
        read_idx(tmp_path / "type.idx")
    (tmp_path / "empty.idx").write_bytes(b"")
    with pytest.raises(ValueError, match=r"bad magic number \(empty file\)"):
        read_idx(tmp_path / "empty.idx")
    compressed = gzip.compress(data)
    (tmp_path / "cut.idx.gz").write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="cut.idx.gz: not a readable gzip file, corrupt or truncated"):
        read_idx(tmp_path / "cut.idx.gz")
    (tmp_path / "plain.idx.gz").write_bytes(data)  # not gzipped at all
    with pytest.raises(ValueError, match="plain.idx.gz: not a readable gzip file"):
        read_idx(tmp_path / "plain.idx.gz")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.idx.gz")


# ----------------------------------------------------------------- load_fashion_mnist
@pytest.mark.parametrize("compress", [True, False])
def test_load_fashion_mnist_from_a_directory(tmp_path, compress):
    pixels, labels = fake_fashion_mnist(tmp_path / "fashion", compress=compress)
    fashion = load_fashion_mnist(tmp_path / "fashion")
    assert fashion.images.shape == (5, 1, 28, 28) and fashion.images.dtype == np.float32
    np.testing.assert_allclose(fashion.images[:, 0], pixels / 255.0, rtol=1e-7)
    assert np.shares_memory(fashion.data, fashion.images) and fashion.data.shape == (5, 784)
    assert fashion.target.dtype == np.int64 and fashion.target.tolist() == labels.tolist()
    assert fashion.target_names.tolist() == list(FASHION_MNIST_CLASSES)
    assert fashion.hierarchy == FASHION_MNIST_HIERARCHY and fashion.hierarchy is not FASHION_MNIST_HIERARCHY
    # The test split is another pair of files, absent here.
    with pytest.raises(
        FileNotFoundError, match="t10k-images-idx3-ubyte.gz not found.*apt-get install dataset-fashion-mnist"
    ):
        load_fashion_mnist(tmp_path / "fashion", split="test")


def test_load_fashion_mnist_missing_directory_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist(tmp_path / "nowhere")
    message = str(error.value)
    assert "nowhere not found" in message
    assert "apt-get install dataset-fashion-mnist" in message and "path=" in message
    assert "never downloads" in message
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'validation'"):
        load_fashion_mnist(tmp_path, split="validation")


def test_load_fashion_mnist_refuses_files_that_are_not_fashion_mnist(tmp_path):
    fake_fashion_mnist(tmp_path / "labels", labels=np.array([0, 1, 2, 3, 10], dtype=np.uint8))
    with pytest.raises(ValueError, match="labels must be 0 to 9, found 10"):
        load_fashion_mnist(tmp_path / "labels")
    fake_fashion_mnist(tmp_path / "count", labels=np.arange(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 5 unsigned-byte labels"):
        load_fashion_mnist(tmp_path / "count")
    fake_fashion_mnist(tmp_path / "size")
    write_idx(tmp_path / "size" / "train-images-idx3-ubyte.gz", np.zeros((5, 32, 32), dtype=np.uint8))
    with pytest.raises(
        ValueError, match=r"expected 28 x 28 unsigned-byte images, got uint8 values of shape \(5, 32, 32\)"
    ):
        load_fashion_mnist(tmp_path / "size")
    fake_fashion_mnist(tmp_path / "truncated")
    data = idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8))
    (tmp_path / "truncated" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz: truncated IDX file"):
        load_fashion_mnist(tmp_path / "truncated")


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="dataset-fashion-mnist not installed",
)
def test_installed_fashion_mnist():
    test = load_fashion_mnist(split="test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert test.target[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(test.target).tolist() == [1000] * 10
    assert test.images.min() == 0.0 and test.images.max() == 1.0
    train = load_fashion_mnist()
    assert train.images.shape == (60000, 1, 28, 28)
    assert train.target[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    library = hierarchy_tasks(test.images, test.target, test.hierarchy)
    assert library.names == ["fashion", "tops", "footwear"]
    assert [len(labels) for _, labels in library] == [10000, 4000, 3000]


# ----------------------------------------------------------------- hierarchies
def leaves(hierarchy):
    return [child for children in hierarchy.values() for child in children if child not in hierarchy]


def test_fashion_mnist_hierarchy_groups_the_ten_classes_by_name():
    assert sorted(leaves(FASHION_MNIST_HIERARCHY)) == list(range(10))
    named = {
        group: {FASHION_MNIST_CLASSES[label] for label in FASHION_MNIST_HIERARCHY[group]}
        for group in FASHION_MNIST_HIERARCHY
        if group != "fashion"
    }
    assert named == {
        "tops": {"T-shirt/top", "Pullover", "Coat", "Shirt"},
        "bottoms": {"Trouser"},
        "dresses": {"Dress"},
        "footwear": {"Sandal", "Sneaker", "Ankle boot"},
        "bags": {"Bag"},
    }


def test_cifar100_superclasses_match_the_datasets_coarse_labels():
    # The coarse label of each fine class, fine classes in the dataset's (alphabetical) order,
    # as in the dataset's own files.
    fine_to_coarse = [
        4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
        6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
        5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
        10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
        16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
    ]  # fmt: skip
    superclasses = list(CIFAR100_SUPERCLASSES)
    fine_classes = sorted(leaves(CIFAR100_SUPERCLASSES))
    assert len(superclasses) == 20 and len(set(fine_classes)) == 100
    assert all(len(classes) == 5 for classes in CIFAR100_SUPERCLASSES.values())
    for fine, coarse in zip(fine_classes, fine_to_coarse):
        assert fine in CIFAR100_SUPERCLASSES[superclasses[coarse]]
    assert CIFAR100_HIERARCHY["cifar100"] == superclasses


def test_load_digits_images():
    digits = load_digits_images()
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == np.float32
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0
    np.testing.assert_array_equal(digits.data, digits.images.reshape(1797, 64))
    assert np.bincount(digits.target).min() > 170
    assert sorted(leaves(DIGITS_HIERARCHY)) == list(range(10))
    library = hierarchy_tasks(digits.data, digits.target, digits.hierarchy)
    assert library.names == ["digits", "round", "straight", "curvy"]
    assert set(library[2][1].tolist()) == {1, 4, 7}


# ----------------------------------------------------------------- dataset_with_labels
CLASSES = ["car", "cat", "dog", "truck"]  # ImageFolder sorts its folders: these are targets 0-3
FOLDER_HIERARCHY = {
    "things": ["animals", "vehicles"],
    "animals": ["cat", "dog"],
    "vehicles": ["car", "truck"],
}


def image_folder(root, per_class=3):
    """An ImageFolder of tiny PNGs; each image's red channel is its class index times 60."""
    for target, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.zeros((12, 12, 3), dtype=np.uint8)
            pixels[..., 0], pixels[..., 1] = 60 * target, 20 * i
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return torchvision.datasets.ImageFolder(root, transform=torchvision.transforms.ToTensor())


def test_image_folder_tasks_through_dataset_with_labels(tmp_path):
    folder = image_folder(tmp_path / "images")
    dataset, labels = dataset_with_labels(folder)
    assert dataset is folder
    assert labels.tolist() == [name for name in CLASSES for _ in range(3)]
    library = hierarchy_tasks(dataset, labels, FOLDER_HIERARCHY)
    assert library.names == ["things", "animals", "vehicles"]
    assert all(isinstance(task, Subset) for task in library)
    ((images, batch_labels),) = DataLoader(library[1], batch_size=6)
    assert images.shape == (6, 3, 12, 12)
    assert list(batch_labels) == ["cat"] * 3 + ["dog"] * 3
    # Each image is the one of its class: its red channel says so.
    red = torch.round(images[:, 0, 0, 0] * 255 / 60).long().tolist()
    assert [CLASSES[target] for target in red] == list(batch_labels)
    # The Subsets, with string labels, embed like any task (a small CNN probe keeps it quick).
    torch.manual_seed(0)
    probe = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
    embedder = FisherTaskEmbedder(probe=probe, batch_size=6, head_epochs=5, random_state=0)
    embeddings = embedder.fit_transform(library[1:])
    assert embeddings.shape == (2, 4) and np.all(np.isfinite(embeddings)) and np.all(embeddings >= 0)


def test_dataset_with_labels_reads_targets_or_labels():
    dataset = TensorDataset(torch.zeros(4, 2))
    dataset.targets = torch.tensor([2, 0, 1, 2])
    assert dataset_with_labels(dataset)[1].tolist() == [2, 0, 1, 2]  # no classes: the targets
    dataset.classes = ["a", "b", "c"]
    assert dataset_with_labels(dataset)[1].tolist() == ["c", "a", "b", "c"]
    assert dataset_with_labels(dataset, class_names=False)[1].tolist() == [2, 0, 1, 2]
    svhn_like = TensorDataset(torch.zeros(3, 2))
    svhn_like.labels = np.array([1, 1, 0])
    assert dataset_with_labels(svhn_like)[1].tolist() == [1, 1, 0]
    tasks = hierarchy_tasks(*dataset_with_labels(dataset), {"ab": ["a", "b"]})
    assert isinstance(tasks[0], RelabelledSubset) and tasks[0].indices == [1, 2]


def test_dataset_with_labels_errors():
    dataset = TensorDataset(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="TensorDataset has no 'targets' or 'labels' attribute"):
        dataset_with_labels(dataset)
    dataset.targets = [0, 1, 1]
    with pytest.raises(ValueError, match="TensorDataset has 4 examples but 3 targets"):
        dataset_with_labels(dataset)
    dataset.targets = [0.5, 1, 1, 0]
    with pytest.raises(ValueError, match="targets must hold one integer class per example"):
        dataset_with_labels(dataset)
    dataset.targets, dataset.classes = [0, 1, 2, 0], ["a", "b"]
    with pytest.raises(ValueError, match="holds classes 0 to 2, but it has 2 class names"):
        dataset_with_labels(dataset)


def image_tree(root, classes=("cats", "dogs"), per_class=3):
    rng = np.random.RandomState(0)
    for label in classes:
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.randint(0, 256, size=(6, 6, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root


def test_load_image_folder_refuses_a_directory_link_that_loops(tmp_path):
    root = image_tree(tmp_path / "pets")
    dataset = load_image_folder(root)
    assert dataset.classes == ["cats", "dogs"] and len(dataset) == 6
    (root / "cats" / "again").symlink_to(root)  # ImageFolder alone multiplies the images
    assert len(torchvision.datasets.ImageFolder(root)) > 6
    with pytest.raises(ValueError, match=r"cats/again is a directory link back to .*pets, a folder that"):
        load_image_folder(root)
    (root / "cats" / "again").unlink()
    (root / "dogs" / "self").symlink_to(root / "dogs")
    with pytest.raises(ValueError, match=r"dogs/self is a directory link back to"):
        check_image_tree(root)


def test_load_image_folder_follows_links_that_do_not_loop(tmp_path):
    image_tree(tmp_path / "elsewhere", classes=("birds",))
    root = image_tree(tmp_path / "pets")
    (root / "birds").symlink_to(tmp_path / "elsewhere" / "birds")
    dataset = load_image_folder(root)
    assert dataset.classes == ["birds", "cats", "dogs"] and len(dataset) == 9
