"""Task discovery: the task-ness and agreement scores, the search and its diversity penalty."""

import math
import sys

import hypothesis.extra.numpy as hnp
import joblib
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder, discovery
from sklearn_task2vec._utils import draw_seeds
from sklearn_task2vec.discovery import (
    TaskDiscovery,
    agreement_score,
    decode_labelling,
    label_similarity,
    learnability_study,
    small_cnn,
    small_mlp,
    taskness_score,
)
from sklearn_task2vec.distances import symmetric_distance

FAST = {"n_steps": 30}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny networks: threads gain nothing and cost a lot on a busy machine."""


def features(n=80, d=4, seed=0):
    return np.random.RandomState(seed).normal(size=(n, d)).astype(np.float32)


def random_labellings(labels, n, seed=1):
    rng = np.random.RandomState(seed)
    return np.stack([rng.permutation(labels) for _ in range(n)])


# ---------------------------------------------------------------------------- scores
def test_taskness_is_repeatable_and_a_stack_scores_as_each_alone():
    X = features()
    y = (X[:, 0] > 0.5).astype(int)
    stack = np.vstack([y, random_labellings(y, 3)])
    batched = taskness_score(X, stack, random_state=0, **FAST)
    alone = [taskness_score(X, row, random_state=0, **FAST) for row in stack]
    assert batched.shape == (4,)
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    assert taskness_score(X, y, random_state=0, **FAST) == alone[0]


def test_chunked_stacks_score_the_same(monkeypatch):
    X = features(n=40)
    stack = random_labellings((np.arange(40) < 8).astype(int), 5)
    whole = taskness_score(X, stack, random_state=0, n_steps=10)
    monkeypatch.setattr(discovery, "MAX_STACKED_MODELS", 2)
    np.testing.assert_allclose(taskness_score(X, stack, random_state=0, n_steps=10), whole, atol=1e-6)


def test_a_real_task_scores_above_random_labellings():
    X = features(n=100)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0.6).astype(int)
    noise = random_labellings(y, 6)
    real = taskness_score(X, y, random_state=0, n_steps=60)
    random = taskness_score(X, noise, random_state=0, n_steps=60)
    assert real > 0.3
    assert real > random.max() + 0.2
    assert np.all(random < 0.2)

    balanced = (X[:, 0] > 0).astype(int)
    agree_real = agreement_score(X, balanced, random_state=0, n_steps=60, n_seeds=3)
    agree_random = agreement_score(X, random_labellings(balanced, 4), random_state=0, n_steps=60, n_seeds=3)
    assert agree_real > agree_random.mean()
    assert 0.0 <= agree_random.min() and agree_real <= 1.0


def test_scores_are_complement_invariant_and_take_any_two_labels():
    X = features()
    y = (X[:, 1] > 0.3).astype(int)
    assert taskness_score(X, y, random_state=3, **FAST) == taskness_score(X, 1 - y, random_state=3, **FAST)
    named = np.where(y == 1, "cat", "dog")
    assert taskness_score(X, named, random_state=3, **FAST) == taskness_score(X, y, random_state=3, **FAST)
    assert agreement_score(X, y, random_state=3, **FAST) == agreement_score(X, 1 - y, random_state=3, **FAST)
    assert label_similarity(y, 1 - y) == pytest.approx(1.0)
    assert label_similarity(y, y) == pytest.approx(1.0)


def test_taskness_baselines_order_the_scores():
    # b is larger for the blind baseline (ln 2) than for the prior's at a 1:4 ratio, so the
    # same network scores higher against it; "mean" lies in between.
    X = features()
    y = (X[:, 0] > 0.8).astype(int)
    prior, mean, blind = (
        taskness_score(X, y, baseline=name, random_state=0, **FAST) for name in ("prior", "mean", "blind")
    )
    assert prior < mean < blind


def test_scikit_learn_classifier_scores():
    X = features(n=100)
    y = (X[:, 0] > 0.5).astype(int)
    noise = random_labellings(y, 4)
    model = LogisticRegression()
    real = taskness_score(X, y, estimator=model, random_state=0)
    random = taskness_score(X, noise, estimator=model, random_state=0)
    assert real > 0.3 and real > random.max() + 0.2
    sgd_like = LogisticRegression(solver="saga", max_iter=20, random_state=0)
    with pytest.warns(Warning):  # saga stops early: the runs differ by their random_state
        assert 0.5 <= agreement_score(X, y, estimator=sgd_like, random_state=0) <= 1.0
    with pytest.raises(ValueError, match="no random_state"):
        agreement_score(X, y, estimator=_NoSeed(), random_state=0)


class _NoSeed(LogisticRegression):
    def __init__(self, C=1.0):
        super().__init__(C=C)

    def get_params(self, deep=True):
        return {"C": self.C}


def test_torch_modules_as_estimators():
    X = features()
    y = (X[:, 0] > 0.5).astype(int)
    one_logit = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    assert taskness_score(X, y, estimator=one_logit, random_state=0, n_steps=60) > 0.2
    # The module given is copied, never trained in place.
    before = [p.detach().clone() for p in one_logit.parameters()]
    taskness_score(X, y, estimator=one_logit, random_state=0, **FAST)
    assert all(torch.equal(a, b) for a, b in zip(before, one_logit.parameters()))
    # A linear head alone, the cheap scorer on fixed features, tells a linear task from noise.
    head = nn.Linear(4, 2)
    linear_task = (X[:, 0] - X[:, 2] > 0.5).astype(int)
    scores = taskness_score(
        X,
        np.vstack([linear_task, random_labellings(linear_task, 4)]),
        estimator=head,
        learning_rate=1e-2,
        random_state=0,
        n_steps=60,
    )
    assert scores[0] > 0.2 and scores[0] > scores[1:].max() + 0.2, scores
    with pytest.raises(ValueError, match="buffers"):
        taskness_score(X, y, estimator=nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)), **FAST)
    with pytest.raises(ValueError, match="logits"):
        taskness_score(X, y, estimator=nn.Linear(4, 3), **FAST)


def test_images_use_the_small_cnn():
    rng = np.random.RandomState(0)
    images = rng.normal(scale=0.3, size=(60, 1, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3 == 0
    images[y, :, 2:6, 2:6] += 1.5  # the positives carry a bright square
    real = taskness_score(images, y, random_state=0, **FAST)
    random = taskness_score(images, random_labellings(y, 3), random_state=0, **FAST)
    assert real > 0.3 and real > random.max()
    assert small_cnn((3, 32, 32))(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    assert small_mlp(7)(torch.zeros(5, 7)).shape == (5, 2)


@pytest.mark.parametrize(
    "shape, padding, n_features",
    [
        ((3, 32, 32), 0, 16 * 5 * 5),  # the seed's CIFAR images: the tutorial network's fc1 input
        ((1, 28, 28), 0, 16 * 4 * 4),
        ((1, 16, 20), 0, 16 * 1 * 2),
        ((1, 15, 40), 2, 16 * 3 * 10),
        ((1, 8, 8), 2, 16 * 2 * 2),
        ((1, 4, 4), 2, 16 * 1 * 1),
    ],
)
def test_the_small_cnn_is_the_seeds_network(shape, padding, n_features):
    network = small_cnn(shape)
    kinds = [type(layer).__name__ for layer in network]
    assert kinds == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
        "Linear", "ReLU", "Linear", "ReLU", "Linear",
    ]  # fmt: skip
    convolutions = [layer for layer in network if isinstance(layer, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convolutions] == [
        (6, (5, 5), (padding, padding)),
        (16, (5, 5), (padding, padding)),
    ]
    assert [layer.out_features for layer in network if isinstance(layer, nn.Linear)] == [120, 84, 2]
    assert network[7].in_features == n_features
    assert network(torch.zeros(3, *shape)).shape == (3, 2)


def test_the_small_cnn_refuses_images_too_small_for_two_pools():
    with pytest.raises(ValueError, match="at least 4x4"):
        small_cnn((1, 3, 8))


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (features(), np.r_[np.ones(1), np.zeros(79)], "at least 2"),
        (features(), np.arange(80) % 3, "binary"),
        (features(), np.zeros(80), "binary"),
        (features(), np.arange(79) % 2, "n_samples = 80"),
        (np.where(np.arange(320).reshape(80, 4) == 5, np.nan, 1.0), np.arange(80) % 2, "NaN"),
        (np.ones((80, 2, 2)), np.arange(80) % 2, "images"),
    ],
)
def test_bad_score_input(X, y, message):
    with pytest.raises(ValueError, match=message):
        taskness_score(X, y, **FAST)


def test_bad_score_parameters():
    X, y = features(), np.arange(80) % 2
    with pytest.raises(ValueError, match="n_steps"):
        taskness_score(X, y, n_steps=3)
    with pytest.raises(ValueError, match="validation_fraction"):
        taskness_score(X, y, validation_fraction=1.0)
    with pytest.raises(ValueError, match="n_seeds"):
        agreement_score(X, y, n_seeds=1)
    with pytest.raises(ValueError, match="baseline"):
        taskness_score(X, y, baseline="median")


# ---------------------------------------------------------------------------- discovery
def test_decoding_marks_the_largest_values_positive():
    np.testing.assert_array_equal(decode_labelling([0.1, 0.9, 0.5, 0.7], 2), [0, 1, 0, 1])


def test_discovery_is_repeatable_and_its_attributes_fit():
    X = features(n=40, d=3)
    search = TaskDiscovery(n_tasks=2, budget=24, n_candidates=8, score_params={"n_steps": 10}, random_state=0)
    search.fit(X)
    again = clone(search).fit(X)
    np.testing.assert_array_equal(search.labels_, again.labels_)
    np.testing.assert_array_equal(search.history_, again.history_)
    assert search.labels_.shape == (2, 40) and set(np.unique(search.labels_)) == {0, 1}
    assert np.all(search.labels_.sum(axis=1) == 8)
    assert search.history_.shape == (2, 24) and search.n_evaluations_ == 48
    np.testing.assert_allclose(search.objectives_, search.history_.max(axis=1))
    # The first task has no penalty; its score is the best of its history.
    assert search.scores_[0] == search.objectives_[0]
    for (X_task, labels), row in zip(search.tasks_, search.labels_):
        np.testing.assert_array_equal(X_task, X)
        np.testing.assert_array_equal(labels, row)


def _target_similarity(target):
    def score(X, y):
        return label_similarity(y, target)

    return score


def test_diversity_keeps_found_tasks_apart():
    X = features(n=30, d=2)
    target = (np.arange(30) < 6).astype(int)
    settings = {
        "n_tasks": 2,
        "budget": 600,
        "n_candidates": 20,
        "scoring": _target_similarity(target),
        "random_state": 0,
    }
    free = TaskDiscovery(diversity=0.0, **settings).fit(X)
    apart = TaskDiscovery(diversity=2.0, **settings).fit(X)
    # Without the penalty both searches climb to the same labelling; with it, the second is
    # pushed away from the first (a complement counts as the same task).
    assert label_similarity(*free.labels_) > 0.6
    assert label_similarity(*apart.labels_) < 0.3
    assert apart.scores_[1] < free.scores_[1]
    np.testing.assert_array_equal(free.labels_[0], apart.labels_[0])


def test_progress_names_each_search_and_does_not_change_it(capsys):
    X = features(n=40, d=3)
    settings = dict(n_tasks=2, budget=16, n_candidates=8, score_params={"n_steps": 10}, random_state=0)
    quiet = TaskDiscovery(verbose=0, **settings).fit(X)
    assert capsys.readouterr().err == ""
    loud = TaskDiscovery(verbose=1, **settings).fit(X)
    shown = capsys.readouterr().err
    assert "task 1/2" in shown and "task 2/2" in shown and "16/16" in shown and "best=" in shown
    np.testing.assert_array_equal(loud.labels_, quiet.labels_)
    np.testing.assert_array_equal(loud.history_, quiet.history_)


def test_batched_candidates_with_the_network_scores():
    X = features(n=40, d=3)
    search = TaskDiscovery(budget=16, n_candidates=16, score_params={"n_steps": 10}, random_state=0).fit(X)
    # The found labelling's recorded score is the score it gets alone under the same seeds.
    assert search.score_seed_ == draw_seeds(0, 1)[0]
    assert search.scores_[0] == pytest.approx(
        taskness_score(X, search.labels_[0], n_steps=10, random_state=search.score_seed_), abs=1e-6
    )
    assert search.n_trainings_ <= 16


def test_found_tasks_go_into_the_embedder_and_persist(tmp_path):
    X = features(n=40, d=3)
    search = TaskDiscovery(
        n_tasks=2, budget=8, n_candidates=8, scoring="agreement", score_params={"n_steps": 10}, random_state=0
    ).fit(X)
    embeddings = FisherTaskEmbedder(head_epochs=5, device="cpu", random_state=0).fit_transform(search.tasks_)
    assert embeddings.shape[0] == 2 and np.all(np.isfinite(embeddings))
    path = tmp_path / "search.joblib"
    joblib.dump(search, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.labels_, search.labels_)
    np.testing.assert_array_equal(loaded.tasks_[1][0], X)


def test_discovery_bad_input(monkeypatch):
    X = features(n=40, d=3)
    with pytest.raises(ValueError, match="positive_fraction"):
        TaskDiscovery(positive_fraction=1.0).fit(X)
    with pytest.raises(ValueError, match="budget"):
        TaskDiscovery(budget=0).fit(X)
    with pytest.raises(ValueError, match="each class needs at least 2"):
        TaskDiscovery(positive_fraction=0.02, budget=2).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        TaskDiscovery(budget=2).fit(np.where(X > 2, np.nan, X))
    with pytest.raises(ValueError, match="optimizer registry"):
        TaskDiscovery(optimizer="NoSuchOptimizer", budget=2).fit(X)
    with pytest.raises(ValueError, match="must not set 'random_state'"):
        TaskDiscovery(budget=2, score_params={"random_state": 0}).fit(X)
    with pytest.raises(ValueError, match="does not take"):
        TaskDiscovery(budget=2, score_params={"n_epochs": 3}).fit(X)
    monkeypatch.setitem(sys.modules, "nevergrad", None)
    with pytest.raises(ImportError, match=r"sklearn-task2vec\[discovery\]"):
        TaskDiscovery(budget=2).fit(X)


@parametrize_with_checks([TaskDiscovery(budget=8, n_candidates=4, score_params={"n_steps": 5})])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------- learnability studies
def clustered(n_per_class=40, n_classes=4, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=3.0, size=(n_classes, 5))
    classes = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[classes] + rng.normal(size=(len(classes), 5))).astype(np.float32), classes


def test_real_tasks_are_told_from_random_ones():
    X, classes = clustered()
    table = learnability_study(
        X, classes, study="real_vs_random", n_samples=50, n_repeats=2, score_params=FAST, random_state=0
    )
    assert table.columns == ["class", "n_samples", "score", "score_std", "random_score", "random_score_std"]
    np.testing.assert_array_equal(table["class"], [0, 1, 2, 3])
    assert table.roc_auc == 1.0
    assert np.all(table.score > table.random_score + 0.2)


def test_ablation_and_ratio_tables():
    X, classes = clustered()
    ablation = learnability_study(
        X,
        classes,
        study="ablation",
        values=[0.0, 1.0],
        n_samples=50,
        n_repeats=2,
        score_params=FAST,
        random_state=0,
    )
    np.testing.assert_array_equal(ablation.fraction, [0.0, 1.0])
    assert ablation.score[0] > ablation.score[1] + 0.3  # all labels shuffled: a random task
    ratios = learnability_study(
        X,
        classes,
        study="n_positives",
        values=[1, 3],
        n_positives=8,
        n_repeats=1,
        score_params=FAST,
        random_state=0,
    )
    np.testing.assert_array_equal(ratios.n_samples, [16, 32])
    with pytest.raises(ValueError, match="needs 100 examples of class 0"):
        learnability_study(X, classes, study="class_ratio", values=[1], n_samples=200, score_params=FAST)
    with pytest.raises(ValueError, match="not among the classes"):
        learnability_study(X, classes, study="ablation", positive_class=9, score_params=FAST)


@pytest.mark.slow
def test_task2vec_diversity_is_one_minus_the_task2vec_distance():
    # With a constant score the objective is the penalty alone: the second task is the
    # candidate farthest from the first in TASK2VEC distance, at -diversity * (1 - d_sym).
    X = features(n=30, d=2)
    embedder = FisherTaskEmbedder(head_epochs=5, device="cpu", random_state=0)
    search = TaskDiscovery(
        n_tasks=2,
        budget=10,
        n_candidates=10,
        scoring=lambda X, y: 0.0,
        diversity=2.0,
        diversity_measure="task2vec",
        embedder=embedder,
        random_state=0,
    ).fit(X)
    assert search.objectives_[0] == 0.0
    embeddings = clone(embedder).fit_transform(search.tasks_)
    distance = symmetric_distance(*embeddings)
    assert 0.0 < distance <= 1.0
    assert search.objectives_[1] == pytest.approx(-2.0 * (1.0 - distance), abs=1e-4)
    assert search.objectives_[1] == search.history_[1].max()


# ---------------------------------------------------------------------------- shared work
def _counting_scorer(calls):
    def score(X, y):
        calls.append(np.asarray(y).copy())
        return float(np.dot(np.arange(len(y)) % 3, y)) / len(y)

    return score


@hypothesis_settings(max_examples=15)
@given(
    n_samples=st.integers(4, 9), positive_fraction=st.sampled_from([0.25, 0.4, 0.5]), seed=st.integers(0, 3)
)
def test_a_labelling_proposed_again_is_not_scored_again(n_samples, positive_fraction, seed):
    calls = []
    X = features(n=n_samples, d=2)
    try:
        search = TaskDiscovery(
            budget=40,
            n_candidates=4,
            positive_fraction=positive_fraction,
            scoring=_counting_scorer(calls),
            random_state=seed,
        ).fit(X)
    except ValueError as error:  # too few examples for two of each class
        assert "each class needs at least 2" in str(error)
        return
    # One call per distinct task: a labelling and its complement are one task.
    tasks = {min(row.tobytes(), (1 - row).tobytes()) for row in calls}
    assert len(tasks) == len(calls) == search.n_trainings_ <= 40
    n_positive = int(np.floor(positive_fraction * n_samples + 0.5))
    assert len(calls) <= math.comb(n_samples, n_positive)
    # Every candidate's recorded objective is its labelling's score (the cache told the truth).
    scored = {row.tobytes(): _counting_scorer([])(X, row) for row in calls}
    assert set(np.round(search.history_[0], 12)) <= set(np.round(list(scored.values()), 12))


def _reference_hopeless(curves, labelling, thresholds, baselines):
    """The early-stopping rule evaluated directly, one labelling at a time."""
    stop = []
    for index, threshold in enumerate(thresholds):
        rows = curves[labelling == index]
        if len(rows) == 0:
            stop.append(False)
            continue
        windows = np.lib.stride_tricks.sliding_window_view(rows, discovery.SMOOTHING_WINDOW, axis=1)
        smoothed = np.median(windows, axis=-1)
        b = baselines[index]
        rising = smoothed[:, -1] - smoothed.min(axis=1) >= discovery.EARLY_STOPPING_RISE * b
        partial = np.mean((b - smoothed.min(axis=1)) / b)
        stop.append(bool(rising.all() and partial + discovery.EARLY_STOPPING_MARGIN < threshold))
    return np.array(stop)


@given(
    curves=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(5, 25)), elements=st.floats(0, 2)),
    n_labellings=st.integers(1, 3),
    thresholds=st.lists(st.floats(-1, 1), min_size=3, max_size=3),
    baselines=st.lists(st.floats(0.1, 1), min_size=3, max_size=3),
    seed=st.integers(0, 100),
)
def test_the_early_stopping_rule_is_the_documented_one(curves, n_labellings, thresholds, baselines, seed):
    labelling = np.random.RandomState(seed).randint(n_labellings, size=len(curves))
    thresholds, baselines = np.array(thresholds[:n_labellings]), np.array(baselines[:n_labellings])
    stopping = discovery._EarlyStopping(thresholds, baselines)
    got = discovery._hopeless(torch.as_tensor(curves), torch.as_tensor(labelling), stopping, n_labellings)
    np.testing.assert_array_equal(got.numpy(), _reference_hopeless(curves, labelling, thresholds, baselines))


def test_early_stopping_keeps_a_task_that_would_win_and_stops_random_ones():
    X = features(n=60)
    real = (X[:, 0] > 0.4).astype(int)
    stack = np.vstack([real, random_labellings(real, 4)])
    settings = {"n_steps": 60, "random_state": 0}
    full = taskness_score(X, stack, **settings)
    assert full[0] > full[1:].max() + 0.3
    scoring = discovery._scoring(None, 0.2, 60, 32, 1e-3, 1, "prior", 5, "cpu")
    split_seed, seed = draw_seeds(0, 2)
    labels = discovery._check_labellings(stack, len(X))[0]
    # Every labelling must beat the real task's score minus a hair: only the real task can.
    thresholds = np.full(len(stack), full[0] - 1e-3)
    scores, n_steps = discovery._network_scores(
        X, labels, "taskness", scoring, split_seed, [seed], thresholds
    )
    assert n_steps[0] == 60 and scores[0] == pytest.approx(full[0], abs=1e-6)
    assert np.all(n_steps[1:] < 60)
    # A stopped training's score is the task-ness of its steps so far: a lower bound.
    assert np.all(scores[1:] <= full[1:] + 1e-6)


def test_early_stopping_does_not_change_the_search():
    X = features(n=40, d=3)
    settings = {"budget": 96, "n_candidates": 16, "score_params": {"n_steps": 30}, "random_state": 0}
    fast = TaskDiscovery(**settings).fit(X)
    full = TaskDiscovery(early_stopping=False, **settings).fit(X)
    assert fast.n_stopped_early_ > 0 and full.n_stopped_early_ == 0
    assert fast.n_steps_trained_ < full.n_steps_trained_ == 30 * full.n_trainings_
    # The same candidates in the same order, the same task found: a stopped candidate is told
    # a lower bound of its score, below its parent's, as its full score was.
    np.testing.assert_array_equal(fast.labels_, full.labels_)
    assert fast.scores_ == full.scores_ and fast.n_trainings_ == full.n_trainings_
    changed = fast.history_ != full.history_
    assert np.all(fast.history_[changed] < full.history_[changed])


def test_batched_candidates_score_as_each_alone(monkeypatch):
    X = features(n=40, d=3)
    scored = []
    network_scores = discovery._network_scores

    def spy(X, labels, *args):
        scores, n_steps = network_scores(X, labels, *args)
        scored.extend(zip(labels, scores))
        return scores, n_steps

    monkeypatch.setattr(discovery, "_network_scores", spy)
    search = TaskDiscovery(
        budget=32, n_candidates=16, early_stopping=False, score_params={"n_steps": 10}, random_state=0
    ).fit(X)
    assert len(scored) == search.n_trainings_ > 16
    monkeypatch.setattr(discovery, "_network_scores", network_scores)
    for labels, score in scored:
        alone = taskness_score(X, labels, n_steps=10, random_state=search.score_seed_)
        assert score == pytest.approx(alone, abs=1e-5)


def test_the_time_estimate_is_shown_before_the_search_goes_on(capsys, monkeypatch):
    X = features(n=40, d=3)
    clock = iter(np.arange(0.0, 1000.0, 6.0))  # each batch of candidates "takes" 6 s
    monkeypatch.setattr(discovery, "perf_counter", lambda: next(clock))
    settings = dict(n_tasks=2, budget=16, n_candidates=8, score_params={"n_steps": 10}, random_state=0)
    TaskDiscovery(verbose=1, **settings).fit(X)
    shown = capsys.readouterr().err
    assert shown.count("TaskDiscovery: the first 8 candidates took 6.0 s: about 24 s for 32 candidates") == 1
    assert "2 task(s) of budget 16" in shown
    TaskDiscovery(verbose=0, **settings).fit(X)
    assert capsys.readouterr().err == ""


def test_populations_trained_side_by_side_score_as_alone(monkeypatch):
    # With two torch threads the stack is shared out among two trainings running at once, each
    # operation on one thread; every labelling still scores as it does alone, every time.
    rng = np.random.RandomState(0)
    images = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    labels = np.stack([rng.permutation(np.arange(40) % 4 == 0) for _ in range(10)])
    alone = np.array([taskness_score(images, row, random_state=0, **FAST) for row in labels])
    chunk_sizes = []
    train_population = discovery._train_population

    def counted(template, X, stack, *args, **kwargs):
        chunk_sizes.append(len(stack))
        return train_population(template, X, stack, *args, **kwargs)

    monkeypatch.setattr(discovery, "_train_population", counted)
    torch.set_num_threads(2)
    try:
        together = [taskness_score(images, labels, random_state=0, **FAST) for _ in range(2)]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert chunk_sizes == [5, 5, 5, 5]
    np.testing.assert_array_equal(together[0], together[1])
    # Summation orders differ between stacks of other sizes: rounding, amplified by training.
    np.testing.assert_allclose(together[0], alone, atol=1e-4)


def test_networks_that_draw_random_numbers_train_one_population_at_a_time():
    dropout = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    cpu = torch.device("cpu")
    torch.set_num_threads(2)
    try:
        assert discovery._populations_at_once(small_cnn((1, 8, 8)), (1, 8, 8), cpu, 40) == 2
        assert discovery._populations_at_once(small_cnn((1, 8, 8)), (1, 8, 8), cpu, 7) == 1
        assert discovery._populations_at_once(dropout, (1, 8, 8), cpu, 40) == 1
        assert discovery._populations_at_once(small_cnn((1, 8, 8)), (1, 8, 8), torch.device("meta"), 40) == 1
    finally:
        torch.set_num_threads(1)
