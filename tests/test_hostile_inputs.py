"""Hostile and careless inputs (issue 13): nothing lost, nothing silently wrong.

Each test builds a tiny task (a random ReLU probe on 4 features, 40 examples) and checks one
guarantee: a computed row is never thrown away, a cache file is never accepted for other
settings, labels and inputs the embedder cannot handle are refused with a message naming the
task, and degenerate results are reported rather than returned.
"""

import os
import shutil

import numpy as np
import pytest
import torch

from sklearn_task2vec import FisherTaskEmbedder

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
