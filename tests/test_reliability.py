"""Thousands of tasks without losing one: failing tasks, the resumable cache, joblib backends."""

import os
import subprocess
import sys
import textwrap
import warnings
from unittest import mock

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from torch.utils.data import Dataset

from sklearn_task2vec import FisherTaskEmbedder


def make_tasks(n_tasks=4, n=60, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, 5))
    return [(X + 0.1 * k, (X[:, k % 5] > 0).astype(int)) for k in range(n_tasks)]


class FailingDataset(Dataset):
    """Raises ``error`` when example ``at`` is read (a task that fails mid-run)."""

    def __init__(self, X, y, at, error):
        self.X, self.y, self.at, self.error = X, y, at, error

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        if index == self.at:
            raise self.error
        return torch.as_tensor(self.X[index]), int(self.y[index])


def test_failing_task_raises_or_becomes_a_nan_row_with_its_error_kept():
    tasks = make_tasks()
    X, y = tasks[2]
    tasks[2] = FailingDataset(X, y, at=30, error=RuntimeError("disk read failed"))
    with pytest.raises(ValueError, match="task 2: could not read a batch.*disk read failed"):
        FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    embedder = FisherTaskEmbedder(random_state=0, on_error="warn")
    with pytest.warns(UserWarning, match="Task 2 failed and its row is NaN.*disk read failed"):
        rows = embedder.fit_transform(tasks)
    assert np.isnan(rows[2]).all() and not np.isnan(np.delete(rows, 2, axis=0)).any()
    assert list(embedder.errors_) == [2] and isinstance(embedder.errors_[2], ValueError)
    good = FisherTaskEmbedder(random_state=0).fit_transform([t for k, t in enumerate(tasks) if k != 2])
    np.testing.assert_array_equal(np.delete(rows, 2, axis=0), good)
    assert embedder.fit_transform(make_tasks()).shape == rows.shape and embedder.errors_ == {}


def test_interrupted_run_resumes_from_the_cache(tmp_path, counted):
    tasks = make_tasks(5)
    X, y = tasks[3]
    interrupted = [*tasks[:3], FailingDataset(X, y, at=10, error=KeyboardInterrupt()), tasks[4]]
    embedder = FisherTaskEmbedder(random_state=0, memory=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        embedder.fit_transform(interrupted)
    assert len(counted) == 3  # the fourth was interrupted while its content was read
    files = sorted(tmp_path.rglob("*.npz"))
    assert len(files) == 3
    written = {path: path.stat().st_mtime_ns for path in files}

    counted.clear()
    resumed = embedder.fit_transform([*tasks[:3], FailingDataset(X, y, at=-1, error=None), tasks[4]])
    assert len(counted) == 2  # only the missing tasks
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in written.items())
    np.testing.assert_array_equal(resumed, FisherTaskEmbedder(random_state=0).fit_transform(tasks))


def test_cache_key_follows_content_and_settings(tmp_path, counted):
    tasks = make_tasks(2)
    FisherTaskEmbedder(random_state=0, memory=tmp_path).fit_transform(tasks)
    assert len(counted) == 2
    counted.clear()
    # Same content in new objects, and settings that do not change rows: all loaded.
    copies = [(X.copy(), y.copy()) for X, y in tasks]
    FisherTaskEmbedder(
        random_state=0, memory=joblib.Memory(tmp_path, verbose=0), n_jobs=1, verbose=0
    ).fit_transform(copies)
    assert counted == []
    # A changed example, another seed or another setting: recomputed.
    changed = [(tasks[0][0].copy(), tasks[0][1]), tasks[1]]
    changed[0][0][0, 0] += 1e-9
    FisherTaskEmbedder(random_state=0, memory=tmp_path).fit_transform(changed)
    assert len(counted) == 1
    counted.clear()
    FisherTaskEmbedder(random_state=1, memory=tmp_path).fit_transform(tasks)
    FisherTaskEmbedder(random_state=0, head_weight_decay=1e-3, memory=tmp_path).fit_transform(tasks)
    assert len(counted) == 4


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte", "garbage"])
def test_corrupted_cache_file_is_detected_and_recomputed(tmp_path, counted, damage):
    tasks = make_tasks(2)
    embedder = FisherTaskEmbedder(random_state=0, memory=tmp_path)
    expected = embedder.fit_transform(tasks)
    path = sorted(tmp_path.rglob("*.npz"))[0]
    content = bytearray(path.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    elif damage == "flip_a_byte":
        # A byte of the stored row itself (the npz is an uncompressed zip: its bytes are in the
        # file as they are in memory), wherever the other entries put it.
        offsets = [bytes(content).find(row.tobytes()) for row in np.asarray(expected, dtype=np.float64)]
        start = max(offsets)
        assert start >= 0, "the stored row's bytes are in the file"
        content[start + len(expected[0]) * 4] ^= 0x01
    else:
        content = bytearray(b"not an npz file")
    path.write_bytes(bytes(content))
    counted.clear()
    with pytest.warns(UserWarning, match="is corrupted"):
        again = embedder.fit_transform(tasks)
    assert len(counted) == 1
    np.testing.assert_array_equal(again, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(embedder.fit_transform(tasks), expected)  # rewritten, valid


def test_pipeline_memory_caches_the_embedding(tmp_path, counted):
    tasks = make_tasks(4)
    meta_labels = [0, 1, 0, 1]
    pipeline = Pipeline(
        [("embed", FisherTaskEmbedder(random_state=0)), ("classify", LogisticRegression())],
        memory=str(tmp_path),
    )
    pipeline.fit(tasks, meta_labels)
    assert len(counted) == 4
    counted.clear()
    pipeline.fit(tasks, meta_labels)
    assert counted == []


def run_script(script, *args, env=None):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


SHARED_CACHE_SCRIPT = """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_reliability import make_tasks
    from sklearn_task2vec import FisherTaskEmbedder
    rows = FisherTaskEmbedder(random_state=0, memory=sys.argv[1]).fit_transform(make_tasks(6))
    np.save(sys.argv[3], rows)
"""


@pytest.mark.slow
def test_two_processes_share_one_cache_folder(tmp_path):
    cache = tmp_path / "cache"
    here = os.path.dirname(__file__)
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(SHARED_CACHE_SCRIPT),
                cache,
                here,
                tmp_path / f"rows{k}.npy",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    expected = FisherTaskEmbedder(random_state=0).fit_transform(make_tasks(6))
    for k in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"rows{k}.npy"), expected)
    assert len(list(cache.rglob("*.npz"))) == 6 and not list(cache.rglob("*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every file written by the two processes is valid
        np.testing.assert_array_equal(
            FisherTaskEmbedder(random_state=0, memory=cache).fit_transform(make_tasks(6)), expected
        )


KILLED_WORKER_SCRIPT = """
    import os, sys
    import numpy as np
    import torch
    from torch.utils.data import Dataset
    sys.path.insert(0, sys.argv[2])
    from test_reliability import make_tasks
    from sklearn_task2vec import FisherTaskEmbedder

    class DiesOnce(Dataset):
        # Kills the worker process that reads it while the marker file exists.
        def __init__(self, X, y, marker):
            self.X, self.y, self.marker = X, y, marker
        def __len__(self):
            return len(self.y)
        def __getitem__(self, index):
            if os.path.exists(self.marker):
                os.remove(self.marker)
                os._exit(3)
            return torch.as_tensor(self.X[index]), int(self.y[index])

    tasks = make_tasks(6)
    X, y = tasks[5]
    tasks[5] = DiesOnce(X, y, sys.argv[3])
    embedder = FisherTaskEmbedder(random_state=0, memory=sys.argv[1], n_jobs=2)
    try:
        rows = embedder.fit_transform(tasks)
    except Exception as error:
        print("FAILED", type(error).__name__)
        sys.exit(0)
    np.save(sys.argv[4], rows)
    print("DONE")
"""


@pytest.mark.slow
def test_killed_worker_loses_only_its_task(tmp_path):
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    marker.touch()
    here = os.path.dirname(__file__)
    first = run_script(KILLED_WORKER_SCRIPT, cache, here, marker, tmp_path / "rows.npy")
    assert first.returncode == 0, first.stderr
    assert "FAILED TerminatedWorkerError" in first.stdout, first.stdout + first.stderr
    assert len(list(cache.rglob("*.npz"))) < 6
    second = run_script(KILLED_WORKER_SCRIPT, cache, here, marker, tmp_path / "rows.npy")
    assert "DONE" in second.stdout, second.stdout + second.stderr
    expected = FisherTaskEmbedder(random_state=0).fit_transform(make_tasks(6))
    np.testing.assert_allclose(np.load(tmp_path / "rows.npy"), expected, rtol=1e-10)
    assert len(list(cache.rglob("*.npz"))) == 6


@pytest.mark.slow
def test_dask_distributed_cluster_gives_the_sequential_rows():
    distributed = pytest.importorskip("distributed")
    tasks = make_tasks(4)
    expected = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    # distributed sets OMP_NUM_THREADS=1 (and more) in this process's environment for its
    # workers; patch.dict puts the environment back for the tests that start subprocesses.
    with (
        mock.patch.dict(os.environ),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_config(backend="dask"),
    ):
        rows = FisherTaskEmbedder(random_state=0, n_jobs=-1).fit_transform(tasks)
    np.testing.assert_allclose(rows, expected, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("backend, repeats", [("loky", 1), ("threading", 20)])
def test_other_joblib_backends_give_the_sequential_rows(backend, repeats):
    """Threads share the process: the probe is traced once before dispatch and each thread
    hooks its own copy. Twenty runs, since a race would show only now and then."""
    tasks = make_tasks(4)
    expected = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    for _ in range(repeats):
        with joblib.parallel_config(backend=backend):
            rows = FisherTaskEmbedder(random_state=0, n_jobs=2).fit_transform(tasks)
        np.testing.assert_allclose(rows, expected, rtol=1e-10)


@pytest.mark.slow
def test_fitted_embedder_pickles_without_the_tasks_and_loads_offline(tmp_path):
    """The file holds the probe, not the tasks; loading it needs no network."""
    X = np.random.RandomState(0).normal(size=(4000, 5))
    tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0)]
    embedder = FisherTaskEmbedder(random_state=0).fit(tasks)
    expected = embedder.transform(tasks)
    path = tmp_path / "embedder.joblib"
    joblib.dump(embedder, path)
    assert path.stat().st_size < X.nbytes / 4
    assert all(tensor.device.type == "cpu" for tensor in embedder.probe_.state_dict().values())
    np.save(tmp_path / "X.npy", X)
    offline = run_script(
        """
        import socket, sys
        import joblib, numpy as np

        def no_network(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = no_network
        X = np.load(sys.argv[2])
        embedder = joblib.load(sys.argv[1])
        np.save(sys.argv[3], embedder.transform([(X, X[:, 0] > 0), (X, X[:, 1] > 0)]))
        """,
        path,
        tmp_path / "X.npy",
        tmp_path / "rows.npy",
    )
    assert offline.returncode == 0, offline.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "rows.npy"), expected)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"on_error": "ignore"},
            ValueError,
            "The 'on_error' parameter of FisherTaskEmbedder must be a str among {'raise', 'warn'}|{'warn', 'raise'}",
        ),
        (
            {"memory": 3},
            TypeError,
            "The 'memory' parameter of FisherTaskEmbedder must be an instance of 'str', an instance of 'os.PathLike', an instance of 'joblib.memory.Memory' or None",
        ),
    ],
)
def test_bad_reliability_parameters(params, error, message):
    with pytest.raises(error, match=message):
        FisherTaskEmbedder(**params).fit(make_tasks(1))
