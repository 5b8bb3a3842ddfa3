"""Bad inputs to FisherTaskEmbedder: each one is a clear ValueError or TypeError.

For a sequence of tasks the message names the task by its index ("task 2") and, for tasks
streamed from a Dataset or a DataLoader, the batch ("task 1 (batch from example 16)").
For one array ``X`` with labels ``y`` the messages are scikit-learn's or name ``X``/``y``.
No case may surface as a bare torch or numpy error. The last tests check that the
loader paths and all kinds of labels give the same embedding as a plain array task.
"""

import enum
import os
import re
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from sklearn.exceptions import NotFittedError
from torch.utils.data import DataLoader, Dataset, TensorDataset

from sklearn_task2vec import FisherTaskEmbedder

N, D = 40, 4


def features(seed=0, n=N, d=D):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int)


def images(n=8, channels=3, seed=0):
    rng = np.random.RandomState(seed)
    return rng.normal(size=(n, channels, 32, 32)).astype(np.float32), np.arange(n) % 2


def embedder(**params):
    return FisherTaskEmbedder(**{"random_state": 0, "head_epochs": 2, **params})


def image_embedder(**params):
    return embedder(**{"probe": "resnet18", "probe_weights": None, "batch_size": 8, **params})


def dataset(X, y):
    return TensorDataset(torch.as_tensor(X), torch.as_tensor(y))


def as_kind(kind, X, y, batch_size=8):
    """The task ``(X, y)`` as an array pair, a tensor pair, a Dataset or a DataLoader."""
    if kind == "array":
        return X, y
    if kind == "tensor":
        return torch.as_tensor(X), torch.as_tensor(y)
    if kind == "dataset":
        return dataset(X, y)
    return DataLoader(dataset(X, y), batch_size=batch_size)


GOOD = features()
KINDS = ["array", "tensor", "dataset", "loader"]


class ItemsDataset(Dataset):
    """A map-style Dataset whose items are whatever ``make(i)`` returns."""

    def __init__(self, n, make):
        self.n, self.make = n, make

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.make(i)


# ----------------------------------------------------------------- non-finite inputs
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_inputs_of_a_task(kind, value):
    X, y = features()
    X[20, 1] = value
    task = as_kind(kind, X, y)
    # Streamed tasks are checked batch by batch (8 examples a batch): row 20 is in the batch from 16.
    where = "task 1 \\(batch from example 16\\)" if kind in ("dataset", "loader") else "task 1"
    with pytest.raises(ValueError, match=f"^{where}: inputs contain NaN or infinity"):
        embedder(batch_size=8).fit_transform([GOOD, task])


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_inputs_of_the_first_task(kind):
    X, y = features()
    X[0, 0] = np.nan
    where = "task 0 \\(batch from example 0\\)" if kind in ("dataset", "loader") else "task 0"
    with pytest.raises(ValueError, match=f"^{where}: inputs contain NaN or infinity"):
        embedder(batch_size=8).fit_transform([as_kind(kind, X, y), GOOD])


@pytest.mark.parametrize("value, problem", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_array_X(value, problem):
    X, y = features()
    X[3, 2] = value
    with pytest.raises(ValueError, match=f"Input X contains {problem}"):
        embedder().fit(X, y)
    fitted = embedder().fit(*features())
    with pytest.raises(ValueError, match=f"Input X contains {problem}"):
        fitted.transform(X)


def test_non_finite_image_X():
    X, y = images()
    X[2, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        image_embedder().fit(X, y)


# ------------------------------------------------------------------------- labels
@pytest.mark.parametrize("kind", KINDS)
def test_nan_in_float_labels_of_a_task(kind):
    X, y = features()
    y = y.astype(float)
    y[10] = np.nan
    where = "task 1 \\(batch from example 8\\)" if kind in ("dataset", "loader") else "task 1"
    with pytest.raises(ValueError, match=f"^{where}: labels contain NaN or infinity"):
        embedder(batch_size=8).fit_transform([GOOD, as_kind(kind, X, y)])


def test_nan_in_float_labels_of_array_y():
    X, y = features()
    y = y.astype(float)
    y[10] = np.nan
    with pytest.raises(ValueError, match="Input y contains NaN"):
        embedder().fit(X, y)


def test_inputs_and_labels_of_different_lengths():
    X, y = features()
    with pytest.raises(ValueError, match="^task 1: inputs have 40 examples but labels have 39"):
        embedder().fit_transform([GOOD, (X, y[:-1])])
    with pytest.raises(ValueError, match="^task 0: inputs have 40 examples but labels have 41"):
        embedder().fit_transform([(X, np.r_[y, 0]), GOOD])
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[40, 39\\]"):
        embedder().fit(X, y[:-1])


def test_two_dimensional_labels():
    X, y = features()
    with pytest.raises(ValueError, match="^task 1: labels must be 1-D.*got shape \\(40, 2\\)"):
        embedder().fit_transform([GOOD, (X, np.c_[y, y])])
    with pytest.raises(ValueError, match="^task 1: labels must be 1-D.*got shape \\(40, 1\\)"):
        embedder().fit_transform([GOOD, (torch.as_tensor(X), torch.as_tensor(y)[:, None])])
    with pytest.raises(ValueError, match="y should be a 1d array, got an array of shape \\(40, 2\\)"):
        embedder().fit(X, np.c_[y, y])


def test_ragged_labels():
    X, _ = features()
    with pytest.raises(ValueError, match="^task 1: labels cannot be read as an array"):
        embedder().fit_transform([GOOD, (X, [[0], [1, 2]] * 20)])


def test_unhashable_labels():
    X, _ = features()
    with pytest.raises(ValueError, match="^task 1: labels must be hashable"):
        embedder().fit_transform([GOOD, (X, np.array([{"a": i % 2} for i in range(N)], dtype=object))])


# --------------------------------------------------------------------- empty tasks
@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("kind", KINDS)
def test_empty_task(kind, index):
    X, y = features()
    tasks = [GOOD, GOOD]
    tasks[index] = as_kind(kind, X[:0], y[:0])
    with pytest.raises(ValueError, match=f"^task {index} is empty: it has no examples"):
        embedder().fit_transform(tasks)


def test_empty_array_X():
    X, y = features()
    with pytest.raises(ValueError, match="0 sample\\(s\\)"):
        embedder().fit(X[:0], y[:0])


# -------------------------------------------------------------- not a task at all
@pytest.mark.parametrize(
    "not_a_task, described",
    [
        (3, "an object of type int"),
        (None, "an object of type NoneType"),
        ("abc", "an object of type str"),
        ((GOOD[0], GOOD[1], GOOD[1]), "a tuple of 3 items"),
        ([GOOD[0]], "a list of 1 items"),
    ],
)
@pytest.mark.parametrize("index", [0, 2])
def test_something_that_is_not_a_task(not_a_task, described, index):
    tasks = [GOOD, GOOD, GOOD]
    tasks[index] = not_a_task
    message = f"^task {index} is not a task: expected an \\(inputs, labels\\) pair.*got {described}"
    with pytest.raises(TypeError, match=message):
        embedder().fit_transform(tasks)
    fitted = embedder().fit([GOOD])
    with pytest.raises(TypeError, match=message):
        fitted.transform(tasks)


@pytest.mark.parametrize(
    "make, described",
    [
        (lambda i: torch.as_tensor(GOOD[0][i]), "an object of type Tensor"),
        (lambda i: (torch.as_tensor(GOOD[0][i]), int(GOOD[1][i]), 1.0), "a (tuple|list) of 3 items"),
    ],
)
@pytest.mark.parametrize("index", [0, 1])
def test_dataset_whose_items_are_not_pairs(make, described, index):
    tasks = [GOOD, GOOD]
    tasks[index] = ItemsDataset(N, make)
    message = f"^task {index}.*must yield \\(x, y\\) pairs; got .* that is {described}"
    with pytest.raises(TypeError, match=message):
        embedder().fit_transform(tasks)


def test_dataset_whose_labels_cannot_be_collated():
    class Unknown:
        pass

    task = ItemsDataset(N, lambda i: (torch.as_tensor(GOOD[0][i]), Unknown()))
    with pytest.raises(TypeError, match="^task 1: could not read a batch from its data after 0 examples"):
        embedder().fit_transform([GOOD, task])


@pytest.mark.parametrize("index", [0, 1])
def test_scalar_inputs(index):
    tasks = [GOOD, GOOD]
    tasks[index] = (5, GOOD[1])
    message = f"^task {index}: inputs must have one row per example.*got a scalar"
    with pytest.raises(ValueError, match=message):
        embedder().fit_transform(tasks)


@pytest.mark.parametrize("index", [0, 1])
def test_ragged_inputs(index):
    tasks = [GOOD, GOOD]
    tasks[index] = ([[1.0, 2.0], [3.0]] * 20, GOOD[1])
    with pytest.raises(ValueError, match=f"^task {index}: inputs cannot be read as an array"):
        embedder().fit_transform(tasks)


# ------------------------------------------------------- inputs the probe cannot take
def test_tabular_inputs_to_an_image_probe():
    with pytest.raises(ValueError, match="^task 0: the probe cannot take inputs of shape \\(\\d+, 4\\)"):
        image_embedder().fit_transform([GOOD])
    with pytest.raises(ValueError, match="^X: the probe cannot take inputs of shape \\(\\d+, 4\\)"):
        image_embedder().fit(*GOOD)


def test_a_task_with_another_number_of_features_than_the_random_probe_was_built_for():
    fitted = embedder().fit([GOOD, GOOD])
    five = features(n=N, d=5)
    with pytest.raises(ValueError, match="^task 1: the probe cannot take inputs of shape \\(40, 5\\)"):
        fitted.transform([GOOD, five])
    with pytest.raises(ValueError, match="^task 1: the probe cannot take inputs of shape \\(40, 5\\)"):
        embedder().fit_transform([GOOD, five])
    with pytest.raises(ValueError, match="X has 5 features, but FisherTaskEmbedder is expecting 4"):
        embedder().fit(*GOOD).transform(five[0])


def test_images_with_the_wrong_number_of_channels():
    one_channel = images(channels=1)
    message = "the probe cannot take inputs of shape \\(8, 1, 32, 32\\).*3 channels.*to_rgb"
    with pytest.raises(ValueError, match=f"^task 1: {message}"):
        image_embedder().fit_transform([images(), one_channel])
    # Checked in fit, against the probe's first convolution, before any pass (issue 15).
    at_fit = "probe 'resnet18' takes 3-channel images, but the examples have 1 channel .*to_rgb\\(images\\)"
    with pytest.raises(ValueError, match=f"^task 0: {at_fit}"):
        image_embedder().fit_transform([dataset(*one_channel)])
    with pytest.raises(ValueError, match=f"^X: {at_fit}"):
        image_embedder().fit(*one_channel)
    fitted = image_embedder().fit(*images())
    with pytest.raises(ValueError, match="X has 1 features, but FisherTaskEmbedder is expecting 3 features"):
        fitted.transform(one_channel[0])


# ---------------------------------------------------------- complex, object, strings
@pytest.mark.parametrize(
    "inputs, dtype",
    [
        (GOOD[0] + 1j, "complex128"),
        (torch.as_tensor(GOOD[0] + 1j), "torch.complex128"),
        (GOOD[0].astype(str), "<U"),
        (np.array([["a", 1.0, 2.0, 3.0]] * N, dtype=object), "object"),
    ],
)
def test_complex_object_or_string_inputs_of_a_task(inputs, dtype):
    message = f"^task 1: inputs must be real numbers, got dtype {re.escape(dtype)}"
    with pytest.raises(ValueError, match=message):
        embedder().fit_transform([GOOD, (inputs, GOOD[1])])


def test_complex_object_or_string_array_X():
    X, y = features()
    with pytest.raises(ValueError, match="Complex data not supported"):
        embedder().fit(X + 1j, y)
    with pytest.raises(ValueError, match="could not convert string to float"):
        embedder().fit(np.array([["a", "b", "c", "d"]] * N), y)
    with pytest.raises(ValueError, match="could not convert string to float"):
        embedder().fit(np.array([["a", 1.0, 2.0, 3.0]] * N, dtype=object), y)


# -------------------------------------------------------------------- parameters
def _violates(name, value, requirement, error=ValueError):
    """A parameter that fails its declared constraint, and scikit-learn's message for it."""
    message = (
        f"^The '{name}' parameter of FisherTaskEmbedder must be {requirement}. "
        f"Got {re.escape(repr(value))} instead"
    )
    return {name: value}, error, message


INT_FROM_0 = "an int in the range \\[0, inf\\)"
INT_FROM_1 = "an int in the range \\[1, inf\\)"
POSITIVE = "a float in the range \\(0.0, inf\\)"

BAD_PARAMS = [
    ({"probe": "resnet9000"}, ValueError, "^Unknown probe 'resnet9000'.*resnet18"),
    _violates(
        "probe",
        3,
        "an instance of 'str', an instance of 'os.PathLike' or an instance of 'torch.nn.*Module'",
        TypeError,
    ),
    _violates("method", "fancy", "a str among {.*'exact'.*}"),
    *(_violates("batch_size", value, INT_FROM_1) for value in (0, 2.5, True, None)),
    *(_violates("max_samples", value, INT_FROM_1 + " or None") for value in (0, "10", 0.5)),
    *(_violates("head_epochs", value, INT_FROM_0) for value in (-1, 1.5)),
    *(_violates("head_learning_rate", value, POSITIVE) for value in (-0.1, 0, "x", np.nan, np.inf)),
    _violates("head_weight_decay", -1, "a float in the range \\[0.0, inf\\)"),
    *(_violates("verbose", value, "a str among {'auto'} or " + INT_FROM_0) for value in (-1, True, "loud")),
    ({"device": "gpu7"}, ValueError, "^device must be 'auto' or a torch device, got 'gpu7'"),
    _violates("device", [1], "an instance of 'str' or an instance of 'torch.device'"),
]


@pytest.mark.parametrize("params, error, message", BAD_PARAMS)
@pytest.mark.parametrize("kind", ["tasks", "array"])
def test_bad_parameter(params, error, message, kind):
    with pytest.raises(error, match=message):
        if kind == "tasks":
            embedder(**params).fit_transform([GOOD])
        else:
            embedder(**params).fit(*GOOD)


# ------------------------------------------------------------------ probe weights
def test_probe_weights_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "missing.pt"
    message = f"^probe_weights file not found: {re.escape(repr(str(missing)))}"
    with pytest.raises(ValueError, match=message):
        image_embedder(probe_weights=str(missing)).fit_transform([images()])
    with pytest.raises(ValueError, match=message):
        image_embedder(probe_weights=missing).fit(*images())


def test_probe_weights_file_that_is_not_a_state_dict(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("these are not weights\n")
    message = "^probe_weights file '.*weights\\.txt' is not a loadable state_dict"
    with pytest.raises(ValueError, match=message):
        image_embedder(probe_weights=str(text)).fit_transform([images()])
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2), torch.ones(2)], listed)
    with pytest.raises(ValueError, match="^probe_weights file '.*list\\.pt' holds a list, not a state_dict"):
        image_embedder(probe_weights=str(listed)).fit(*images())


def test_probe_weights_state_dict_of_another_model(tmp_path):
    """A state_dict whose keys do not fit the probe: a ValueError naming the file, not a RuntimeError."""
    other = tmp_path / "resnet_other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ValueError, match="probe_weights file '.*resnet_other\\.pt'"):
        image_embedder(probe_weights=str(other)).fit_transform([images()])


@pytest.mark.parametrize("weights", [3, ["/some/path.pt"], b"imagenet"])
def test_probe_weights_of_a_wrong_type(weights):
    message = "^The 'probe_weights' parameter of FisherTaskEmbedder must be an instance of 'str', an instance of 'os.PathLike' or None"
    with pytest.raises(TypeError, match=message):
        image_embedder(probe_weights=weights).fit_transform([images()])


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("patched", ["torch.hub.download_url_to_file", "WeightsEnum.get_state_dict"])
@pytest.mark.parametrize("probe, kind", [("resnet18", "tasks"), ("resnet18", "array"), ("auto", "tasks")])
def test_imagenet_weights_when_the_download_fails(tmp_path, monkeypatch, patched, probe, kind):
    hub = tmp_path / "torch_home" / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # restored after the test
    torch.hub.set_dir(str(hub))
    if patched == "torch.hub.download_url_to_file":
        monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    else:
        monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", _no_network)
    name = "resnet34" if probe == "auto" else probe
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    cache = os.path.join(str(hub), "checkpoints", os.path.basename(url))
    fit = image_embedder(probe=probe, probe_weights="imagenet")
    with pytest.raises(RuntimeError) as raised:
        if kind == "tasks":
            fit.fit_transform([images()])
        else:
            fit.fit(*images())
    message = str(raised.value)
    assert f"Could not get the ImageNet weights of probe {name!r}" in message
    assert "URLError" in message
    assert "probe_weights=None" in message and "probe_weights='/path/to/state_dict.pt'" in message
    assert cache in message and url in message
    assert not os.path.exists(cache)


# -------------------------------------------------------------------- fitted state
def test_not_fitted():
    with pytest.raises(NotFittedError):
        embedder().transform([GOOD])
    with pytest.raises(NotFittedError):
        embedder().transform(GOOD[0])
    with pytest.raises(NotFittedError):
        embedder().get_feature_names_out()


def test_transform_of_an_array_after_fitting_on_tasks():
    fitted = embedder().fit([GOOD])
    message = "^This FisherTaskEmbedder was fitted on a sequence of tasks; transform takes"
    with pytest.raises(ValueError, match=message):
        fitted.transform(GOOD[0])


# --------------------------------------------------------------- one-class tasks
@pytest.mark.parametrize("kind", KINDS)
def test_one_class_task_warns_and_is_the_trivial_embedding(kind):
    X, _ = features()
    fitted = embedder()
    with pytest.warns(UserWarning, match="^Task 1 has a single class.*trivial embedding"):
        rows = fitted.fit_transform([GOOD, as_kind(kind, X, np.full(N, 7)), GOOD])
    np.testing.assert_array_equal(rows[1], np.zeros_like(fitted.trivial_embedding_))
    assert rows[0].any()


def test_one_class_array_task_warns_and_is_the_trivial_embedding():
    X, _ = features()
    fitted = embedder()
    with pytest.warns(UserWarning, match="^The task \\(X, y\\) has a single class"):
        fitted.fit(X, np.full(N, "only"))
    np.testing.assert_array_equal(fitted.embedding_, np.zeros_like(fitted.trivial_embedding_))
    np.testing.assert_array_equal(fitted.transform(X[:5]), np.zeros((5, len(fitted.trivial_embedding_))))


# -------------------------------------------------- what works: loaders and labels
def test_dataset_and_loader_tasks_equal_the_array_task():
    X, y = features()
    exact = embedder(method="exact", batch_size=8, head_epochs=5)
    tasks = [
        (X, y),
        (torch.as_tensor(X), torch.as_tensor(y)),
        dataset(X, y),
        DataLoader(dataset(X, y), batch_size=8),
        DataLoader(dataset(X, y), batch_size=13),
        ItemsDataset(N, lambda i: (X[i], y[i])),  # numpy items, collated by the DataLoader
    ]
    rows = exact.fit_transform(tasks)
    assert np.all(rows[0] >= 0) and rows[0].sum() > 0
    for row in rows[1:]:
        np.testing.assert_allclose(row, rows[0], rtol=1e-10, atol=0)


def test_dataset_task_with_max_samples_equals_the_array_task():
    X, y = features(n=60)
    exact = embedder(method="exact", batch_size=8, head_epochs=5, max_samples=25)
    rows = exact.fit_transform([(X, y), dataset(X, y)])
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-10, atol=0)


def test_image_dataset_and_loader_tasks_equal_the_array_task():
    X, y = images()
    rows = image_embedder(method="exact").fit_transform(
        [(X, y), dataset(X, y), DataLoader(dataset(X, y), batch_size=8)]
    )
    for row in rows[1:]:
        np.testing.assert_allclose(row, rows[0], rtol=1e-10, atol=0)


class Colour(enum.Enum):  # hashable, but not orderable
    RED = 1
    BLUE = 2


@pytest.mark.parametrize(
    "to_labels",
    [
        lambda y: np.where(y, "cat", "dog"),
        lambda y: [["dog", "cat"][v] for v in y],
        lambda y: y.astype(bool),
        # Whole-number floats: scikit-learn's "binary"/"multiclass" (0.5 and 1.5 would be
        # "continuous", refused as a regression target: test_hostile_inputs.py).
        lambda y: y.astype(float) + 2.0,
        lambda y: torch.as_tensor(y),
        lambda y: torch.as_tensor(y, dtype=torch.float32),
        lambda y: [Colour.RED if v else Colour.BLUE for v in y],
        lambda y: np.array([1 if v else "one" for v in y], dtype=object),
        lambda y: ["none" if v else 0 for v in y],
    ],
    # None is a missing value, not a class, and is refused (test_hostile_inputs.py).
    ids=["str", "str-list", "bool", "float", "tensor", "float-tensor", "enum", "mixed", "mixed-list"],
)
def test_labels_of_any_hashable_kind(to_labels):
    X, y = features()
    exact = embedder(method="exact", batch_size=8, head_epochs=5)
    rows = exact.fit_transform([(X, y), (X, to_labels(y))])
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-9)
    fitted = embedder(method="exact", batch_size=8, head_epochs=5).fit(X, to_labels(y))
    assert len(fitted.classes_) == 2
    np.testing.assert_allclose(fitted.embedding_, rows[0], rtol=1e-9)


def test_string_labels_from_a_dataset():
    X, y = features()
    task = ItemsDataset(N, lambda i: (torch.as_tensor(X[i]), "cat" if y[i] else "dog"))
    rows = embedder(method="exact", batch_size=8, head_epochs=5).fit_transform([(X, y), task])
    np.testing.assert_allclose(rows[1], rows[0], rtol=1e-9)


@pytest.mark.parametrize(
    "make_single",
    [
        lambda X, y: (X, y),
        lambda X, y: torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)),
        lambda X, y: torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y)), batch_size=8
        ),
    ],
    ids=["pair", "dataset", "loader"],
)
def test_a_single_task_not_in_a_list_says_so(make_single):
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(20, 4)), np.arange(20) % 2
    with pytest.raises(TypeError, match=r"X is one task .* pass a list of tasks"):
        FisherTaskEmbedder(random_state=0).fit(make_single(X, y))
