"""The expert zoo: training experts, saving and loading them, and the brute-force error matrix."""

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedShuffleSplit
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_task2vec._utils import draw_seeds
from sklearn_task2vec.probes import build_named_probe
from sklearn_task2vec.selector import Model2VecSelector, model_selection_scorer
from sklearn_task2vec.task_library import TaskLibrary
from sklearn_task2vec.transferability import (
    SCORE_NAMES,
    TransferabilitySelector,
    gbc_score,
    h_score,
    knn_score,
    leep_score,
    logme_score,
    nce_score,
    nleep_score,
    parc_score,
    sfda_score,
    transrate_score,
)
from sklearn_task2vec.zoo import (
    Expert,
    error_matrix,
    load_expert,
    model_embeddings,
    save_expert,
    train_expert,
    transferability_scores,
)
from sklearn_task2vec.zoo._training import epoch_batches

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SIZE = 12


class SmallCNN(nn.Module):
    """A two-feature CNN: too few random features to solve a task, enough once trained on it."""

    def __init__(self, n_features=2, seed=0):
        super().__init__()
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, n_features),
        )
        torch.random.set_rng_state(generator_state)

    def forward(self, x):
        return self.body(x)


def stripes_task(n=60, seed=0):
    """Horizontal (0) or vertical (1) stripes of random period and phase, in noise."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(2, size=n)
    axis = np.arange(SIZE)
    images = rng.normal(scale=0.5, size=(n, 1, SIZE, SIZE)).astype(np.float32)
    for image, label in zip(images, labels):
        wave = np.sin(2 * np.pi * axis / rng.choice([3, 4]) + rng.uniform(0, 2 * np.pi))
        image[0] += wave[:, None] if label == 0 else wave[None, :]
    return images, labels


def spot_task(n=60, seed=1):
    """A bright spot in the left (0) or right (1) half, in noise."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(2, size=n)
    images = rng.normal(scale=0.5, size=(n, 1, SIZE, SIZE)).astype(np.float32)
    for image, label in zip(images, labels):
        row, column = rng.randint(2, SIZE - 2), rng.randint(1, SIZE // 2 - 1) + SIZE // 2 * label
        image[0, row - 1 : row + 2, column - 1 : column + 2] += 2.0
    return images, labels


TRAINING = {
    "epochs": 10,
    "head_epochs": 1,
    "learning_rate": 0.05,
    "batch_size": 16,
    "random_state": 0,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def zoo():
    """Two experts, each trained on one task, the random network they started from, and the tasks."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        tasks = TaskLibrary([stripes_task(), spot_task()], ["stripes", "spot"])
        base = SmallCNN()
        experts = [
            train_expert(base, task, task_name=name, name=f"{name} expert", **TRAINING)
            for task, name in zip(tasks, tasks.names)
        ]
    torch.set_num_threads(threads)  # the other test files keep torch's default
    return base, experts, tasks


def features(module, inputs):
    with torch.no_grad():
        return module.eval()(torch.as_tensor(inputs)).numpy()


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def test_training_fits_the_task_and_leaves_the_probe_and_torch_generator_alone(zoo):
    base, experts, _ = zoo
    untouched = SmallCNN()
    for name, tensor in base.state_dict().items():
        torch.testing.assert_close(tensor, untouched.state_dict()[name], rtol=0, atol=0)
    stripes = experts[0]
    assert stripes.trained_on == "stripes" and stripes.name == "stripes expert"
    assert stripes.info["loss"][-1] < stripes.info["loss"][0]
    assert stripes.info["accuracy"][-1] > 0.9
    assert not stripes.module.training
    assert not any(parameter.requires_grad for parameter in stripes.module.parameters())

    state = torch.random.get_rng_state()
    train_expert(base, stripes_task(20), epochs=1, head_epochs=1, random_state=0, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)


def test_training_is_deterministic_for_a_seed(zoo):
    base, experts, tasks = zoo
    again = train_expert(base, tasks[0], task_name="stripes", name="stripes expert", **TRAINING)
    for name, tensor in experts[0].module.state_dict().items():
        torch.testing.assert_close(again.module.state_dict()[name], tensor, rtol=0, atol=0)
    other_seed = train_expert(base, tasks[0], **{**TRAINING, "random_state": 1})
    assert not torch.equal(other_seed.module.body[0].weight, experts[0].module.body[0].weight)


def test_trainable_layers_fine_tunes_only_those_and_keeps_frozen_batchnorm_statistics():
    base = SmallCNN()
    expert = train_expert(base, stripes_task(30), trainable_layers=["body.8"], **{**TRAINING, "epochs": 2})
    trained, original = expert.module.state_dict(), base.state_dict()
    changed = {name for name in original if not torch.equal(trained[name], original[name])}
    assert changed == {"body.8.weight", "body.8.bias"}  # BatchNorm body.1's running statistics included

    with pytest.raises(ValueError, match="no module 'layer4'.*'body'"):
        train_expert(base, stripes_task(30), trainable_layers=["layer4"], epochs=1)


def test_balanced_epochs_draw_classes_uniformly_and_plain_epochs_shuffle():
    codes = np.array([0] * 90 + [1] * 10)
    rng = np.random.RandomState(0)
    drawn = np.concatenate(
        [torch.cat(epoch_batches(codes, 2, rng, 16, balanced=True)).numpy() for _ in range(20)]
    )
    assert 0.45 < np.mean(codes[drawn] == 1) < 0.55  # 10% of the examples, half of the draws
    shuffled = torch.cat(epoch_batches(codes, 2, rng, 16, balanced=False)).numpy()
    assert sorted(shuffled.tolist()) == list(range(100))
    # A last batch of one is dropped: BatchNorm cannot train on it with 1 x 1 maps.
    assert [len(batch) for batch in epoch_batches(np.arange(17) % 2, 2, rng, 8, balanced=False)] == [8, 8]


def test_a_named_probe_is_built_recorded_and_reloaded_from_its_name(tmp_path):
    rng = np.random.RandomState(0)
    images, labels = rng.normal(size=(12, 3, 16, 16)).astype(np.float32), np.arange(12) % 2
    expert = train_expert(
        "resnet18",
        (images, labels),
        probe_weights=None,
        epochs=1,
        head_epochs=0,
        batch_size=6,
        random_state=0,
    )
    assert expert.architecture == "resnet18"
    loaded = load_expert(save_expert(expert, tmp_path / "resnet"))
    np.testing.assert_array_equal(features(loaded.module, images), features(expert.module, images))
    # The weights file is also a probe_weights file of the embedder's named probes.
    probe = build_named_probe("resnet18", tmp_path / "resnet" / "weights.pt")
    np.testing.assert_array_equal(features(probe, images), features(expert.module, images))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": -1}, "'epochs' parameter of train_expert must be an int in the range \\[0, inf\\)"),
        (
            {"batch_size": True},
            "'batch_size' parameter of train_expert must be an int in the range \\[1, inf\\)",
        ),
        (
            {"learning_rate": 0.0},
            "'learning_rate' parameter of train_expert must be a float in the range \\(0",
        ),
        (
            {"momentum": float("inf")},
            "'momentum' parameter of train_expert must be a float in the range \\[0",
        ),
        ({"optimizer": "rmsprop"}, "'optimizer' parameter of train_expert must be a str among"),
        ({"trainable_layers": []}, "trainable_layers is empty"),
    ],
)
def test_bad_training_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_expert(SmallCNN(), stripes_task(10), **kwargs)


def test_a_task_with_one_class_cannot_train_an_expert():
    images, _ = stripes_task(10)
    with pytest.raises(ValueError, match="task 'flat' has a single class"):
        train_expert(SmallCNN(), (images, np.zeros(10)), task_name="flat")


# ------------------------------------------------------------------------------------------
# Saving and loading
# ------------------------------------------------------------------------------------------


def test_save_load_round_trip_gives_the_same_features_and_metadata(zoo, tmp_path):
    _, experts, tasks = zoo
    expert = experts[0]
    expert.task_embedding = np.array([0.1, 1 / 3, 2.5e-7])
    folder = save_expert(expert, tmp_path / "stripes")
    loaded = load_expert(folder, architecture=SmallCNN(seed=5))
    np.testing.assert_array_equal(features(loaded.module, tasks[0][0]), features(expert.module, tasks[0][0]))
    assert (loaded.name, loaded.trained_on, loaded.architecture) == ("stripes expert", "stripes", None)
    np.testing.assert_array_equal(loaded.task_embedding, expert.task_embedding)  # exact through JSON
    assert loaded.info == expert.info
    save_expert(loaded, folder, overwrite=True)  # replacing a saved expert
    assert load_expert(folder, architecture=SmallCNN()).name == "stripes expert"


def test_loading_refuses_missing_corrupt_replaced_and_mismatched_files(zoo, tmp_path):
    _, experts, _ = zoo
    folder = save_expert(experts[1], tmp_path / "spot")
    with pytest.raises(ValueError, match="not found"):
        load_expert(tmp_path / "nowhere", architecture=SmallCNN())
    with pytest.raises(ValueError, match="custom module|architecture=<an instance"):
        load_expert(folder)
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_expert(folder, architecture=SmallCNN(n_features=3))
    with pytest.raises(ValueError, match="do not fit the architecture ResNet"):
        load_expert(folder, architecture="resnet18")

    weights = folder / "weights.pt"
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="does not match the checksum"):
        load_expert(folder, architecture=SmallCNN())

    (folder / "expert.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_expert(folder, architecture=SmallCNN())
    (folder / "expert.json").unlink()
    with pytest.raises(ValueError, match="has no expert.json"):
        load_expert(folder, architecture=SmallCNN())


def signed(metadata):
    """``metadata`` with the checksum save_expert gives it: the SHA-256 of its compact JSON
    with sorted keys, without the checksum entry."""
    import hashlib
    import json

    content = {key: value for key, value in metadata.items() if key != "metadata_sha256"}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return {**content, "metadata_sha256": hashlib.sha256(text.encode()).hexdigest()}


class _Payload:
    """Pickles to a call that would create a file: it must never run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_loading_never_runs_code_from_the_weights_file(zoo, tmp_path):
    import hashlib
    import json

    _, experts, _ = zoo
    folder = save_expert(experts[0], tmp_path / "expert")
    marker = tmp_path / "code-ran"
    with open(folder / "weights.pt", "wb") as file:
        pickle.dump({"body.0.weight": _Payload(marker)}, file, protocol=2)  # torch.save's protocol
    metadata = json.loads((folder / "expert.json").read_text())  # even with a matching checksum
    metadata["weights_sha256"] = hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    (folder / "expert.json").write_text(json.dumps(signed(metadata)))
    with pytest.raises(
        ValueError, match="holds Python objects besides tensors, which are never loaded"
    ) as raised:
        load_expert(folder, architecture=SmallCNN())
    assert not marker.exists()
    assert "weights_only=False" not in str(raised.value)


def test_info_that_json_cannot_hold_is_refused(tmp_path):
    with pytest.raises(ValueError, match="JSON cannot hold"):
        save_expert(Expert(nn.Linear(2, 2), "odd", info={"when": object()}), tmp_path / "odd")


def test_model_embeddings_stack_known_rows_and_zeros():
    experts = [Expert(nn.Identity(), "a"), Expert(nn.Identity(), "b", task_embedding=[1.0, 2.0])]
    np.testing.assert_array_equal(model_embeddings(experts), [[0.0, 0.0], [1.0, 2.0]])
    assert model_embeddings(experts[:1]) is None
    with pytest.raises(ValueError, match="different lengths"):
        model_embeddings([*experts, Expert(nn.Identity(), "c", task_embedding=[1.0])])
    with pytest.raises(ValueError, match="non-negative"):
        Expert(nn.Identity(), "d", task_embedding=[-1.0])


# ------------------------------------------------------------------------------------------
# The error matrix
# ------------------------------------------------------------------------------------------


def test_each_expert_is_best_on_its_own_task_and_beats_the_random_network(zoo):
    base, experts, tasks = zoo
    random_network = Expert(base, "random")
    errors = error_matrix([*experts, random_network], tasks, random_state=0)
    assert errors.shape == (2, 3)
    assert np.all((errors >= 0) & (errors <= 1))
    assert errors[0, 0] < errors[0, 2] and errors[1, 1] < errors[1, 2]  # training helped
    np.testing.assert_array_equal(errors[:, :2].argmin(axis=1), [0, 1])  # its own task's expert is best
    # The test splits hold 18 examples: every error is a whole number of them.
    np.testing.assert_allclose(errors * 18, np.round(errors * 18), atol=1e-9)


def test_error_matrix_is_deterministic_and_shares_each_task_split_between_experts(zoo):
    _, experts, tasks = zoo
    first = error_matrix(experts, tasks, random_state=0)
    np.testing.assert_array_equal(error_matrix(experts, tasks, random_state=0), first)
    # The same expert twice gives the same column: both saw the same split.
    twice = error_matrix([experts[0], experts[0]], tasks, random_state=3)
    np.testing.assert_array_equal(twice[:, 0], twice[:, 1])


def test_error_matrix_feeds_the_selector_and_its_scorer(zoo):
    _, experts, tasks = zoo
    errors = error_matrix(experts, tasks, random_state=0)
    embeddings = np.array([[1.0, 0.1], [0.1, 1.0]])  # stand-ins for the tasks' TASK2VEC rows
    for expert, row in zip(experts, embeddings):
        expert.task_embedding = row
    selector = Model2VecSelector(max_iter=0, model_embeddings=model_embeddings(experts))
    selector.fit(embeddings, errors.argmin(axis=1), errors=errors)
    assert model_selection_scorer(selector, embeddings, errors=errors) == 0.0  # picks the oracle
    for expert in experts:
        expert.task_embedding = None


class CountingCNN(SmallCNN):
    calls = 0

    def forward(self, x):
        CountingCNN.calls += 1
        return super().forward(x)


def test_disk_cache_reuses_features_by_content_and_recomputes_damaged_files(tmp_path):
    expert = Expert(CountingCNN(), "counting")
    tasks = [stripes_task(30), spot_task(30)]
    CountingCNN.calls = 0
    fresh = error_matrix([expert], tasks, random_state=0)
    uncached_calls = CountingCNN.calls
    assert uncached_calls > 0

    cached = error_matrix([expert], tasks, random_state=0, cache=tmp_path)
    CountingCNN.calls = 0
    again = error_matrix(
        [expert],
        [tuple(np.copy(part) for part in task) for task in tasks],
        random_state=0,
        cache=joblib.Memory(tmp_path, verbose=0),
    )
    assert CountingCNN.calls == 0  # equal content, other arrays: read from disk
    np.testing.assert_array_equal(cached, fresh)
    np.testing.assert_array_equal(again, fresh)

    changed = Expert(CountingCNN(seed=1), "counting")  # other weights: another key
    error_matrix([changed], tasks, random_state=0, cache=tmp_path)
    assert CountingCNN.calls == uncached_calls

    stored = sorted(tmp_path.rglob("*.npz"))
    assert len(stored) == 4
    stored[0].write_bytes(b"damaged")
    CountingCNN.calls = 0
    with pytest.warns(UserWarning, match="corrupted"):
        repaired = error_matrix([expert, changed], tasks, random_state=0, cache=tmp_path)
    assert 0 < CountingCNN.calls < uncached_calls * 2  # only the damaged pair was recomputed
    np.testing.assert_array_equal(repaired[:, 0], fresh[:, 0])


def test_a_task_listed_twice_is_read_once_per_expert():
    expert = Expert(CountingCNN(), "counting")
    task = stripes_task(30)
    CountingCNN.calls = 0
    error_matrix([expert], [task], batch_size=64)
    once = CountingCNN.calls
    CountingCNN.calls = 0
    error_matrix([expert], [task, task], batch_size=64)
    assert CountingCNN.calls == once


def test_a_dataset_task_gives_the_same_errors_as_its_arrays(zoo):
    _, experts, tasks = zoo
    images, labels = tasks[0]
    dataset = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    np.testing.assert_array_equal(
        error_matrix(experts, [dataset], random_state=0), error_matrix(experts, [tasks[0]], random_state=0)
    )
    shuffling = DataLoader(dataset, batch_size=16, shuffle=True)
    with pytest.raises(ValueError, match="another order"):
        error_matrix(experts, [shuffling], random_state=0)


def test_bad_inputs_are_named(zoo):
    _, experts, tasks = zoo
    images, labels = tasks[0]
    with pytest.raises(ValueError, match="experts is empty"):
        error_matrix([], tasks)
    with pytest.raises(ValueError, match="tasks is empty"):
        error_matrix(experts, [])
    with pytest.raises(TypeError, match="not an Expert"):
        error_matrix([experts[0].module], tasks)
    with pytest.raises(TypeError, match="one \\(inputs, labels\\) pair"):
        error_matrix(experts, tasks[0])
    with pytest.raises(ValueError, match="test_size"):
        error_matrix(experts, tasks, test_size=1.5)
    with pytest.raises(ValueError, match="task 1 \\('flat'\\) has a single class"):
        error_matrix(experts, [tasks[0], (images, np.zeros(len(labels)))], task_names=["ok", "flat"])
    lonely = labels.copy()
    lonely[0] = 7
    with pytest.raises(ValueError, match="task 0: class 7 has a single example"):
        error_matrix(experts, [(images, lonely)])
    with pytest.raises(
        ValueError, match="task 0 \\('small'\\) has 6 examples.*have 4 and 2.*each of its 3 classes"
    ):
        error_matrix(experts, TaskLibrary([(images[:6], np.array([0, 1, 2, 0, 1, 2]))], ["small"]))
    flat_inputs = images.reshape(len(images), -1)
    with pytest.raises(ValueError, match="expert 'stripes expert': task 0 \\('vectors'\\): the probe cannot"):
        error_matrix(experts, [(flat_inputs, labels)], task_names=["vectors"])
    with pytest.raises(ValueError, match="task_names has 1 names for 2 tasks"):
        error_matrix(experts, list(tasks), task_names=["one"])


def test_non_finite_features_are_reported_with_expert_and_task():
    class Broken(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"))

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="expert 'broken' on task 0: .*NaN"):
            error_matrix([Expert(Broken(), "broken")], [stripes_task(20)])


# ------------------------------------------------------------------------------------------
# Source heads, the metadata checksum and damaged metadata
# ------------------------------------------------------------------------------------------


def test_an_expert_keeps_the_head_it_was_trained_with(zoo):
    _, experts, tasks = zoo
    for expert in experts:
        assert isinstance(expert.head, nn.Linear) and expert.head.out_features == 2
        assert not any(parameter.requires_grad for parameter in expert.head.parameters())
    images, labels = tasks[0]  # the stripes expert learns its task (training accuracy 1)
    with torch.no_grad():
        logits = experts[0].head(torch.from_numpy(features(experts[0].module, images)))
    assert np.mean(logits.argmax(dim=1).numpy() == labels) > 0.9  # its head classifies it


def test_the_head_survives_save_and_load_and_is_dropped_when_gone(zoo, tmp_path):
    _, experts, tasks = zoo
    folder = save_expert(experts[0], tmp_path / "stripes")
    loaded = load_expert(folder, architecture=SmallCNN())
    inputs = torch.from_numpy(features(experts[0].module, tasks[0][0]))
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.head(inputs).numpy(), experts[0].head(inputs).numpy())
    headless = Expert(experts[0].module, "headless")
    save_expert(headless, folder, overwrite=True)  # replaces the expert with a head
    assert not (folder / "head.pt").exists()
    assert load_expert(folder, architecture=SmallCNN()).head is None
    with pytest.raises(ValueError, match="holds a torch.nn.Linear head"):
        save_expert(Expert(experts[0].module, "deep head", head=nn.Sequential(nn.Linear(2, 2))), folder)
    with pytest.raises(TypeError, match="head must be a torch.nn.Module"):
        Expert(experts[0].module, "bad", head="linear")


def _edit_metadata(folder, edit, *, sign=True):
    import json

    metadata = json.loads((folder / "expert.json").read_text())
    edit(metadata)
    (folder / "expert.json").write_text(json.dumps(signed(metadata) if sign else metadata))


def test_an_edited_expert_json_is_refused(zoo, tmp_path):
    _, experts, _ = zoo
    expert = Expert(experts[0].module, "embedded", task_embedding=[0.5, 0.25], head=experts[0].head)
    folder = save_expert(expert, tmp_path / "expert")

    def change_embedding(metadata):
        metadata["task_embedding"][0] = 0.75

    _edit_metadata(folder, change_embedding, sign=False)
    with pytest.raises(ValueError, match="expert.json does not match its checksum"):
        load_expert(folder, architecture=SmallCNN())
    save_expert(expert, folder, overwrite=True)
    _edit_metadata(folder, lambda metadata: metadata.update(head_sha256="0" * 64))  # signed anew
    with pytest.raises(ValueError, match="head.pt does not match the checksum"):
        load_expert(folder, architecture=SmallCNN())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda metadata: metadata.pop("name"), "has no expert name"),
        (lambda metadata: metadata.update(name=7), "has no expert name"),
        (lambda metadata: metadata.update(task_embedding=[-1.0, 2.0]), "non-negative"),
        (lambda metadata: metadata.update(task_embedding="big"), "task_embedding"),
        (lambda metadata: metadata.update(trained_on=5), "trained_on must be a string"),
        (lambda metadata: metadata.update(info=[1, 2]), "info must be a dict"),
        (lambda metadata: metadata.update(head={"in_features": 2}), "not a Linear layer's shape"),
        (
            lambda metadata: metadata.update(head={"in_features": 3, "out_features": 2, "bias": True}),
            "does not fit",
        ),
    ],
)
def test_bad_values_in_a_signed_expert_json_are_named_with_the_folder(zoo, tmp_path, edit, message):
    _, experts, _ = zoo
    folder = save_expert(experts[0], tmp_path / "odd-expert")
    _edit_metadata(folder, edit)
    with pytest.raises(ValueError, match=message) as caught:
        load_expert(folder, architecture=SmallCNN())
    assert "odd-expert" in str(caught.value)


def test_deeply_nested_metadata_is_refused_clearly(zoo, tmp_path):
    _, experts, _ = zoo
    folder = save_expert(experts[0], tmp_path / "nested")
    (folder / "expert.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply") as caught:
        load_expert(folder, architecture=SmallCNN())
    assert "nested" in str(caught.value)


def test_a_format_1_expert_loads_with_a_warning_and_no_head(zoo, tmp_path):
    import json

    _, experts, tasks = zoo
    folder = save_expert(experts[1], tmp_path / "old")
    metadata = json.loads((folder / "expert.json").read_text())
    for key in ("metadata_sha256", "head", "head_sha256"):
        metadata.pop(key)
    metadata["format_version"] = 1
    (folder / "expert.json").write_text(json.dumps(metadata))
    (folder / "head.pt").unlink()
    with pytest.warns(UserWarning, match="format version 1"):
        old = load_expert(folder, architecture=SmallCNN())
    assert old.head is None and old.name == experts[1].name
    with pytest.raises(ValueError, match=r"source head.*'spot expert'"):
        transferability_scores([experts[0], old], tasks, scores=["leep"], random_state=0)
    logme = transferability_scores([old], tasks, scores=["logme"], random_state=0)["logme"]
    assert logme.shape == (2, 1) and np.all(np.isfinite(logme))


# ------------------------------------------------------------------------------------------
# Transferability scores of the zoo
# ------------------------------------------------------------------------------------------


def test_every_score_prefers_each_tasks_own_expert_and_the_selector_picks_the_oracle(zoo):
    _, experts, tasks = zoo
    errors = error_matrix(experts, tasks, random_state=0)
    scores = transferability_scores(experts, tasks, random_state=0)
    assert sorted(scores) == ["h_score", "leep", "logme", "nce"]
    names = [expert.name for expert in experts]
    for name, matrix in scores.items():
        assert matrix.shape == (2, 2)
        assert matrix[0, 0] > matrix[0, 1], name  # the stripes expert on stripes
    # The features' scores find both oracles; the spot expert's head barely learned its task
    # (training accuracy near 0.6), so LEEP and NCE, which read the head, are not asked to.
    for name in ("logme", "h_score"):
        selector = TransferabilitySelector(experts=names).fit(scores[name])
        assert model_selection_scorer(selector, scores[name], errors=errors) == 0.0, name
    assert np.all(scores["leep"] <= 0) and np.all(scores["nce"] <= 0)


def test_every_score_by_name_is_its_function_on_the_training_split_features(zoo):
    _, experts, tasks = zoo
    scores = transferability_scores(experts, tasks, scores=list(SCORE_NAMES), random_state=0)
    assert sorted(scores) == sorted(SCORE_NAMES)
    seeds = draw_seeds(0, len(tasks))  # the tasks' seeds: their splits' and N-LEEP's
    for row, (inputs, labels) in enumerate(tasks):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=0.3, random_state=seeds[row])
        train, _ = next(splitter.split(np.zeros((len(labels), 1)), labels))
        for column, expert in enumerate(experts):
            own, y = features(expert.module, inputs[train]), labels[train]
            with torch.no_grad():
                probabilities = torch.softmax(expert.head(torch.as_tensor(own)).double(), dim=1).numpy()
            direct = {
                "logme": logme_score(own, y),
                "leep": leep_score(probabilities, y),
                "nce": nce_score(probabilities.argmax(axis=1), y),
                "h_score": h_score(own, y),
                "knn": knn_score(own, y),
                "sfda": sfda_score(own, y),
                "nleep": nleep_score(own, y, random_state=seeds[row]),
                "transrate": transrate_score(own, y),
                "gbc": gbc_score(own, y),
                "parc": parc_score(own, y),
            }
            for name in SCORE_NAMES:
                assert scores[name][row, column] == pytest.approx(direct[name], rel=1e-5, abs=1e-8), name


def test_a_score_that_refuses_a_task_names_the_expert_and_the_task(zoo):
    _, experts, tasks = zoo
    with pytest.raises(
        ValueError, match=r"expert 'stripes expert' on task 0 \('stripes'\): knn_score: n_neighbors"
    ):
        # test_size=0.7 leaves 18 of the 60 examples for scoring: too few for 20 neighbours.
        transferability_scores(experts, tasks, scores=["knn"], test_size=0.7, random_state=0)


def test_scores_use_the_error_matrix_features_from_the_cache_and_the_training_split(tmp_path):
    expert = Expert(CountingCNN(), "counting", head=nn.Linear(2, 3))
    tasks = [stripes_task(40), spot_task(40)]
    fresh = transferability_scores([expert], tasks, random_state=0)
    error_matrix([expert], tasks, random_state=0, cache=tmp_path)
    CountingCNN.calls = 0
    cached = transferability_scores([expert], tasks, random_state=0, cache=tmp_path)
    assert CountingCNN.calls == 0  # no forward pass: the error matrix's features
    for name in fresh:
        np.testing.assert_allclose(cached[name], fresh[name], rtol=1e-12)
    # Scored on the training split only: another split gives other scores.
    other = transferability_scores([expert], tasks, scores=["logme"], random_state=1)["logme"]
    assert not np.allclose(other, fresh["logme"])


def test_bad_score_requests_are_refused(zoo):
    _, experts, tasks = zoo
    for scores in (["logme", "logme"], [], ["kendall"]):
        with pytest.raises(ValueError, match="distinct names"):
            transferability_scores(experts, tasks, scores=scores)
    wrong_head = Expert(experts[0].module, "wrong head", head=nn.Linear(5, 2))
    with pytest.raises(ValueError, match="head does not take its 2 features"):
        transferability_scores([wrong_head], tasks, scores=["nce"], random_state=0)
