"""skip_layers: embed the filters from a block on, running the layers before it once per task."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec import _probes as probes


@pytest.fixture(scope="module")
def image_tasks():
    rng = np.random.RandomState(0)
    images = rng.uniform(size=(40, 3, 16, 16)).astype(np.float32)
    brightness = images.mean(axis=(1, 2, 3))
    red = images[:, 0].mean(axis=(1, 2)) - images[:, 1].mean(axis=(1, 2))
    return [(images, brightness > np.median(brightness)), (images, np.digitize(red, [-0.01, 0.0, 0.01]))]


def resnet18(**params):
    return FisherTaskEmbedder(probe="resnet18", probe_weights=None, batch_size=16, random_state=0, **params)


@pytest.mark.parametrize("method", ["exact", "montecarlo"])
def test_rows_are_the_full_embeddings_columns_from_the_block_on(image_tasks, method):
    full = resnet18(method=method)
    rows = full.fit_transform(image_tasks)
    skipped = resnet18(method=method, skip_layers="layer3")
    skipped_rows = skipped.fit_transform(image_tasks)
    names = full.get_feature_names_out()
    from_layer3 = np.array([name.startswith(("layer3.", "layer4.")) for name in names])
    assert list(skipped.get_feature_names_out()) == list(names[from_layer3])
    np.testing.assert_array_equal(skipped.trivial_embedding_, full.trivial_embedding_[from_layer3])
    np.testing.assert_allclose(skipped_rows, rows[:, from_layer3], rtol=2e-4, atol=1e-12)


def test_streamed_task_and_array_mode(image_tasks):
    images, labels = image_tasks[0]
    loader = DataLoader(TensorDataset(torch.from_numpy(images), torch.from_numpy(labels)), batch_size=16)
    embedder = resnet18(method="exact", skip_layers="layer4")
    np.testing.assert_allclose(
        embedder.fit_transform([loader])[0], embedder.fit_transform([(images, labels)])[0], rtol=1e-5
    )
    fitted = resnet18(method="exact", skip_layers="layer4").fit(images, labels)
    per_example = fitted.transform(images)
    assert per_example.shape == (len(images), len(fitted.trivial_embedding_))
    np.testing.assert_allclose(per_example.mean(axis=0), fitted.embedding_, rtol=1e-5)


def test_variational_runs_on_the_cached_activations(image_tasks):
    rows = resnet18(method="variational", variational_steps=4, skip_layers="layer4").fit_transform(
        image_tasks
    )
    assert np.all(np.isfinite(rows)) and np.all(rows > 0)


def test_split_probe_is_the_same_function():
    probe = probes.frozen_copy(probes.build_named_probe("resnet18", None))
    stem, tail = probes.split_probe(probe, "layer2")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(tail(stem(x)), probe(x))
    assert stem(x).shape == (2, 64, 8, 8)


@pytest.mark.parametrize(
    ("skip_layers", "error", "message"),
    [
        ("layer9", ValueError, r"not a layer the probe calls; its top-level blocks are \['conv1', 'bn1'"),
        ("layer3.0.conv2", ValueError, "does not cut the probe cleanly"),
        (
            3,
            TypeError,
            "The 'skip_layers' parameter of FisherTaskEmbedder must be an instance of 'str' or None",
        ),
    ],
)
def test_bad_skip_layers(image_tasks, skip_layers, error, message):
    with pytest.raises(error, match=message):
        resnet18(skip_layers=skip_layers).fit(image_tasks)


def test_untraceable_probe_is_a_clear_error():
    class DataDependent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            hidden = self.first(x)
            return self.second(hidden if hidden.sum() > 0 else -hidden)

    X = np.random.RandomState(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="needs a probe that torch.fx can trace"):
        FisherTaskEmbedder(probe=DataDependent(), skip_layers="second").fit([(X, X[:, 0] > 0)])
