"""Datasets to cut task libraries from, read from local files only: nothing is ever downloaded.

* :func:`load_fashion_mnist`: Fashion-MNIST from its IDX files, as installed by the Debian
  package ``dataset-fashion-mnist`` (or any directory holding them), with
  :data:`FASHION_MNIST_HIERARCHY` for :func:`~sklearn_task2vec.task_library.hierarchy_tasks`.
* :func:`load_digits_images`: scikit-learn's bundled 8x8 digits as images, with a small
  convenience hierarchy :data:`DIGITS_HIERARCHY`.
* :func:`dataset_with_labels`: the labels of a torchvision dataset the user already has
  (``CIFAR100``, ``ImageFolder``, ...), to cut tasks out of it as Subsets;
  :data:`CIFAR100_SUPERCLASSES` and :data:`CIFAR100_HIERARCHY` are CIFAR-100's taxonomy.
* :func:`load_image_folder`: a folder of images with one subfolder per class, as torchvision's
  ``ImageFolder`` (an :class:`ImageTree`), after refusing directory links that loop; hidden and
  system entries (:func:`is_system_name`) are skipped and named.
* :func:`read_image`: the one reader of image files, which every image read from a file goes
  through (:class:`ImageTree`, so :func:`load_image_folder` and ``task2vec embed``): 8-bit RGB
  by documented rules (16-bit scaled, never clipped; transparency on white; ...) or a
  ``ValueError`` naming the file (decompression bombs, corrupt files, floating-point pixels).
* :func:`read_idx`: the IDX file format of MNIST and its kin.
* :func:`to_rgb`: one-channel images as three-channel ones, for the ImageNet probes.
* :func:`markov_text_corpus`: synthetic text, a uniform mixture of random Markov chains over
  words (the latent "concepts" of GINC, Xie et al. 2021), whose diversity is set by the number
  of concepts and the vocabulary size.
* :func:`word_level_tokenizer`: a word-level Hugging Face tokenizer of a corpus, built offline.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from collections import Counter
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import validate_params
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import is_image_file

from ._text import import_transformers
from ._utils import SEED_BOUND, StrictInterval

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Fashion-MNIST's class names; label ``i`` is ``FASHION_MNIST_CLASSES[i]``.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Fashion-MNIST's natural grouping of its labels, for :func:`~sklearn_task2vec.task_library.hierarchy_tasks`:
#: tops (T-shirt/top, Pullover, Coat, Shirt), bottoms (Trouser), dresses (Dress), footwear
#: (Sandal, Sneaker, Ankle boot) and bags (Bag). Leaves are the integer labels. It gives three
#: tasks: the 10 classes, the 4 tops and the 3 kinds of footwear (the other groups have one class,
#: and a one-class node is no classification task). For a larger library cut from Fashion-MNIST,
#: use :func:`~sklearn_task2vec.task_library.one_vs_rest_tasks` (ten binary tasks, named by class
#: with ``class_names=fashion.target_names``) or :func:`~sklearn_task2vec.task_library.attribute_tasks`.
FASHION_MNIST_HIERARCHY = {
    "fashion": ["tops", "bottoms", "dresses", "footwear", "bags"],
    "tops": [0, 2, 4, 6],
    "bottoms": [1],
    "dresses": [3],
    "footwear": [5, 7, 9],
    "bags": [8],
}

#: A convenience grouping of the ten digits by the shape of their strokes, not a standard
#: taxonomy: round (0, 6, 8, 9), straight (1, 4, 7) and curvy (2, 3, 5). It gives four tasks.
DIGITS_HIERARCHY = {
    "digits": ["round", "straight", "curvy"],
    "round": [0, 6, 8, 9],
    "straight": [1, 4, 7],
    "curvy": [2, 3, 5],
}

#: CIFAR-100's 20 superclasses and their 5 classes each (Krizhevsky, 2009), named as in the
#: dataset's meta file and in ``torchvision.datasets.CIFAR100(...).classes``.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}

#: :data:`CIFAR100_SUPERCLASSES` under a root ``"cifar100"``: 21 tasks (the 100 classes, and
#: the 5 classes of each superclass), with leaves named as ``dataset_with_labels`` gives them.
CIFAR100_HIERARCHY = {"cifar100": list(CIFAR100_SUPERCLASSES), **CIFAR100_SUPERCLASSES}

# IDX type codes (the third byte of the magic number) and their big-endian numpy types.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_FASHION_MNIST_PREFIX = {"train": "train", "test": "t10k"}

_FASHION_MNIST_HINT = (
    "Install the Debian package with `apt-get install dataset-fashion-mnist` (files in "
    f"{FASHION_MNIST_DIR}), or pass path= a directory holding the original files "
    "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz, gzipped or not). This function never downloads anything."
)


def read_idx(path):
    """Read an IDX file (the format of MNIST, Fashion-MNIST, KMNIST), gzipped or not.

    The header is two zero bytes, a type code, the number of dimensions, then each dimension
    as a big-endian 32-bit integer; the values follow, big-endian, in C order.

    Parameters
    ----------
    path : str or path-like
        The file; a name ending in ``.gz`` is read through gzip.

    Returns
    -------
    ndarray
        The values, of the file's type in native byte order, of the shape its header gives.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the file is not a valid IDX file: a corrupt gzip stream, a bad magic number, or
        fewer (truncated) or more values than the header announces.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> import numpy as np
    >>> from sklearn_task2vec.datasets import read_idx
    >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx2-ubyte.gz")
    >>> with gzip.open(path, "wb") as file:
    ...     _ = file.write(header + bytes(range(6)))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as file:
                raw = file.read()
        else:
            raw = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file, corrupt or truncated ({exc}).") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: not an IDX file: bad magic number {raw[:4].hex() or '(empty file)'} (expected two "
            f"zero bytes, a type code among {', '.join(f'{code:02x}' for code in _IDX_DTYPES)}, and a "
            f"number of dimensions above 0)."
        )
    dtype, n_dims = _IDX_DTYPES[raw[2]], raw[3]
    data_start = 4 + 4 * n_dims
    if len(raw) < data_start:
        raise ValueError(
            f"{path}: truncated IDX file: its header announces {n_dims} dimensions but ends early."
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    found = len(raw) - data_start
    if found != expected:
        problem = "truncated IDX file" if found < expected else "IDX file with trailing data"
        raise ValueError(
            f"{path}: {problem}: its header announces shape {shape} of {dtype.name}, {expected} bytes, "
            f"but {found} bytes follow the header."
        )
    return np.frombuffer(raw, dtype=dtype, offset=data_start).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory, name):
    """The file ``name`` (gzipped, or else plain) in ``directory``, or a FileNotFoundError with the hint."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Fashion-MNIST file {name}.gz not found in {directory}. {_FASHION_MNIST_HINT}")


def load_fashion_mnist(path=None, *, split="train"):
    """Load Fashion-MNIST (Xiao et al., 2017) from its local IDX files; never downloads.

    Parameters
    ----------
    path : str, path-like or None, default=None
        Directory holding the IDX files (``train-images-idx3-ubyte.gz`` and its three
        siblings, gzipped or not). ``None``: ``/usr/share/datasets/fashion-mnist``, where
        ``apt-get install dataset-fashion-mnist`` puts them.
    split : {"train", "test"}, default="train"
        The 60,000 training images or the 10,000 test images.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images``: float32 array of shape (n, 1, 28, 28) with values in [0, 1];
        ``data``: the same pixels as (n, 784) (a view); ``target``: int64 labels 0-9;
        ``target_names``: the class names (:data:`FASHION_MNIST_CLASSES`); ``hierarchy``:
        :data:`FASHION_MNIST_HIERARCHY`, for :func:`~sklearn_task2vec.task_library.hierarchy_tasks`.

    Raises
    ------
    FileNotFoundError
        When the directory or a file is missing; the message says how to install them.
    ValueError
        When a file is corrupt or truncated, or not Fashion-MNIST's shape.

    Examples
    --------
    >>> from sklearn_task2vec.datasets import load_fashion_mnist
    >>> from sklearn_task2vec.task_library import hierarchy_tasks
    >>> fashion = load_fashion_mnist(split="test")  # doctest: +SKIP
    >>> fashion.images.shape  # doctest: +SKIP
    (10000, 1, 28, 28)
    >>> library = hierarchy_tasks(fashion.images, fashion.target, fashion.hierarchy)  # doctest: +SKIP
    >>> library.names  # doctest: +SKIP
    ['fashion', 'tops', 'footwear']

    Only three nodes of :data:`FASHION_MNIST_HIERARCHY` hold two classes or more; one binary
    task per class gives ten, named by class:

    >>> from sklearn_task2vec.task_library import one_vs_rest_tasks
    >>> one_vs_rest_tasks(fashion.images, fashion.target, class_names=fashion.target_names).names[:3]  # doctest: +SKIP
    ['T-shirt/top', 'Trouser', 'Pullover']

    The images have one channel; the ImageNet probes take three (:func:`to_rgb`).
    """
    if split not in _FASHION_MNIST_PREFIX:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}.")
    directory = FASHION_MNIST_DIR if path is None else Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST directory {directory} not found. {_FASHION_MNIST_HINT}")
    prefix = _FASHION_MNIST_PREFIX[split]
    images_file = _idx_file(directory, f"{prefix}-images-idx3-ubyte")
    labels_file = _idx_file(directory, f"{prefix}-labels-idx1-ubyte")
    pixels, labels = read_idx(images_file), read_idx(labels_file)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[1:] != (28, 28):
        raise ValueError(
            f"{images_file}: expected 28 x 28 unsigned-byte images, got {pixels.dtype} values of shape "
            f"{pixels.shape}."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(pixels):
        raise ValueError(
            f"{labels_file}: expected {len(pixels)} unsigned-byte labels (one per image of {images_file.name}), "
            f"got {labels.dtype} values of shape {labels.shape}."
        )
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_file}: labels must be 0 to 9, found {labels.max()}.")
    images = pixels.astype(np.float32)
    images /= 255.0
    images = images.reshape(-1, 1, 28, 28)
    return Bunch(
        images=images,
        data=images.reshape(len(images), -1),
        target=labels.astype(np.int64),
        target_names=np.array(FASHION_MNIST_CLASSES),
        hierarchy=_copy_hierarchy(FASHION_MNIST_HIERARCHY),
    )


def load_digits_images():
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), as images in [0, 1].

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``images``: float32 array of shape (1797, 1, 8, 8), the 0-16 gray levels divided by
        16; ``data``: the same pixels as (1797, 64) (a view), for the random ReLU probe that
        :class:`~sklearn_task2vec.FisherTaskEmbedder` uses on 2-D features; ``target``: int64
        digits; ``target_names``: 0 to 9; ``hierarchy``: :data:`DIGITS_HIERARCHY`, a
        convenience grouping by shape, not a standard taxonomy.

    Examples
    --------
    >>> from sklearn_task2vec.datasets import load_digits_images
    >>> from sklearn_task2vec.task_library import hierarchy_tasks
    >>> digits = load_digits_images()
    >>> digits.images.shape, digits.data.shape
    ((1797, 1, 8, 8), (1797, 64))
    >>> hierarchy_tasks(digits.data, digits.target, digits.hierarchy).names
    ['digits', 'round', 'straight', 'curvy']
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return Bunch(
        images=images,
        data=images.reshape(len(images), -1),
        target=digits.target.astype(np.int64),
        target_names=np.arange(10),
        hierarchy=_copy_hierarchy(DIGITS_HIERARCHY),
    )


def to_rgb(images):
    """Gray images (N x 1 x H x W) as RGB ones (N x 3 x H x W), for torchvision's probes.

    The ImageNet probes (``probe="auto"``, ``"resnet34"``, ...) take three-channel images;
    Fashion-MNIST (:func:`load_fashion_mnist`) and the digits (:func:`load_digits_images`) have
    one. Repeating the gray level in the three channels is what torchvision's
    ``transforms.Grayscale(num_output_channels=3)`` does for a Dataset.

    Parameters
    ----------
    images : ndarray or torch.Tensor of shape (n_images, 1, height, width)
        One-channel images.

    Returns
    -------
    rgb : ndarray or torch.Tensor of shape (n_images, 3, height, width)
        The same type as ``images``, each gray level in the three channels (a copy).

    Raises
    ------
    ValueError
        When ``images`` is not N x 1 x H x W.

    Examples
    --------
    >>> from sklearn_task2vec.datasets import load_digits_images, to_rgb
    >>> to_rgb(load_digits_images().images).shape
    (1797, 3, 8, 8)
    """
    shape = tuple(images.shape) if hasattr(images, "shape") else np.shape(images)
    if len(shape) != 4 or shape[1] != 1:
        raise ValueError(f"to_rgb takes one-channel images of shape (N, 1, H, W), got shape {shape}.")
    if hasattr(images, "repeat") and not isinstance(images, np.ndarray):  # a torch.Tensor
        return images.repeat(1, 3, 1, 1)
    return np.repeat(np.asarray(images), 3, axis=1)


def _copy_hierarchy(hierarchy):
    """A copy of a module-level hierarchy, so that editing a returned one leaves the constant alone."""
    return {node: list(children) for node, children in hierarchy.items()}


def dataset_with_labels(dataset, *, class_names=True):
    """``(dataset, labels)`` for a torchvision-style dataset the user already has, to cut tasks from.

    Pass the pair to a task builder: ``hierarchy_tasks(*dataset_with_labels(cifar),
    CIFAR100_HIERARCHY)`` cuts one task per superclass (and one for the whole dataset) as
    :class:`~torch.utils.data.Subset` datasets, which
    :class:`~sklearn_task2vec.FisherTaskEmbedder` embeds directly. The labels are read from the
    dataset's ``targets`` (or ``labels``) attribute, without loading a single image. Nothing is
    downloaded here: build the dataset from files you have, e.g.
    ``torchvision.datasets.CIFAR100(root, download=False, transform=ToTensor())`` or
    ``torchvision.datasets.ImageFolder(root, transform=...)`` (its classes are its folders).

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        A map-style dataset with a ``targets`` (torchvision's datasets, ``ImageFolder``) or
        ``labels`` attribute holding one integer class per example.
    class_names : bool, default=True
        Give the labels as the names in ``dataset.classes`` (when it has them), as the leaves of
        :data:`CIFAR100_HIERARCHY` or of a hierarchy over ``ImageFolder``'s folders are; else
        as the integer targets.

    Returns
    -------
    dataset : torch.utils.data.Dataset
        ``dataset`` itself.
    labels : ndarray of shape (len(dataset),)
        The class name (str) or integer target of each example.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from sklearn_task2vec.datasets import dataset_with_labels
    >>> from sklearn_task2vec.task_library import hierarchy_tasks
    >>> dataset = TensorDataset(torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 2, 1]))
    >>> dataset.targets, dataset.classes = [0, 1, 2, 1], ["cat", "dog", "car"]
    >>> dataset, labels = dataset_with_labels(dataset)
    >>> labels.tolist()
    ['cat', 'dog', 'car', 'dog']
    >>> library = hierarchy_tasks(dataset, labels, {"animals": ["cat", "dog"]})
    >>> [label for _, label in library[0]]
    ['cat', 'dog', 'dog']
    """
    for attribute in ("targets", "labels"):
        targets = getattr(dataset, attribute, None)
        if targets is not None:
            break
    else:
        raise TypeError(
            f"dataset_with_labels: {type(dataset).__name__} has no 'targets' or 'labels' attribute to "
            f"read its labels from; pass the dataset and its labels to the task builder yourself."
        )
    if hasattr(targets, "detach"):  # a torch tensor
        targets = targets.detach().cpu().numpy()
    targets = np.asarray(targets)
    if targets.ndim != 1 or targets.dtype.kind not in "iu":
        raise ValueError(
            f"dataset_with_labels: {type(dataset).__name__}.{attribute} must hold one integer class per "
            f"example, got {targets.dtype} values of shape {targets.shape}."
        )
    if len(targets) != len(dataset):
        raise ValueError(
            f"dataset_with_labels: {type(dataset).__name__} has {len(dataset)} examples but "
            f"{len(targets)} {attribute}."
        )
    classes = getattr(dataset, "classes", None)
    if not class_names or classes is None:
        return dataset, targets
    if len(targets) and (targets.min() < 0 or targets.max() >= len(classes)):
        raise ValueError(
            f"dataset_with_labels: {type(dataset).__name__}.{attribute} holds classes "
            f"{targets.min()} to {targets.max()}, but it has {len(classes)} class names."
        )
    return dataset, np.asarray(classes)[targets]


# ---------------------------------------------------------------- image files
# Skipped entries named in a warning, at most.
_LISTED = 10

#: The colour that transparent pixels are composited onto: white, as viewers show them.
BACKGROUND = (255, 255, 255)

# PIL's integer modes deeper than 8 bits; "I" (32-bit) is read as 16-bit, its values checked.
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_SIXTEEN_BIT_MAX = 65535
_EIGHT_BIT_MAX = 255

#: Names of system entries that are skipped besides those starting with "." or "@" (hidden
#: files, macOS's ``.DS_Store`` and ``._*``, NAS metadata such as Synology's ``@eaDir``).
SYSTEM_NAMES = frozenset(
    {"__MACOSX", "Thumbs.db", "desktop.ini", "$RECYCLE.BIN", "System Volume Information", "lost+found"}
)


def is_system_name(name):
    """Whether a file or folder name is a hidden or system entry, never a class or an image.

    Hidden entries (a name starting with ``"."``: ``.thumbnails``, ``.DS_Store``, macOS's
    ``._*`` resource forks), NAS metadata (starting with ``"@"``: Synology's ``@eaDir``, QNAP's
    ``@Recycle``) and the names in :data:`SYSTEM_NAMES` (``__MACOSX``, ``Thumbs.db``, ...).
    """
    return name.startswith((".", "@")) or name in SYSTEM_NAMES


def read_image(path):
    """The image in file ``path`` as an 8-bit RGB PIL image: converted by a documented rule, or refused.

    The one reader of image files: :class:`ImageTree` (so :func:`load_image_folder` and
    ``task2vec embed``) reads every image through it; pass it as the ``loader`` of your own
    torchvision ``DatasetFolder`` to read files the same way. The output is what torchvision's
    transforms and the ImageNet probes expect; what the image shows is never changed silently:

    * 8-bit images of every PIL mode with a defined conversion to RGB (``1``, ``L``, ``P``,
      ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) are converted with PIL's own formulas (CMYK without
      colour management). Colour profiles and EXIF orientation are not applied: pixels are read
      as stored, as torchvision's ``ImageFolder`` reads them; an animated or multi-page file
      gives its first frame.
    * An image with transparency (``LA``, ``PA``, ``RGBA``, ``RGBa``, or a ``P``/``L``/``RGB``
      image with a transparent colour) is composited onto :data:`BACKGROUND`, white, as image
      viewers and browsers show it; dropping the alpha channel instead would show whatever colour
      the transparent pixels happen to store.
    * Integer images deeper than 8 bits (PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` and
      ``I``: 16-bit PNG and TIFF files of microscopy, medicine, remote sensing) are scaled from the
      16-bit range to the 8-bit one, ``round(value * 255 / 65535)``: 65535 is white, relative
      intensities are kept, and the error is at most half an 8-bit level. PIL's own conversion
      clips at 255 instead, turning most of such an image white. Refused: values outside 0-65535
      (a 32-bit image), and an image whose values all lie in 0-255, which the scaling would make
      black (at most level 1 of 255): either 8-bit data stored in a 16-bit file, or an image so dark
      that 8 bits cannot show it; the error says how to fix either.
    * Floating-point images (mode ``F``) are refused: their values have no agreed scale.
    * Decompression bombs (more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels, where PIL only warns
      up to twice that) and truncated or corrupt files are refused with a ``ValueError`` naming the
      file.

    Parameters
    ----------
    path : str or path-like
        An image file PIL can read.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``, its pixels loaded (the file is closed).

    Raises
    ------
    ValueError
        When the file is a decompression bomb, truncated or corrupt, not an image, or holds
        pixels that cannot be converted without changing what they show (see above); the
        message names the file.
    FileNotFoundError, PermissionError, IsADirectoryError
        When the file cannot be opened at all.

    Examples
    --------
    A 16-bit image is scaled, not clipped: 65535 is white, 32768 mid-gray.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_task2vec.datasets import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "16-bit.png")
    >>> Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(path)
    >>> image = read_image(path)
    >>> image.mode, np.asarray(image)[0, :, 0].tolist()
    ('RGB', [0, 128, 255])
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that: refused here too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(
            f"{path}: refused as a possible decompression bomb ({exc}): it has more pixels than "
            f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}. If you trust the file, raise "
            f"the limit before reading it (PIL.Image.MAX_IMAGE_PIXELS = a larger number of pixels; "
            f"None removes it)."
        ) from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise  # access problems, not the file's content; their message names the file
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ValueError(
            f"{path}: not a readable image, truncated or corrupt ({type(exc).__name__}: {exc})."
        ) from exc
    return _as_rgb(image, path)


def _as_rgb(image, path):
    """A loaded PIL image as 8-bit RGB, converted by the module's rules or refused."""
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        return _from_sixteen_bits(np.asarray(image), mode, path)
    if mode == "F":
        raise ValueError(
            f"{path}: holds floating-point pixels (PIL mode F), whose scale is not defined (0-1? "
            f"0-255? physical units?). Save it as an 8- or 16-bit integer image, scaled as you mean "
            f"it, or read it yourself into an (inputs, labels) task."
        )
    try:
        if image.has_transparency_data:
            background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
            return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        return image.convert("RGB")  # a copy for RGB: a plain image, its file closed
    except ValueError as exc:  # a mode PIL cannot convert to RGB
        raise ValueError(
            f"{path}: PIL mode {mode} has no conversion to RGB ({exc}). Save the image as RGB or grayscale."
        ) from exc


def _from_sixteen_bits(values, mode, path):
    """16-bit pixel values as an 8-bit RGB image, scaled by 255 / 65535 and rounded."""
    low, high = int(values.min()), int(values.max())
    if low < 0 or high > _SIXTEEN_BIT_MAX:
        raise ValueError(
            f"{path}: holds integer pixels from {low} to {high} (PIL mode {mode}), outside the 16-bit "
            f"range 0-{_SIXTEEN_BIT_MAX} that is scaled to 8 bits. Save it as a 16-bit or 8-bit image, "
            f"scaled as you mean it."
        )
    if high <= _EIGHT_BIT_MAX:
        raise ValueError(
            f"{path}: a 16-bit image (PIL mode {mode}) whose pixels all lie in 0-{high}: scaled from "
            f"the 16-bit range (65535 is white) it would be black, at most level 1 of 255. If it holds "
            f"8-bit values, save it as an 8-bit image; if it is a dark 16-bit image (a 12-bit camera "
            f"stores 0-4095), multiply all your images by one factor that fills the 16-bit range."
        )
    # Exact rounding of value * 255 / 65535 in integers.
    scaled = (values.astype(np.int64) * _EIGHT_BIT_MAX + _SIXTEEN_BIT_MAX // 2) // _SIXTEEN_BIT_MAX
    return Image.fromarray(scaled.astype(np.uint8), mode="L").convert("RGB")


class ImageTree(ImageFolder):
    """torchvision's ``ImageFolder`` read by :func:`read_image`, without hidden or system entries.

    An entry whose name is a system name (:func:`is_system_name`) is neither a class nor an
    image, at any depth; it is listed in ``skipped``. Other files that are not read (outside
    the class folders, or without an image extension) are listed in ``unread``.

    Parameters
    ----------
    root : str or path-like
        The folder; its subfolders are the classes.
    transform : callable or None, default=None
        Applied to each RGB PIL image.

    Attributes
    ----------
    skipped : list of str
        Hidden and system entries skipped, relative to ``root`` (a folder is listed, not its
        files).
    unread : list of str
        Other files that are not examples, relative to ``root``.
    """

    def __init__(self, root, transform=None):
        self.skipped, self.unread = set(), set()
        super().__init__(root, transform=transform, loader=read_image, is_valid_file=self._is_example)
        self.skipped, self.unread = sorted(self.skipped), sorted(self.unread)

    def find_classes(self, directory):
        """The class folders of ``directory``, sorted, without hidden or system ones.

        Parameters
        ----------
        directory : str or path-like
            The top folder.

        Returns
        -------
        classes : list of str
        class_to_idx : dict of str to int

        Raises
        ------
        FileNotFoundError
            When it has no class folder.
        """
        classes = []
        with os.scandir(directory) as entries:
            for entry in entries:
                if is_system_name(entry.name):
                    self.skipped.add(entry.name)
                elif entry.is_dir():
                    classes.append(entry.name)
                else:
                    self.unread.add(entry.name)
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        classes.sort()
        return classes, {name: index for index, name in enumerate(classes)}

    def _is_example(self, path):
        """Whether the file ``path`` is an example: an image outside any system entry. The
        others are recorded in ``skipped`` or ``unread``."""
        parts = Path(os.path.relpath(path, self.root)).parts
        for depth, part in enumerate(parts):
            if is_system_name(part):
                self.skipped.add(os.path.join(*parts[: depth + 1]))
                return False
        if not is_image_file(path):
            self.unread.add(os.path.join(*parts))
            return False
        return True


def check_image_tree(root):
    """Refuse a folder tree with a directory link that loops back to one of its own ancestors.

    torchvision's ``ImageFolder`` follows directory links (``os.walk(followlinks=True)``),
    and a link back to an ancestor makes it read the same images again and again, under
    ever longer paths, until the paths grow too long: a dozen files became hundreds of
    examples, some under the wrong class. Links elsewhere (outside the tree, or to a folder
    that is not an ancestor) are followed as usual.

    Parameters
    ----------
    root : str or path-like
        The top folder.

    Raises
    ------
    ValueError
        When a directory link under ``root`` resolves to ``root`` or to a folder above it
        in the tree; the message names the link and where it points.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_task2vec.datasets import check_image_tree
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "cats"))
    >>> os.symlink(root, os.path.join(root, "cats", "again"))
    >>> check_image_tree(root)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../cats/again is a directory link back to ...: ...
    """

    def visit(folder, ancestors):
        with os.scandir(folder) as entries:
            subfolders = [entry for entry in entries if entry.is_dir(follow_symlinks=True)]
        for entry in sorted(subfolders, key=lambda entry: entry.name):
            real = os.path.realpath(entry.path)
            if real in ancestors:
                raise ValueError(
                    f"{entry.path} is a directory link back to {real}, a folder that contains it: "
                    f"reading the tree would visit the same images again and again. Remove the "
                    f"link, or point it outside the tree."
                )
            visit(entry.path, ancestors | {real})

    visit(os.fspath(root), {os.path.realpath(root)})


def load_image_folder(root, *, transform=None):
    """A folder of images with one subfolder per class, as torchvision's ``ImageFolder``.

    The tree is checked first (:func:`check_image_tree`): a directory link that loops back
    to an ancestor is refused, naming the link, rather than multiplying the images. Every
    image is read by :func:`read_image` (8-bit RGB by documented rules, or a ``ValueError``
    naming the file). Hidden and system entries (:func:`is_system_name`: ``.thumbnails``,
    ``@eaDir``, ``__MACOSX``, ...) are neither classes nor images: they are skipped, and a
    warning names them.

    Parameters
    ----------
    root : str or path-like
        The folder; its subfolders are the classes.
    transform : callable or None, default=None
        Applied to each RGB PIL image (e.g. a ``torchvision.transforms.Compose``).

    Returns
    -------
    ImageTree
        A torchvision ``ImageFolder``; ``skipped`` lists the hidden and system entries left
        out, ``unread`` the other files that are not examples.

    Raises
    ------
    ValueError
        When a directory link loops (see :func:`check_image_tree`).
    FileNotFoundError
        When ``root`` has no class folder or no image in them (torchvision's error).

    Warns
    -----
    UserWarning
        When hidden or system entries were skipped; the message names the folder and them.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> from sklearn_task2vec.datasets import load_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for label in ("cats", "dogs"):
    ...     os.makedirs(os.path.join(root, label))
    ...     Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(os.path.join(root, label, "0.png"))
    >>> dataset = load_image_folder(root)
    >>> dataset.classes, len(dataset)
    (['cats', 'dogs'], 2)
    """
    check_image_tree(root)
    dataset = ImageTree(root, transform=transform)
    if dataset.skipped:
        warnings.warn(
            f"{root}: skipped {len(dataset.skipped)} hidden or system "
            f"entr{'ies' if len(dataset.skipped) > 1 else 'y'}, read neither as classes nor as images: "
            f"{', '.join(dataset.skipped[:_LISTED])}{', ...' if len(dataset.skipped) > _LISTED else ''}.",
            UserWarning,
            stacklevel=2,
        )
    return dataset


# ---------------------------------------------------------------------------- synthetic text

#: The padding token of :func:`word_level_tokenizer`'s tokenizers, id 0.
PAD_TOKEN = "[PAD]"
#: The token of :func:`word_level_tokenizer`'s tokenizers for a word outside the vocabulary, id 1.
UNK_TOKEN = "[UNK]"
#: The token :func:`word_level_tokenizer`'s tokenizers start each text with, id 2.
BOS_TOKEN = "[BOS]"


@validate_params(
    {
        "n_concepts": [StrictInterval(Integral, 1, None, closed="left")],
        "vocab_size": [StrictInterval(Integral, 1, None, closed="left")],
        "n_texts": [StrictInterval(Integral, 1, None, closed="left")],
        "text_length": [StrictInterval(Integral, 1, None, closed="left")],
        "concentration": [StrictInterval(Real, 0, None, closed="neither")],
        "topic_concentration": [StrictInterval(Real, 0, None, closed="neither"), None],
        "word_prefix": [str],
        "return_concepts": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def markov_text_corpus(
    n_concepts,
    *,
    vocab_size,
    n_texts,
    text_length,
    concentration=0.1,
    topic_concentration=None,
    word_prefix="w",
    return_concepts=False,
    random_state=None,
):
    """Synthetic texts from a uniform mixture of random Markov chains over a vocabulary of words.

    The corpora of the GINC experiments (Xie et al., 2021, "An Explanation of In-context
    Learning as Implicit Bayesian Inference"), on which Miranda et al. (2023, "Beyond Scale: the
    Diversity Coefficient as a Data Quality Metric") show that the diversity coefficient rises
    with the number of latent concepts and with the vocabulary size, in a simpler form: each
    latent *concept* is a first-order Markov chain over the words ``f"{word_prefix}0"`` to
    ``f"{word_prefix}{vocab_size - 1}"`` (GINC's concepts are hidden Markov models). A concept
    has a start distribution, drawn uniformly from the simplex (a flat Dirichlet), and a
    transition matrix whose rows are drawn from a symmetric Dirichlet of parameter
    ``concentration``: a small concentration makes each word followed by a few words only, so
    that each concept has its own peaked, sparse "grammar". With ``topic_concentration``, each
    concept also has its own word usage, a *topic* ``t`` drawn from a symmetric Dirichlet of
    that parameter, around which its start distribution (``Dirichlet(vocab_size * t)``) and
    its transition rows (``Dirichlet(concentration * vocab_size * t)``) are drawn: a small
    value gives each concept a small part of the vocabulary of its own. Each text picks one
    concept uniformly at random and is ``text_length`` words of its chain, joined by single
    spaces.

    Parameters
    ----------
    n_concepts : int
        Number of latent concepts (Markov chains) mixed, at least 1.
    vocab_size : int
        Number of distinct words, at least 1.
    n_texts : int
        Number of texts, at least 1.
    text_length : int
        Words per text, at least 1.
    concentration : float, default=0.1
        Parameter of the symmetric Dirichlet each transition row is drawn from, above 0. A word
        is followed by about ``(vocab_size * concentration + 1) / (concentration + 1)`` words
        (the inverse of the row's expected sum of squared probabilities): small values give
        sparse, peaked chains, large ones chains close to uniform, where the concepts no longer
        differ. Any positive value works: the rows are drawn in log space, where the tiny
        gamma variates of a small concentration do not underflow to zero.
    topic_concentration : float or None, default=None
        Parameter of the symmetric Dirichlet each concept's word distribution is drawn from,
        above 0 (see above): at ``0.1`` a concept uses mostly a tenth or so of the vocabulary,
        at ``10`` nearly all of it, evenly. None: no topic, every concept spreads over the whole
        vocabulary (the chains of a uniform topic), and concepts differ only in their
        transitions, i.e. in word order (see the Notes).
    word_prefix : str, default="w"
        What each word starts with, before its index: a non-empty string without whitespace.
        Two corpora with different prefixes (``"a"`` and ``"b"``) have disjoint vocabularies,
        e.g. to check that the cross-diversity of two corpora exceeds the diversity of each.
        Pick prefixes of which none is another's prefix followed by digits (``"w"`` and
        ``"w1"`` share the word ``"w12"``).
    return_concepts : bool, default=False
        Also return the concept of each text, e.g. to make a text classification task
        ``(texts, concepts)`` or to split the corpus by concept.
    random_state : int, RandomState instance or None, default=None
        Seeds the concepts and the texts; an int gives the same corpus on every call. The
        concepts are drawn each from its own stream, so that with one integer seed and one
        vocabulary, the first ``k`` concepts of a corpus of ``n_concepts > k`` are the chains
        of the corpus of ``k`` concepts: corpora that differ only in ``n_concepts`` are nested,
        and their diversities differ by the added concepts, not by a new draw of the old ones.

    Returns
    -------
    texts : list of str
        ``n_texts`` texts of ``text_length`` words each.
    concepts : ndarray of shape (n_texts,), dtype int64
        The concept of each text, in ``[0, n_concepts)``; only with ``return_concepts=True``.

    Raises
    ------
    ValueError
        When a count is below 1, ``concentration`` is not a finite positive number, or
        ``word_prefix`` is empty or holds whitespace.
    TypeError
        When an argument is of the wrong type (e.g. a float ``n_texts``, ``True`` as a count).

    Notes
    -----
    **Why diversity rises with the number of concepts.** The diversity coefficient is the
    expected distance between the TASK2VEC embeddings of two random batches of a corpus. A
    batch of ``B`` texts holds the concepts in multinomial proportions; with one concept,
    two batches differ only by the sampling noise of one chain, but with ``K`` concepts their
    proportions differ too (each by about ``sqrt((1 - 1/K) / (K B))``), and each concept
    weighs on its own parameters of the probe (its words and word pairs), so the embeddings
    move apart. The difference grows with ``K``, with diminishing returns, as the paper
    reports for GINC (its Fig. 4).

    **What the probe must see for that.** Without topics (``topic_concentration=None``, as in
    GINC, whose concepts share their emissions), the concepts' word frequencies are nearly the
    same: they differ in word order, which a probe sees only if it predicts the next word
    well (the paper's probe is a pretrained GPT-2 whose head is fine-tuned on each batch). A
    probe that does not (random, or briefly trained: it knows the word frequencies at best)
    mostly sees which words a batch holds, and its coefficient rises with ``K`` only when the
    concepts use different words: give them topics (``topic_concentration=0.1`` to ``1``).
    The word counts of two random batches of 32 texts of 31 words over 200 words, by cosine
    distance, go from 0.16 to 0.17 between 1 and 8 concepts without topics, and from 0.02 to
    0.16 with ``topic_concentration=0.1``.

    **Why diversity rises with the vocabulary size.** At a fixed concentration, each word has
    about ``vocab_size * concentration`` likely successors, so a chain's texts spread over more
    words and word pairs as the vocabulary grows, while a batch holds a fixed number of words
    (``B * text_length``): the relative sampling noise of a batch's word and word-pair counts,
    about ``sqrt(vocab_size / (B * text_length))`` for the words, grows with the vocabulary,
    and two batches share less of what they contain.

    Drawing a concept costs ``vocab_size ** 2`` random numbers, and the chains are drawn one at
    a time: memory is ``O(vocab_size ** 2)``, time ``O(n_concepts * vocab_size ** 2 + n_texts
    * text_length * log(vocab_size))``.

    Examples
    --------
    >>> from sklearn_task2vec.datasets import markov_text_corpus
    >>> texts = markov_text_corpus(2, vocab_size=20, n_texts=3, text_length=5, random_state=0)
    >>> len(texts), [len(text.split()) for text in texts]
    (3, [5, 5, 5])
    >>> all(word.startswith("w") for text in texts for word in text.split())
    True
    >>> texts, concepts = markov_text_corpus(
    ...     4, vocab_size=20, n_texts=6, text_length=5, return_concepts=True, random_state=0
    ... )
    >>> concepts.shape, bool(concepts.max() < 4)
    ((6,), True)
    """
    where = "markov_text_corpus"
    if not word_prefix or any(character.isspace() for character in word_prefix):
        raise ValueError(
            f"{where}: word_prefix must be a non-empty string without whitespace (words are joined "
            f"by spaces), got {word_prefix!r}."
        )
    seed = int(check_random_state(random_state).randint(SEED_BOUND))
    # Separate streams (numpy SeedSequence entropy [seed, stream, index]): the texts' draws, and
    # each concept's chain, which therefore does not depend on n_concepts or n_texts.
    text_rng = np.random.default_rng([seed, 0])
    concepts = text_rng.integers(n_concepts, size=n_texts)
    words = np.array([f"{word_prefix}{index}" for index in range(vocab_size)])
    texts = [""] * n_texts
    for concept in range(n_concepts):
        members = np.flatnonzero(concepts == concept)
        if members.size == 0:
            continue  # its chain is drawn from its own stream: skipping it shifts nothing
        chain_rng = np.random.default_rng([seed, 1, concept])
        if topic_concentration is None:
            topic = np.full(vocab_size, 1.0 / vocab_size)
        else:
            topic = _dirichlet_rows(chain_rng, float(topic_concentration), 1, vocab_size)[0]
        start = _dirichlet_rows(chain_rng, vocab_size * topic, 1, vocab_size)[0]
        transitions = _dirichlet_rows(chain_rng, concentration * vocab_size * topic, vocab_size, vocab_size)
        indices = _markov_paths(start, transitions, members.size, int(text_length), text_rng)
        for member, path in zip(members, words[indices]):
            texts[member] = " ".join(path)
    if return_concepts:
        return texts, concepts.astype(np.int64)
    return texts


def _dirichlet_rows(rng, alpha, n_rows, n_columns):
    """``n_rows`` draws of a Dirichlet(``alpha``) over ``n_columns`` outcomes; ``alpha``: one
    number (symmetric) or one per outcome.

    A Gamma(alpha) variate is ``Gamma(alpha + 1) * U ** (1 / alpha)``; taken in logs, the tiny
    variates of a small ``alpha`` stay finite instead of underflowing to zero, which makes
    whole rows 0 / 0 (numpy's legacy ``dirichlet`` returns NaN rows there).
    """
    shape = (n_rows, n_columns)
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_columns,))
    positive = alpha > 0
    logs = np.log(rng.standard_gamma(alpha + 1.0, shape))
    # 1 - U lies in (0, 1]: its log is finite. A parameter 0 (a word its topic never uses), or
    # one so small that U ** (1 / alpha) underflows, gives a log of -inf: a weight 0.
    with np.errstate(over="ignore"):
        logs += np.where(positive, np.log1p(-rng.random(shape)) / np.where(positive, alpha, 1.0), -np.inf)
    dead = np.flatnonzero(np.isneginf(logs.max(axis=1)))
    if dead.size:  # every variate underflowed: the limit of a vanishing alpha, one outcome
        logs[dead] = -np.inf
        logs[dead, rng.choice(n_columns, size=dead.size, p=alpha / alpha.sum())] = 0.0
    logs -= logs.max(axis=1, keepdims=True)
    weights = np.exp(logs)
    return weights / weights.sum(axis=1, keepdims=True)


def _markov_paths(start, transitions, n_paths, length, rng):
    """``(n_paths, length)`` word indices: paths of the chain (``start``, ``transitions``).

    All paths advance together, one step at a time, by inverse transform sampling in one sorted
    array: row ``i`` of the cumulative transitions, shifted by ``i``, spans ``(i, i + 1]``, so a
    state ``i`` and a uniform ``u`` find their successor by one ``searchsorted`` of ``i + u``.
    """
    n_words = len(start)
    cumulative = np.cumsum(transitions, axis=1)
    cumulative[:, -1] = 1.0  # rounding must not leave room past the last word of a row
    shifted = (cumulative + np.arange(n_words)[:, None]).ravel()
    start_cumulative = np.cumsum(start)
    start_cumulative[-1] = 1.0
    paths = np.empty((n_paths, length), dtype=np.int64)
    paths[:, 0] = np.searchsorted(start_cumulative, rng.random(n_paths), side="right")
    for step in range(1, length):
        state = paths[:, step - 1]
        found = np.searchsorted(shifted, state + rng.random(n_paths), side="right")
        paths[:, step] = found - state * n_words
    return paths


@validate_params(
    {
        "texts": "no_validation",  # checked below, with messages naming the bad text
        "max_vocab": [StrictInterval(Integral, 1, None, closed="left"), None],
        "add_bos": ["boolean"],
        "model_max_length": [StrictInterval(Integral, 1, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def word_level_tokenizer(texts, *, max_vocab=None, add_bos=True, model_max_length=None):
    """A word-level Hugging Face tokenizer of a corpus, built offline: one token per word.

    Words are what lies between whitespace (the ``tokenizers`` library's ``WhitespaceSplit``
    pre-tokenizer, so that ``"w-1"`` or ``"don't"`` stay one word), and each word of the
    vocabulary is one token of a ``WordLevel`` model. This is the tokenizer of synthetic corpora
    such as :func:`markov_text_corpus`, whose words a subword tokenizer (GPT-2's) would cut into
    pieces shared across words.

    Parameters
    ----------
    texts : sequence of str
        The corpus the vocabulary is read from.
    max_vocab : int or None, default=None
        Keep only the ``max_vocab`` most frequent words (ties broken by the words' order as
        strings, so the vocabulary does not depend on the texts' order); the others become
        ``[UNK]``. None: every word. The special tokens are not counted.
    add_bos : bool, default=True
        Start every encoded text with ``[BOS]``, so that a language model predicts its first
        word too (a text of ``n`` words gives ``n`` next-token labels, not ``n - 1``).
    model_max_length : int or None, default=None
        The tokenizer's ``model_max_length``, the most tokens an embedder keeps per text when
        given no ``max_length``. None: no limit of the tokenizer's own.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        Ids ``0``, ``1``, ``2`` are ``[PAD]`` (its ``pad_token``), ``[UNK]`` (``unk_token``) and
        ``[BOS]`` (``bos_token``), then the words, most frequent first; ``len(tokenizer)`` is
        the vocabulary size a model needs (``vocab_size`` of its configuration). Padding is on
        the right. It saves and loads as any Hugging Face tokenizer (``save_pretrained``,
        ``AutoTokenizer.from_pretrained``).

    Raises
    ------
    TypeError
        When ``texts`` is a single string, or not a sequence of strings.
    ValueError
        When ``texts`` holds no word at all, or a word spelled as a special token.
    ImportError
        When ``transformers`` is not installed (``pip install 'sklearn-task2vec[text]'``).

    Examples
    --------
    >>> from sklearn_task2vec.datasets import word_level_tokenizer
    >>> tokenizer = word_level_tokenizer(["a b b", "b c"])
    >>> len(tokenizer), tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4, 5])
    (6, ['[PAD]', '[UNK]', '[BOS]', 'b', 'a', 'c'])
    >>> tokenizer(["b a", "c d"], padding=True)["input_ids"]
    [[2, 3, 4], [2, 5, 1]]
    """
    where = "word_level_tokenizer"
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{where}: texts must be a sequence of strings, got a single {type(texts).__name__}.")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(
            f"{where}: texts must be a sequence of strings, got {type(texts).__name__}."
        ) from None
    counts = Counter()
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{where}: texts must be strings, but text {index} is {type(text).__name__}.")
        counts.update(text.split())
    if not counts:
        raise ValueError(f"{where}: the texts hold no word ({len(texts)} texts, all empty or whitespace).")
    specials = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN)
    clashes = sorted(set(specials) & set(counts))
    if clashes:
        raise ValueError(
            f"{where}: the texts hold {', '.join(clashes)}, spelled as a special token of the "
            f"tokenizer: replace it in the texts, or it would be read as the special token."
        )
    ranked = sorted(counts, key=lambda word: (-counts[word], word))[:max_vocab]
    vocabulary = {token: index for index, token in enumerate((*specials, *ranked))}

    transformers = import_transformers()
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if add_bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS_TOKEN} $A",
            pair=f"{BOS_TOKEN} $A $B",
            special_tokens=[(BOS_TOKEN, vocabulary[BOS_TOKEN])],
        )
    options = {} if model_max_length is None else {"model_max_length": int(model_max_length)}
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        padding_side="right",
        **options,
    )
