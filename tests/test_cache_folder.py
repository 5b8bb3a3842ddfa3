"""The embedding cache's folder and keys (issue 24): special files are skipped, a shuffled
loader finds its row again, a loader that reads other examples at every pass is not cached,
and a stream that can be read only once is named as such (not as "empty")."""

import contextlib
import signal

import numpy as np
import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
)

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.tasks import loader_order

pytestmark = pytest.mark.usefixtures("one_thread")

N, D = 40, 4


def features(seed=0, n=N):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, D)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int)


def dataset(seed=0):
    X, y = features(seed)
    return TensorDataset(torch.from_numpy(X), torch.from_numpy(y))


def embedder(**params):
    return FisherTaskEmbedder(**{"random_state": 0, "head_epochs": 5, "method": "montecarlo", **params})


@contextlib.contextmanager
def deadline(seconds):
    """Fail, rather than hang, when the block takes longer than ``seconds`` (opening a FIFO for
    reading blocks until a writer comes: the failure this guards against)."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: blocked on a special file?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def cache_rows(folder):
    return sorted(path for path in folder.rglob("*.npz"))


# ------------------------------------------------------------------- special files
@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_a_special_file_where_a_row_goes_is_skipped_with_a_warning(kind, tmp_path, counted, special_file):
    task = features()
    expected = embedder(memory=tmp_path).fit_transform([task])
    (path,) = cache_rows(tmp_path)
    path.unlink()
    special_file(path, kind)
    counted.clear()
    with deadline(60), pytest.warns(UserWarning, match="is not a regular file") as caught:
        rows = embedder(memory=tmp_path).fit_transform([task])
    np.testing.assert_array_equal(rows, expected)
    assert len(counted) == 1  # recomputed
    # ... and not written over it: the writer never replaces what is not a regular file.
    assert any("Could not write the cache file" in str(warning.message) for warning in caught)
    assert not path.is_file()


# ---------------------------------------------------------------------- loader order
@pytest.mark.parametrize(
    ("make", "order"),
    [
        (lambda data: DataLoader(data, batch_size=8), "fixed"),
        (lambda data: DataLoader(data, batch_size=8, shuffle=True), "permuted"),
        (lambda data: DataLoader(data, batch_size=8, sampler=SubsetRandomSampler(range(N))), "permuted"),
        (
            lambda data: DataLoader(
                data, batch_sampler=BatchSampler(RandomSampler(data), 8, drop_last=False)
            ),
            "permuted",
        ),
        (lambda data: DataLoader(data, batch_size=8, shuffle=True, drop_last=True), "permuted"),  # 40 = 5 x 8
        (lambda data: DataLoader(data, batch_size=7, shuffle=True, drop_last=True), "random"),
        (lambda data: DataLoader(data, batch_size=7, drop_last=True), "fixed"),
        (lambda data: DataLoader(data, sampler=RandomSampler(data, replacement=True)), "random"),
        (lambda data: DataLoader(data, sampler=RandomSampler(data, num_samples=20)), "random"),
        (lambda data: DataLoader(data, sampler=WeightedRandomSampler(np.ones(N), N)), "random"),
        (
            lambda data: DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 8, False)),
            "fixed",
        ),
    ],
)
def test_loader_order_says_what_changes_between_passes(make, order):
    assert loader_order(make(dataset())) == order


def shuffled(seed, data=None, **options):
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset() if data is None else data, batch_size=8, shuffle=True, generator=generator, **options
    )


@pytest.mark.parametrize("max_samples", [None, 25])
def test_a_shuffled_loader_finds_its_row_again_whatever_the_order(max_samples, tmp_path, counted):
    first = embedder(memory=tmp_path, max_samples=max_samples).fit_transform([shuffled(0)])
    assert len(counted) == 1 and len(cache_rows(tmp_path)) == 1
    counted.clear()
    for seed in (1, 2):
        again = embedder(memory=tmp_path, max_samples=max_samples).fit_transform([shuffled(seed)])
        np.testing.assert_array_equal(again, first)
    sampler = SubsetRandomSampler(range(N), generator=torch.Generator().manual_seed(5))
    subset = DataLoader(dataset(), batch_size=8, sampler=sampler)
    np.testing.assert_array_equal(
        embedder(memory=tmp_path, max_samples=max_samples).fit_transform([subset]), first
    )
    assert counted == [] and len(cache_rows(tmp_path)) == 1


def test_a_shuffled_loader_of_other_examples_gets_its_own_row(tmp_path, counted):
    embedder(memory=tmp_path).fit_transform([shuffled(0)])
    X, y = features()
    X[3, 1] += 1e-3  # one example changed
    embedder(memory=tmp_path).fit_transform(
        [shuffled(0, TensorDataset(torch.from_numpy(X), torch.from_numpy(y)))]
    )
    y = y.copy()
    y[5] = 1 - y[5]  # one label changed
    embedder(memory=tmp_path).fit_transform(
        [shuffled(0, TensorDataset(torch.from_numpy(features()[0]), torch.from_numpy(y)))]
    )
    assert len(counted) == 3 and len(cache_rows(tmp_path)) == 3


def test_a_loader_in_another_fixed_order_gets_its_own_row(tmp_path, counted):
    """A fixed order is part of the row (the Monte Carlo labels follow it): keyed in order."""
    X, y = features()
    order = np.random.RandomState(0).permutation(N)
    rows = [
        embedder(memory=tmp_path).fit_transform(
            [DataLoader(TensorDataset(torch.from_numpy(X[index]), torch.from_numpy(y[index])), batch_size=8)]
        )
        for index in (np.arange(N), order)
    ]
    assert len(counted) == 2 and len(cache_rows(tmp_path)) == 2
    assert not np.array_equal(rows[0], rows[1])


@pytest.mark.parametrize(
    "options",
    [{"sampler": "replacement"}, {"sampler": "weighted"}, {"drop_last": True}],
    ids=["with-replacement", "weighted", "drop-last-shuffled"],
)
def test_a_loader_that_reads_other_examples_each_pass_is_not_cached_and_says_so(options, tmp_path, counted):
    data = dataset()
    if options.get("sampler") == "replacement":
        loader = DataLoader(data, batch_size=8, sampler=RandomSampler(data, replacement=True))
    elif options.get("sampler") == "weighted":
        loader = DataLoader(data, batch_size=8, sampler=WeightedRandomSampler(np.ones(N), N))
    else:
        loader = DataLoader(data, batch_size=7, shuffle=True, drop_last=True)
    with pytest.warns(UserWarning, match="Task 0 is a DataLoader that reads other examples at every pass"):
        row = embedder(memory=tmp_path).fit_transform([loader])
    assert np.isfinite(row).all() and len(counted) == 1
    assert cache_rows(tmp_path) == []  # a key that would never be found again is not written


# ------------------------------------------------------------------ one-shot streams
class OneShot(IterableDataset):
    """A stream over a generator: its second pass reads nothing."""

    def __init__(self, seed=0):
        X, y = features(seed)
        self.items = ((torch.from_numpy(x), int(label)) for x, label in zip(X, y))

    def __iter__(self):
        return self.items


class Shrinking(IterableDataset):
    """A stream that reads one example fewer at each pass."""

    def __init__(self):
        self.X, self.y = features()
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for x, label in list(zip(self.X, self.y))[: N - self.passes]:
            yield torch.from_numpy(x), int(label)


@pytest.mark.parametrize("memory", [False, True])
@pytest.mark.parametrize("as_loader", [False, True])
def test_a_stream_that_can_be_read_only_once_is_named_as_such(memory, as_loader, tmp_path):
    stream = OneShot()
    task = DataLoader(stream, batch_size=8) if as_loader else stream
    with pytest.raises(
        ValueError, match="task 0 can be read only once: its first pass read 3[0-9] examples"
    ) as caught:
        embedder(memory=tmp_path if memory else None).fit_transform([task])
    assert "empty" not in str(caught.value)


class OneShotWithLength(OneShot):
    """A one-shot stream that says its length: a loader over it knows the task's size."""

    def __len__(self):
        return N


class OneShotSampler(torch.utils.data.Sampler):
    """A sampler of the caller's over a generator: the loader's second pass reads nothing."""

    def __init__(self):
        self.indices = iter(range(N))

    def __iter__(self):
        return self.indices

    def __len__(self):
        return N


@pytest.mark.parametrize(
    "make_task",
    [
        lambda: OneShotWithLength(),
        lambda: DataLoader(OneShotWithLength(), batch_size=8),
        lambda: DataLoader(dataset(), batch_size=8, sampler=OneShotSampler()),
        lambda: DataLoader(dataset(), batch_sampler=BatchSampler(OneShotSampler(), 8, drop_last=False)),
    ],
    ids=["stream with a length", "loader over it", "one-shot sampler", "batch sampler over it"],
)
def test_a_one_shot_task_of_known_size_is_read_twice_and_refused(make_task):
    # Its size is known, so the features pass could keep its forwards for the Fisher pass and
    # read it once; its first batch went to inspecting the probe, so that pass alone would embed
    # 32 (39) of its 40 examples unseen.
    with pytest.raises(ValueError, match="task 0 can be read only once: its first pass read 3[0-9] examples"):
        embedder().fit_transform([make_task()])


def test_a_stream_that_changes_between_passes_is_refused():
    with pytest.raises(ValueError, match=r"task 0 read 3\d examples in one pass and 3\d in another"):
        embedder().fit_transform([Shrinking()])


def test_an_empty_stream_is_still_called_empty():
    class Empty(IterableDataset):
        def __iter__(self):
            return iter(())

    with pytest.raises(ValueError, match="task 0 is empty"):
        embedder(probe=torch.nn.Sequential(torch.nn.Linear(D, 8), torch.nn.ReLU())).fit_transform([Empty()])
