"""Hostile and careless inputs (issue 13): nothing lost, nothing silently wrong.

Each test builds a tiny task (a random ReLU probe on 4 features, 40 examples) and checks one
guarantee: a computed row is never thrown away, a cache file is never accepted for other
settings, labels and inputs the embedder cannot handle are refused with a message naming the
task, and degenerate results are reported rather than returned.
"""

import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision import transforms

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec import _pipeline as pipeline_module
from sklearn_task2vec._pipeline import EXACT_CLASS_LIMIT
from sklearn_task2vec.tasks import coerce_task

pytestmark = pytest.mark.usefixtures("one_thread")

N, D = 40, 4


def features(seed=0, n=N, d=D):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, d))
    return X, (X[:, 0] > 0).astype(int)


GOOD = features()


def embedder(**params):
    return FisherTaskEmbedder(**{"random_state": 0, "head_epochs": 5, **params})


def cache_files(folder):
    return sorted(path for path in folder.rglob("*.npz") if path.is_file())


# --------------------------------------------------------------------------- the cache
def test_a_row_whose_cache_file_cannot_be_written_is_kept(tmp_path):
    expected = embedder().fit_transform([GOOD])
    embedder(memory=tmp_path).fit_transform([GOOD])
    (path,) = cache_files(tmp_path)
    path.unlink()
    path.mkdir()  # a directory where the file goes: the rename fails
    with pytest.warns(UserWarning, match="Could not write the cache file .* the row is kept"):
        rows = embedder(memory=tmp_path).fit_transform([GOOD, features(1)])
    np.testing.assert_array_equal(rows[0], expected[0])
    assert len(cache_files(tmp_path)) == 1  # the other task was cached

    settings_folder = path.parent
    shutil.rmtree(settings_folder)
    settings_folder.write_text("")  # a file where the settings folder goes: mkdir fails
    with pytest.warns(UserWarning, match="Could not write the cache file"):
        rows = embedder(memory=tmp_path).fit_transform([GOOD])
    np.testing.assert_array_equal(rows, expected)


def test_a_memory_that_is_a_file_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file; the cache needs a folder"):
        embedder(memory=tmp_path / "file").fit([GOOD])
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "sklearn_task2vec").write_text("")
    with pytest.raises(ValueError, match="is a file; the cache needs a folder"):
        embedder(memory=tmp_path / "folder").fit(*GOOD)


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_a_cache_file_from_another_settings_folder_is_refused(tmp_path, how):
    embedder(memory=tmp_path).fit_transform([GOOD])
    (source,) = cache_files(tmp_path)
    other = embedder(head_weight_decay=0.5)
    expected = other.fit_transform([GOOD])
    assert not np.allclose(expected, embedder().fit_transform([GOOD]))
    other.set_params(memory=tmp_path).fit_transform([features(1)])  # makes the other settings folder
    target_folder = next(folder for folder in source.parent.parent.iterdir() if folder != source.parent)
    target = target_folder / source.name
    if how == "copy":
        shutil.copy(source, target)
    else:
        os.symlink(source, target)
    with pytest.warns(UserWarning, match="is corrupted.*checksum mismatch"):
        rows = other.fit_transform([GOOD])
    np.testing.assert_array_equal(rows, expected)


def probe(width, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(D, width), torch.nn.ReLU())


def test_a_cache_file_of_a_narrower_probe_is_refused(tmp_path):
    embedder(probe=probe(8), memory=tmp_path).fit_transform([GOOD])
    (source,) = cache_files(tmp_path)
    wide = embedder(probe=probe(16), memory=tmp_path)
    wide.fit_transform([features(1)])
    (target_folder,) = (
        folder
        for folder in tmp_path.rglob("*")
        if folder.is_dir() and folder != source.parent and folder.parent == source.parent.parent
    )
    shutil.copy(source, target_folder / source.name)
    with pytest.warns(UserWarning, match="is corrupted.*checksum mismatch"):
        rows = wide.fit_transform([GOOD, features(1)])
    assert rows.shape == (2, 16)
    np.testing.assert_array_equal(rows[0], embedder(probe=probe(16)).fit_transform([GOOD])[0])


# --------------------------------------------------------------------------------- labels
def labels_with(missing):
    labels = np.array(["a", "b"] * (N // 2), dtype=object)
    labels[7] = missing
    return labels


@pytest.mark.parametrize("missing", [None, np.nan, float("nan")], ids=["None", "np.nan", "float-nan"])
@pytest.mark.parametrize("kind", ["pair", "loader", "array"])
def test_missing_object_labels_are_refused_naming_the_task(missing, kind):
    labels = labels_with(missing)
    if kind == "array":
        with pytest.raises(ValueError, match="^y: labels contain 1 missing values.*at example 7"):
            embedder().fit(GOOD[0], labels)
        return
    task = (GOOD[0], labels)
    if kind == "loader":
        task = DataLoader(list(zip(torch.as_tensor(GOOD[0]), labels)), batch_size=8, collate_fn=collate)
    with pytest.raises(ValueError, match="task 1.*labels contain 1 missing values"):
        embedder().fit_transform([GOOD, task])


def collate(items):
    return torch.stack([x for x, _ in items]), [label for _, label in items]


def test_pandas_missing_labels_are_refused():
    pandas = pytest.importorskip("pandas")
    for labels in (
        pandas.Series(["a", "b"] * (N // 2 - 1) + ["a", None], dtype="string"),
        pandas.Series(["a", "b"] * (N // 2 - 1) + ["a", pandas.NA], dtype=object),
        pandas.Categorical(["a", "b"] * (N // 2 - 1) + ["a", None]),
    ):
        with pytest.raises(ValueError, match="^task 0: labels contain 1 missing values.*at example 39"):
            embedder().fit_transform([(GOOD[0], labels)])


def test_continuous_labels_are_refused_as_scikit_learn_does():
    X, _ = GOOD
    for labels in (X[:, 1], X[:, 1].astype(object), torch.as_tensor(X[:, 1])):
        with pytest.raises(ValueError, match="^task 0: labels are continuous.*regression target"):
            embedder().fit_transform([(X, labels)])
    with pytest.raises(ValueError, match="^y: labels are continuous"):
        embedder().fit(X, X[:, 1])
    # Whole-number floats are class labels, as for scikit-learn's classifiers.
    whole = embedder().fit_transform([(X, GOOD[1].astype(float))])
    np.testing.assert_array_equal(whole, embedder().fit_transform([GOOD]))


# ---------------------------------------------------------------- odd containers and dtypes
def test_a_generator_of_tasks_is_refused_with_advice():
    with pytest.raises(TypeError, match="X is an iterator \\(generator\\).*list\\(tasks\\)"):
        embedder().fit_transform(task for task in [GOOD, GOOD])
    with pytest.raises(TypeError, match="X is an iterator \\(map\\)"):
        embedder().fit(map(tuple, [GOOD]))


def test_a_task_of_python_scalars_is_named():
    with pytest.raises(
        ValueError, match="^task 0: inputs must have one row per example.*scalar of type float"
    ):
        embedder().fit_transform([(1.0, 2)])
    with pytest.raises(ValueError, match="of type float.*requires y to be passed, but the target y is None"):
        embedder().fit([(1.0, 2), (3.0, 4)])


def test_sparse_inputs_are_refused_as_sparse():
    sparse = scipy.sparse.csr_matrix(GOOD[0])
    for tasks, index in (([(sparse, GOOD[1])], 0), ([GOOD, (sparse, GOOD[1])], 1)):
        with pytest.raises(TypeError, match=f"^task {index}: inputs are a sparse csr_matrix.*toarray"):
            embedder().fit_transform(tasks)


def test_torch_bool_inputs_are_treated_as_numpy_bools():
    X, y = GOOD
    expected = embedder().fit_transform([(X > 0, y)])
    np.testing.assert_array_equal(embedder().fit_transform([(torch.as_tensor(X > 0), y)]), expected)
    np.testing.assert_array_equal(embedder().fit_transform([((X > 0).astype(float), y)]), expected)


# ----------------------------------------------------------- degenerate Fisher rows
# What overflows depends on the scale: the head's predictions saturate (a zero row), its
# training diverges, or the features' squares overflow float64.
DEGENERATE = "(the Fisher embedding is zero|the head's training diverged|the probe's features are too large)"


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e100, 1e200])
def test_inputs_of_huge_magnitude_are_an_error_not_a_zero_or_nan_row(scale):
    X, y = GOOD
    with pytest.raises(ValueError, match=f"^task 1: {DEGENERATE}.*standardise"):
        embedder().fit_transform([GOOD, (X * scale, y)])
    fitted = embedder(on_error="warn")
    with pytest.warns(UserWarning, match="Task 1 failed"):
        rows = fitted.fit_transform([GOOD, (X * scale, y)])
    assert list(fitted.errors_) == [1] and "standardise" in str(fitted.errors_[1])
    assert np.isnan(rows[1]).all() and np.isfinite(rows[0]).all() and rows[0].any()
    with pytest.raises(ValueError, match=f"^X: {DEGENERATE}"):
        embedder().fit(X * scale, y)


def test_a_non_finite_fisher_row_is_an_error(monkeypatch):
    original = pipeline_module.task_fisher

    def overflowing(*args, **kwargs):
        total = original(*args, **kwargs)
        total[3] = np.inf
        return total

    monkeypatch.setattr(pipeline_module, "task_fisher", overflowing)
    with pytest.raises(ValueError, match="^task 0: the Fisher embedding has 1 non-finite values"):
        embedder().fit_transform([GOOD])


# ------------------------------------------------------------------ method="exact"
def test_exact_refuses_too_many_classes_with_advice():
    n_classes = EXACT_CLASS_LIMIT + 1
    X = np.random.RandomState(0).normal(size=(n_classes, 2))
    y = np.arange(n_classes)
    message = (
        f"task 0: method='exact' on {n_classes} classes takes {n_classes - 1} backward passes.*montecarlo"
    )
    with pytest.raises(ValueError, match=message):
        embedder(method="exact", head_epochs=0).fit_transform([(X, y)])
    with pytest.raises(ValueError, match="^y: method='exact'"):
        embedder(method="exact", head_epochs=0).fit(X, y)


# -------------------------------------------------------- fit with on_error="warn"
class Unreadable(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, index):
        raise RuntimeError("cannot read this example")


def test_on_error_warn_covers_reading_the_first_task_in_fit():
    with pytest.raises(RuntimeError, match="cannot read this example"):
        embedder().fit([Unreadable(), GOOD])
    fitted = embedder(on_error="warn")
    with pytest.warns(UserWarning, match="Task 0 failed"):
        rows = fitted.fit_transform([Unreadable(), GOOD])
    assert list(fitted.errors_) == [0] and np.isnan(rows[0]).all()
    np.testing.assert_array_equal(rows[1], embedder().fit_transform([GOOD])[0])


# ------------------------------------------------------------------------- probes
def test_a_bfloat16_probe_takes_numpy_inputs():
    wide = probe(16)
    expected = embedder(probe=wide).fit_transform([GOOD])
    rows = embedder(probe=wide.to(torch.bfloat16)).fit_transform([GOOD])
    assert rows.dtype == np.float64 and np.isfinite(rows).all()
    assert np.linalg.norm(rows - expected) < 0.1 * np.linalg.norm(expected)


def test_a_torchscript_probe_is_refused_clearly():
    for compiled in (torch.jit.script(probe(8)), torch.jit.trace(probe(8), torch.zeros(2, D))):
        with pytest.raises(TypeError, match="probe is a TorchScript module.*original torch.nn.Module"):
            embedder(probe=compiled).fit([GOOD])


# ------------------------------------------------------------ unreadable image files
def image_folder(root, n_per_class=4):
    rng = np.random.RandomState(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(n_per_class):
            pixels = rng.randint(0, 256, size=(8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root


GOOD_IMAGES = (torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)), np.arange(6) % 2)


@pytest.mark.parametrize("damage", ["truncated", "not-an-image"])
@pytest.mark.parametrize("position", [0, 5])
def test_an_unreadable_image_is_named_with_its_task_and_file(tmp_path, damage, position):
    dataset = torchvision.datasets.ImageFolder(image_folder(tmp_path), transform=transforms.ToTensor())
    path = Path(dataset.samples[position][0])
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncated" else b"not an image")
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    message = f"^task 1: could not read example {position} \\(file {re.escape(str(path))}\\): "
    with pytest.raises(ValueError, match=message):
        embedder(probe=tiny, batch_size=4).fit_transform([GOOD_IMAGES, dataset])
    if position == 0:  # task 0's first example is read in fit, to choose the probe
        with pytest.raises(ValueError, match=message.replace("task 1", "task 0")):
            embedder(probe=tiny).fit([dataset])
    fitted = embedder(probe=tiny, batch_size=4, on_error="warn")
    with pytest.warns(UserWarning, match="Task 1 failed"):
        fitted.fit_transform([GOOD_IMAGES, dataset])
    assert str(path) in str(fitted.errors_[1])
    # A DataLoader of the user's: the task and the batch are named (PIL names a foreign file).
    loader = DataLoader(dataset, batch_size=4)
    with pytest.raises(ValueError, match="^task 1: could not read a batch from its data after \\d+ examples"):
        embedder(probe=tiny).fit_transform([GOOD_IMAGES, loader])


# -------------------------------------------------------- max_samples on a DataLoader
def sorted_loader(n=80, batch_size=10):
    """A class-sorted loader: the first half of its examples are class 0. Feature 0 is the
    example's position, to tell which examples a sample holds."""
    X = torch.as_tensor(np.random.RandomState(0).normal(size=(n, D)))
    X[:, 0] = torch.arange(n)
    labels = torch.arange(n) // (n // 2)
    return DataLoader(TensorDataset(X + labels[:, None], labels), batch_size=batch_size)


def sampled_positions(loader, seed, max_samples=20):
    task = coerce_task(
        loader,
        0,
        dtype=torch.float64,
        batch_size=10,
        max_samples=max_samples,
        rng=np.random.RandomState(seed),
    )
    batches = list(task.batches(10))
    inputs = torch.cat([inputs for inputs, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return (inputs[:, 0] - torch.as_tensor(labels)).long().numpy(), labels


def test_max_samples_on_a_loader_draws_at_random():
    loader = sorted_loader()
    positions, labels = sampled_positions(loader, seed=0)
    assert len(labels) == 20 and 0 < labels.sum() < 20  # both classes, not the first 20
    assert positions.tolist() == sorted(set(positions.tolist()))  # distinct, in the loader's order
    np.testing.assert_array_equal(labels, positions // 40)  # each with its own label
    np.testing.assert_array_equal(sampled_positions(loader, seed=0)[0], positions)  # every pass
    assert not np.array_equal(sampled_positions(loader, seed=1)[0], positions)
    assert len(sampled_positions(loader, seed=0, max_samples=500)[0]) == 80  # all of a short loader

    # Each example is kept with probability max_samples / n (reservoir sampling is uniform).
    kept = np.zeros(80)
    for seed in range(200):
        kept[sampled_positions(loader, seed)[0]] += 1
    frequency = kept / 200
    assert frequency.min() > 0.1 and frequency.max() < 0.4
    assert abs(frequency[:40].mean() - frequency[40:].mean()) < 0.05


def test_max_samples_on_a_sorted_loader_embeds_both_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "single class" warning: the sample has both
        rows = embedder(max_samples=20).fit_transform([sorted_loader()])
    assert np.isfinite(rows).all() and rows.any()
    again = embedder(max_samples=20).fit_transform([sorted_loader()])
    np.testing.assert_array_equal(rows, again)


# ----------------------------------------------------------------------------- files from elsewhere


class _Payload:
    """Any Python object in a weights file: loading it would need pickle, which can run code."""


def test_weights_file_with_objects_is_refused_without_unsafe_advice(tmp_path):
    from sklearn_task2vec.probes import build_named_probe

    path = tmp_path / "weights.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(ValueError) as raised:
        build_named_probe("resnet18", path)
    message = str(raised.value)
    assert "weights.pt" in message and "never loaded" in message
    assert "weights_only=False" not in message and raised.value.__cause__ is None


def test_task_names_that_spreadsheets_would_run_are_quoted_and_read_back(tmp_path, capsys):
    from sklearn_task2vec.cli import main

    X = np.random.RandomState(0).normal(size=(20, 3))
    task = tmp_path / "=HYPERLINK(1).npz"
    np.savez(task, X=X, y=X[:, 0] > 0)
    output = tmp_path / "embeddings.csv"
    assert main(["embed", str(task), "-o", str(output)]) == 0
    cell = output.read_text().splitlines()[1].split(",")[0]
    assert cell.startswith("'=HYPERLINK")
    assert main(["distances", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "=HYPERLINK(1)" in printed and "'=HYPERLINK" not in printed


def test_npz_that_would_expand_beyond_memory_is_refused_before_decompressing(tmp_path, capsys, monkeypatch):
    from sklearn_task2vec import cli

    task = tmp_path / "bomb.npz"
    np.savez_compressed(task, X=np.zeros((2000, 500)), y=np.zeros(2000))  # 8 MB of zeros, 20 kB on disk
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(cli, "_NPZ_MEMORY_SHARE", 4e6 / memory)  # as if the machine had 8 MB
    assert cli.main(["embed", str(task), "-o", str(tmp_path / "out.csv")]) != 0
    err = capsys.readouterr().err
    assert "bomb.npz" in err and "refused before decompressing" in err
