"""FisherTaskEmbedder as a scikit-learn transformer and on torchvision probes."""

import os
import pickle
import sys
import warnings

import numpy as np
import pytest
import torch
import torchvision
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.probes import RandomReLUProbe


@parametrize_with_checks([FisherTaskEmbedder()])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def feature_tasks(seed=0, n=120, n_features=4):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, n_features))
    return X, [
        (X, X[:, 0] > 0),
        (X, X[:, 1] > 0),
        (X, np.digitize(X[:, 0] + X[:, 2], [-1.5, -0.5, 0.5, 1.5])),
        (X, np.digitize(X[:, 3], np.linspace(-1.5, 1.5, 9))),
    ]


def test_one_embedding_size_whatever_the_number_of_classes():
    X, tasks = feature_tasks()
    embeddings = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    assert [len(np.unique(labels)) for _, labels in tasks] == [2, 2, 5, 10]
    assert embeddings.shape == (4, 64)
    assert embeddings.dtype == np.float64
    assert np.all(np.isfinite(embeddings)) and np.all(embeddings >= 0)
    assert len({tuple(row) for row in embeddings}) == 4


@pytest.mark.parametrize("method", ["exact", "auto"])
def test_unchanged_under_permuted_or_renamed_labels(method):
    rng = np.random.RandomState(1)
    X = rng.normal(size=(90, 3))
    labels = np.digitize(X[:, 0], [-0.5, 0.5])  # three classes
    permuted = np.array([2, 0, 1])[labels]
    renamed = np.array(["cat", "ant", "bee"])[labels]
    as_tensor = torch.as_tensor(permuted)
    embedder = FisherTaskEmbedder(method=method, random_state=0)
    rows = embedder.fit_transform([(X, labels), (X, permuted), (X, renamed), (torch.as_tensor(X), as_tensor)])
    # Equal up to where L-BFGS stops on the (flat) optimum of each head: ~1e-5 relative.
    for row in rows[1:]:
        assert np.linalg.norm(row - rows[0]) < 1e-4 * np.linalg.norm(rows[0])


def test_a_tasks_row_depends_on_the_task_and_random_state_only():
    X, tasks = feature_tasks()
    rows = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    reordered = FisherTaskEmbedder(random_state=0).fit_transform([tasks[2], tasks[0]])
    np.testing.assert_array_equal(reordered, rows[[2, 0]])
    single = FisherTaskEmbedder(random_state=0).fit(*tasks[2])
    np.testing.assert_allclose(single.embedding_, rows[2], rtol=1e-12)
    np.testing.assert_allclose(single.transform(X).mean(0), single.embedding_, rtol=1e-12)


def test_deterministic_for_a_fixed_random_state():
    _, tasks = feature_tasks()
    first = FisherTaskEmbedder(method="montecarlo", random_state=7).fit_transform(tasks)
    second = FisherTaskEmbedder(method="montecarlo", random_state=7).fit_transform(tasks)
    other = FisherTaskEmbedder(method="montecarlo", random_state=8).fit_transform(tasks)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


@pytest.mark.slow
def test_parallel_tasks_equal_sequential():
    _, tasks = feature_tasks()
    sequential = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    parallel = FisherTaskEmbedder(random_state=0, n_jobs=2).fit_transform(tasks)
    np.testing.assert_allclose(parallel, sequential, rtol=1e-12)


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_single_class_task_is_the_trivial_embedding(n_jobs):
    """A one-class model's Fisher is 0: the point estimates' trivial row."""
    X, tasks = feature_tasks()
    embedder = FisherTaskEmbedder(random_state=0, n_jobs=n_jobs)
    with pytest.warns(UserWarning, match="Task 1 has a single class"):
        rows = embedder.fit_transform([tasks[0], (X, np.full(len(X), "only"))])
    np.testing.assert_array_equal(rows[1], np.zeros_like(embedder.trivial_embedding_))
    weight = embedder.probe_.features.weight.detach().numpy()
    np.testing.assert_allclose(embedder.trivial_embedding_, 1.0 / np.mean(weight**2))


def test_module_probe_is_not_mutated_and_feature_names_follow_it():
    probe = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 3))
    before = {key: value.clone() for key, value in probe.state_dict().items()}
    X, tasks = feature_tasks()
    embedder = FisherTaskEmbedder(probe=probe, random_state=0)
    rows = embedder.fit_transform(tasks)
    assert rows.shape == (4, 9)
    assert probe.training and probe[1].inplace
    assert all(parameter.requires_grad for parameter in probe.parameters())
    for key, value in probe.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert list(embedder.get_feature_names_out()) == [f"0:{i}" for i in range(6)] + [
        f"2:{i}" for i in range(3)
    ]
    cloned = clone(embedder).probe  # clone deep-copies the module, as for any parameter
    assert cloned is not probe
    torch.testing.assert_close(cloned.state_dict(), probe.state_dict())


def test_in_a_pipeline_with_meta_labels_and_pickled():
    X, tasks = feature_tasks()
    meta_labels = np.array([0, 0, 1, 1])
    pipeline = make_pipeline(FisherTaskEmbedder(random_state=0), LogisticRegression())
    pipeline.fit(tasks, meta_labels)
    predictions = pipeline.predict(tasks)
    restored = pickle.loads(pickle.dumps(pipeline))
    np.testing.assert_array_equal(restored.predict(tasks), predictions)
    np.testing.assert_array_equal(restored[0].transform(tasks), pipeline[0].transform(tasks))


def test_set_output_pandas_names_columns_by_filter():
    pd = pytest.importorskip("pandas")
    X, tasks = feature_tasks()
    frame = FisherTaskEmbedder(random_state=0).set_output(transform="pandas").fit_transform(tasks)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns[:2]) == ["features:0", "features:1"]


# ---------------------------------------------------------------- torchvision probes
def image_tasks(n=12, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=generator)
    brightness = images.mean((1, 2, 3))
    return [
        (images, (brightness > brightness.median()).long()),
        (images, torch.arange(n) % 3),
    ]


def resnet18_filter_count():
    model = torchvision.models.resnet18(weights=None)
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet18_probe_embeds_image_tasks():
    embedder = FisherTaskEmbedder(probe="resnet18", probe_weights=None, batch_size=8, random_state=0)
    rows = embedder.fit_transform(image_tasks())
    n_filters = resnet18_filter_count()  # the classifier is dropped: convolutions only
    assert rows.shape == (2, n_filters)
    assert np.all(np.isfinite(rows)) and np.all(rows >= 0) and rows.sum() > 0
    names = embedder.get_feature_names_out()
    assert names[0] == "conv1:0" and names[-1] == "layer4.1.conv2:511"
    assert "layer2.0.downsample.0:0" in set(names)
    assert isinstance(embedder.probe_.fc, nn.Identity)


def test_auto_probe_for_images_is_resnet34(monkeypatch):
    built = []
    original = torchvision.models.get_model

    def spy(name, **kwargs):
        built.append(name)
        return original(name, **kwargs)

    monkeypatch.setattr(torchvision.models, "get_model", spy)
    FisherTaskEmbedder(probe_weights=None).fit(image_tasks())
    assert built == ["resnet34"]


@pytest.mark.slow
@pytest.mark.parametrize("name, classifier", [("densenet121", "classifier"), ("vgg13_bn", "classifier.6")])
def test_named_probes_drop_their_classifier(name, classifier):
    embedder = FisherTaskEmbedder(probe=name, probe_weights=None).fit(image_tasks(n=2))
    assert isinstance(embedder.probe_.get_submodule(classifier), nn.Identity)
    names = embedder.get_feature_names_out()
    assert len(names) == len(embedder.trivial_embedding_)
    assert not any(name.startswith(f"{classifier}:") for name in names)


def _random_resnet18_state(seed):
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.mark.parametrize("with_classifier", [True, False])
def test_weights_from_a_local_state_dict(tmp_path, with_classifier):
    state = _random_resnet18_state(3)
    if not with_classifier:
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    path = tmp_path / "probe.pt"
    torch.save(state, path)
    embedder = FisherTaskEmbedder(probe="resnet18", probe_weights=str(path)).fit(image_tasks(n=2))
    torch.testing.assert_close(embedder.probe_.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(embedder.probe_.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_imagenet_weights_load_from_the_torch_hub_cache_without_network(tmp_path, monkeypatch):
    """The real "imagenet" path: torchvision's weights enum and torch.hub's checkpoint cache."""
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = _random_resnet18_state(4)
    torch.save(state, checkpoints / os.path.basename(weights.url))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    embedder = FisherTaskEmbedder(probe="resnet18").fit(image_tasks(n=2))
    torch.testing.assert_close(embedder.probe_.conv1.weight, state["conv1.weight"])
    assert embedder.trivial_embedding_[0] == pytest.approx(
        1 / state["conv1.weight"].double().pow(2).mean().item()
    )


def test_random_relu_probe_is_the_papers_on_two_inputs():
    probe = RandomReLUProbe(2, n_hidden=10, seed=0)
    weight = probe.features.weight.detach().numpy()
    bias = probe.features.bias.detach().numpy()
    assert np.all(np.abs(weight) <= 0.5) and np.all(np.abs(bias) <= 1.0)
    assert np.abs(weight).max() > 0.3 and np.abs(bias).max() > 0.6


def test_verbose_progress_does_not_change_results(capsys):
    _, tasks = feature_tasks()
    quiet = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm may warn about the missing notebook frontend
        loud = FisherTaskEmbedder(random_state=0, verbose=1).fit_transform(tasks)
    np.testing.assert_array_equal(loud, quiet)
    assert "tasks" in capsys.readouterr().err


class _Terminal:
    """A stand-in standard error that is a terminal, keeping what is written."""

    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_by_default_only_on_a_terminal(terminal, monkeypatch, capsys):
    """verbose="auto" (the default) shows the tasks' and phases' bars when standard error is a
    terminal and nothing in a log or pipe; verbose=0 silences a terminal too."""
    _, tasks = feature_tasks()
    stream = _Terminal()
    if terminal:
        monkeypatch.setattr(sys, "stderr", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm may warn about the missing notebook frontend
        rows = FisherTaskEmbedder(random_state=0).fit_transform(tasks)
        shown = "".join(stream.text) + capsys.readouterr().err
        assert ("tasks" in shown) == terminal
        assert ("task 0: Fisher" in shown) == terminal
        silent = _Terminal()
        monkeypatch.setattr(sys, "stderr", silent)
        quiet = FisherTaskEmbedder(random_state=0, verbose=0).fit_transform(tasks)
    assert "".join(silent.text) == ""
    np.testing.assert_array_equal(rows, quiet)


def test_max_samples_embeds_a_random_subset_of_each_task():
    from sklearn_task2vec._pipeline import embedding_seeds

    X, tasks = feature_tasks()
    full = FisherTaskEmbedder(random_state=0).fit_transform(tasks[:2])
    np.testing.assert_array_equal(
        FisherTaskEmbedder(random_state=0, max_samples=500).fit_transform(tasks[:2]), full
    )
    subset = FisherTaskEmbedder(random_state=0, max_samples=40).fit_transform(tasks[:2])
    assert not np.allclose(subset, full)
    keep = np.sort(np.random.RandomState(embedding_seeds(0).sampling).choice(len(X), 40, replace=False))
    expected = FisherTaskEmbedder(random_state=0).fit_transform(
        [(X[keep], labels[keep]) for _, labels in tasks[:2]]
    )
    np.testing.assert_array_equal(subset, expected)


def test_trivial_normalised_output_keeps_symmetric_distances():
    from sklearn_task2vec.distances import pairwise_task_distances

    X, tasks = feature_tasks()
    single_class = (X, np.zeros(len(X)))
    raw_embedder = FisherTaskEmbedder(random_state=0)
    with pytest.warns(UserWarning, match="single class"):
        raw = raw_embedder.fit_transform([*tasks, single_class])
        normalised = FisherTaskEmbedder(random_state=0, normalize="trivial").fit_transform(
            [*tasks, single_class]
        )
    np.testing.assert_allclose(normalised, raw / raw_embedder.trivial_embedding_)
    np.testing.assert_array_equal(normalised[-1], np.zeros(raw.shape[1]))
    np.testing.assert_allclose(pairwise_task_distances(normalised), pairwise_task_distances(raw), atol=1e-12)
    np.testing.assert_allclose(
        pairwise_task_distances(normalised, kind="asymmetric"),
        pairwise_task_distances(raw, kind="asymmetric", trivial=raw_embedder.trivial_embedding_),
        atol=1e-12,
    )
    one_task = FisherTaskEmbedder(random_state=0, normalize="trivial").fit(*tasks[0])
    np.testing.assert_allclose(one_task.transform(X).mean(0), one_task.embedding_)
    np.testing.assert_allclose(one_task.embedding_, normalised[0])


def test_random_state_seeds_a_randomly_initialised_named_probe():
    """probe_weights=None: the torchvision initialisation follows random_state, and torch's
    global generator is left alone."""
    X = np.zeros((2, 3, 8, 8), dtype=np.float32)
    tasks = [(X, [0, 1])]
    before = torch.random.get_rng_state()
    first = FisherTaskEmbedder(probe="resnet18", probe_weights=None, random_state=0).fit(tasks).probe_
    assert torch.equal(torch.random.get_rng_state(), before)
    again = FisherTaskEmbedder(probe="resnet18", probe_weights=None, random_state=0).fit(tasks).probe_
    other = FisherTaskEmbedder(probe="resnet18", probe_weights=None, random_state=1).fit(tasks).probe_
    assert torch.equal(first.conv1.weight, again.conv1.weight)
    assert not torch.equal(first.conv1.weight, other.conv1.weight)
