"""Transferability scores against small independent computations, and the selector built on them."""

import joblib
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_task2vec.selector import model_selection_scorer, weighted_kendall_tau
from sklearn_task2vec.transferability import (
    TransferabilitySelector,
    h_score,
    leep_score,
    logme_score,
    nce_score,
)

# ----------------------------------------------------------------------------- LogME


def direct_log_evidence(features, y, log_alpha, log_beta):
    """``log N(y; 0, F F^T / alpha + I / beta)`` by a Cholesky factor of the n x n covariance."""
    n = len(y)
    covariance = features @ features.T * np.exp(-log_alpha) + np.eye(n) * np.exp(-log_beta)
    try:
        factor = scipy.linalg.cho_factor(covariance)
    except np.linalg.LinAlgError:
        return -np.inf
    quadratic = y @ scipy.linalg.cho_solve(factor, y)
    return -0.5 * (n * np.log(2 * np.pi) + 2 * np.log(np.diag(factor[0])).sum() + quadratic)


def direct_logme(features, labels):
    """The marginal likelihood maximised numerically over (log alpha, log beta), per example,
    averaged over the classes; several starts, bounds that keep the covariance well conditioned
    (the maxima of these cases lie inside, or the evidence is flat within 1e-6 beyond them)."""
    n = len(labels)
    values = []
    for label in np.unique(labels):
        y = (labels == label).astype(float)
        best = min(
            (
                scipy.optimize.minimize(
                    lambda p, y=y: -direct_log_evidence(features, y, *p) / n,
                    start,
                    method="L-BFGS-B",
                    bounds=[(-10, 25), (-10, 12)],
                )
                for start in [(0, 0), (8, 8), (-8, 8), (8, -2), (0, 10), (20, 0)]
            ),
            key=lambda result: result.fun,
        )
        values.append(-best.fun)
    return float(np.mean(values))


def _features(n, d, *, dead=0, informative=True, seed=0, n_classes=3):
    rng = np.random.RandomState(seed)
    labels = rng.randint(n_classes, size=n)
    features = rng.normal(size=(n, d))
    if informative:
        features[:, -1] += labels
    features[:, :dead] = 0.0
    return features, labels


@pytest.mark.parametrize(
    ("n", "d", "dead"),
    [
        (80, 5, 0),  # more examples than features: thuml's case, where its evidence is right
        (100, 200, 0),  # fewer examples than features (the first case)
        (300, 20, 10),  # ten dead units (the second case)
        (60, 60, 0),  # square
    ],
)
def test_logme_is_the_maximised_marginal_likelihood(n, d, dead):
    features, labels = _features(n, d, dead=dead)
    assert logme_score(features, labels) == pytest.approx(direct_logme(features, labels), abs=1e-6)


def test_logme_at_the_beta_limit_with_fewer_examples_than_features():
    # Indicators almost in two directions of the features, n < D: the evidence is maximised
    # as beta -> inf (noise-free), a limit. The direct evaluation, maximised over alpha at a
    # growing beta, climbs to our value from below.
    rng = np.random.RandomState(1)
    labels = np.repeat([0, 1], 20)
    features = np.c_[50.0 * labels, 50.0 * (1 - labels), 1e-3 * rng.normal(size=(40, 60))]
    ours = logme_score(features, labels)

    def direct_at(log_beta):
        values = []
        for label in (0, 1):
            y = (labels == label).astype(float)
            result = scipy.optimize.minimize_scalar(
                lambda log_alpha, y=y: -direct_log_evidence(features, y, log_alpha, log_beta),
                bounds=(-20, 40),
                method="bounded",
            )
            values.append(-result.fun / len(labels))
        return np.mean(values)

    climb = [direct_at(log_beta) for log_beta in (16, 22, 28)]
    assert climb[0] < climb[1] < climb[2] <= ours + 1e-9
    assert climb[2] == pytest.approx(ours, abs=2e-3)


def test_logme_counts_only_the_non_zero_directions():
    # Dead units carry no weight: the score is that of the live features alone. thuml's
    # LogME.py adds (dead / 2) log alpha per class here.
    features, labels = _features(200, 8, seed=3)
    padded = np.c_[features, np.zeros((200, 30))]
    assert logme_score(padded, labels) == pytest.approx(logme_score(features, labels), abs=1e-9)


def test_logme_is_infinite_for_an_exact_linear_fit():
    # Each class indicator is a feature and n > rank: the evidence grows without bound.
    labels = np.repeat([0, 1, 2], 10)
    assert logme_score(np.eye(3)[labels], labels) == np.inf


def test_logme_of_zero_features_is_the_noise_model():
    labels = np.repeat([0, 1], [30, 10])
    n = len(labels)
    expected = np.mean([-0.5 * (np.log(2 * np.pi * count / n) + 1) for count in (30, 10)])
    assert logme_score(np.zeros((n, 4)), labels) == pytest.approx(expected)


# ----------------------------------------------------------------------------- LEEP and NCE


def loop_leep(probabilities, labels):
    """LEEP by explicit loops over examples and classes (Nguyen et al., eq. 1-3)."""
    n, n_source = probabilities.shape
    classes = sorted(set(labels))
    joint = {(y, z): 0.0 for y in classes for z in range(n_source)}
    for i in range(n):
        for z in range(n_source):
            joint[labels[i], z] += probabilities[i, z] / n
    marginal = [sum(joint[y, z] for y in classes) for z in range(n_source)]
    total = 0.0
    for i in range(n):
        expected = sum(joint[labels[i], z] / marginal[z] * probabilities[i, z] for z in range(n_source))
        total += np.log(expected)
    return total / n


def loop_nce(source, target):
    """-H(Y | Z) by counting pairs in a loop."""
    n = len(target)
    pairs, sources = {}, {}
    for z, y in zip(source, target):
        pairs[z, y] = pairs.get((z, y), 0) + 1
        sources[z] = sources.get(z, 0) + 1
    return sum(count / n * np.log(count / sources[z]) for (z, _), count in pairs.items())


def test_leep_matches_the_loop():
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(50, 6))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.randint(3, size=50)
    assert leep_score(probabilities, labels) == pytest.approx(loop_leep(probabilities, labels), rel=1e-12)


def test_leep_ignores_a_source_class_without_probability():
    rng = np.random.RandomState(1)
    probabilities = rng.dirichlet(np.ones(4), size=30)
    labels = rng.randint(2, size=30)
    padded = np.c_[probabilities, np.zeros(30)]
    assert leep_score(padded, labels) == pytest.approx(leep_score(probabilities, labels))


def test_nce_matches_the_loop():
    rng = np.random.RandomState(0)
    source = rng.randint(5, size=80)
    target = (source + rng.randint(2, size=80)) % 3
    assert nce_score(source, target) == pytest.approx(loop_nce(source, target), rel=1e-12)


# ----------------------------------------------------------------------------- H-score


def test_h_score_is_the_covariance_formula():
    features, labels = _features(120, 6, seed=4)
    class_means = {label: features[labels == label].mean(axis=0) for label in np.unique(labels)}
    conditional = np.array([class_means[label] for label in labels])
    expected = np.trace(np.linalg.inv(np.cov(features, rowvar=False)) @ np.cov(conditional, rowvar=False))
    assert h_score(features, labels) == pytest.approx(expected, rel=1e-10)


def test_h_score_uses_the_pseudo_inverse_on_singular_covariances():
    features, labels = _features(30, 50, dead=5, seed=5)
    conditional = np.array([features[labels == label].mean(axis=0) for label in labels])
    expected = np.trace(np.linalg.pinv(np.cov(features, rowvar=False)) @ np.cov(conditional, rowvar=False))
    assert h_score(features, labels) == pytest.approx(expected, rel=1e-8)
    # At most n_classes - 1 (the between-class covariance has that rank) without shrinkage.
    assert h_score(features, labels) <= 2 + 1e-9


def test_h_score_shrinkage_is_the_stated_regularisation():
    features, labels = _features(100, 5, seed=6)
    covariance = np.cov(features, rowvar=False)
    conditional = np.array([features[labels == label].mean(axis=0) for label in labels])
    shrunk = 0.7 * covariance + 0.3 * np.trace(covariance) / 5 * np.eye(5)
    expected = np.trace(np.linalg.inv(shrunk) @ np.cov(conditional, rowvar=False))
    assert h_score(features, labels, shrinkage=0.3) == pytest.approx(expected, rel=1e-10)
    assert h_score(features, labels, shrinkage=0.0) == pytest.approx(h_score(features, labels), rel=1e-10)
    with pytest.raises(ValueError, match="singular"):
        h_score(np.c_[features, np.zeros(100)], labels, shrinkage=0.0)


# ----------------------------------------------------------------------------- properties


def _all_scores(features, probabilities, source, labels):
    return np.array(
        [
            logme_score(features, labels),
            leep_score(probabilities, labels),
            nce_score(source, labels),
            h_score(features, labels),
        ]
    )


def test_scores_do_not_depend_on_the_names_or_order_of_the_classes():
    rng = np.random.RandomState(7)
    features, labels = _features(90, 4, seed=7)
    probabilities = rng.dirichlet(np.ones(5), size=90)
    source = probabilities.argmax(axis=1)
    renamed = np.array(["zebra", "ant", ("tuple", 1)], dtype=object)[labels]
    # Mixed types that cannot be sorted: classes in order of appearance.
    mixed = np.array([3.5, "b", None.__class__.__name__], dtype=object)[labels]
    expected = _all_scores(features, probabilities, source, labels)
    np.testing.assert_allclose(_all_scores(features, probabilities, source, renamed), expected, rtol=1e-12)
    np.testing.assert_allclose(_all_scores(features, probabilities, source, mixed), expected, rtol=1e-12)
    renamed_source = np.array([f"s{z}" for z in source])
    assert nce_score(renamed_source, labels) == pytest.approx(nce_score(source, labels))


def test_features_that_separate_the_classes_score_above_noise():
    rng = np.random.RandomState(8)
    labels = rng.randint(3, size=150)
    noise = rng.normal(size=(150, 6))
    separating = noise.copy()
    separating[:, :3] += 3.0 * np.eye(3)[labels]
    assert logme_score(separating, labels) > logme_score(noise, labels)
    assert h_score(separating, labels) > h_score(noise, labels)
    # A source head that knows the classes vs one that guesses.
    informed = np.full((150, 3), 0.05)
    informed[np.arange(150), labels] = 0.9
    uniform = rng.dirichlet(np.ones(3), size=150)
    assert leep_score(informed, labels) > leep_score(uniform, labels)
    assert nce_score(labels, labels) == pytest.approx(0.0)
    assert nce_score(rng.randint(3, size=150), labels) < -0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: logme_score([[0.0, np.nan], [1.0, 2.0]], [0, 1]), "NaN"),
        (lambda: h_score([[0.0, np.inf], [1.0, 2.0]], [0, 1]), "infinity"),
        (lambda: logme_score(np.zeros((4, 2)), [0, 0, 0, 0]), "single class"),
        (lambda: h_score(np.zeros((4, 2)), [0, 1, 0]), "3 labels for 4 examples"),
        (lambda: logme_score(np.zeros(4), [0, 1, 0, 1]), "2D array"),
        (lambda: logme_score(np.zeros((4, 2)), [[0, 1, 0, 1]]), "1-D"),
        (lambda: logme_score(np.zeros((4, 2)), [0.0, 1.0, np.nan, 1.0]), "NaN or infinity"),
        (lambda: leep_score([[0.5, 0.6], [0.5, 0.5]], [0, 1]), "row 0 sums to 1.1"),
        (lambda: leep_score([[1.5, -0.5], [0.5, 0.5]], [0, 1]), "negative"),
        (lambda: leep_score([[0.5, 0.5], [0.5, 0.5]], [0, 1, 1]), "3 labels for 2 examples"),
        (lambda: leep_score([0.5, 0.5], [0, 1]), "2D array"),
        (lambda: nce_score([0, 1, 2], [0, 1]), "3 labels for 2 examples"),
        (lambda: nce_score([0, 1], ["a", "a"]), "single class"),
        (lambda: nce_score([0, None], ["a", "b"]), "None or NaN"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_shrinkage_is_refused():
    with pytest.raises(ValueError, match="shrinkage"):
        h_score(np.eye(4), [0, 1, 0, 1], shrinkage=1.5)


# ----------------------------------------------------------------------------- the selector


@parametrize_with_checks([TransferabilitySelector()])
def test_sklearn_compatible_selector(estimator, check):
    check(estimator)


def test_selector_picks_the_best_score_and_scores_like_model2vec():
    scores = np.array([[-0.7, -0.5, -0.9], [-0.2, -0.6, -0.4], [-1.0, -1.0, -0.1]])
    errors = np.array([[0.3, 0.1, 0.5], [0.2, 0.3, 0.1], [0.4, 0.4, 0.2]])
    selector = TransferabilitySelector(experts=["a", "b", "c"]).fit(scores)
    assert selector.predict(scores).tolist() == ["b", "a", "c"]
    # Task 1 gets expert a (error 0.2) where c (0.1) is the oracle: (0.5/3 - 0.4/3) / (0.4/3).
    assert model_selection_scorer(selector, scores, errors=errors) == pytest.approx(-0.25)
    with pytest.raises(ValueError, match="name each of the 3 columns"):
        TransferabilitySelector(experts=["a", "b"]).fit(scores)
    with pytest.raises(ValueError, match="repeat"):
        TransferabilitySelector(experts=["a", "a", "b"]).fit(scores)


def test_selector_in_a_pipeline_clone_and_joblib(tmp_path):
    # The first step turns tasks (here: their features and labels under two experts) into
    # the score matrix, as FisherTaskEmbedder turns tasks into embeddings for Model2VecSelector.
    rng = np.random.RandomState(9)
    tasks = []
    for _ in range(4):
        labels = rng.randint(2, size=60)
        good = rng.normal(size=(60, 3)) + 2.0 * labels[:, None]
        tasks.append(((rng.normal(size=(60, 3)), good), labels))
    order = [0, 1, 1, 0]
    tasks = [
        ((pair[0], pair[1]) if first == 0 else (pair[1], pair[0]), labels)
        for (pair, labels), first in zip(tasks, order)
    ]

    def logme_matrix(task_list):
        return np.array([[logme_score(features, labels) for features in pair] for pair, labels in task_list])

    pipeline = make_pipeline(
        FunctionTransformer(logme_matrix), TransferabilitySelector(experts=["first", "second"])
    )
    pipeline.fit(tasks)
    expected = np.array(["second", "first", "first", "second"])
    np.testing.assert_array_equal(pipeline.predict(tasks), expected)
    np.testing.assert_array_equal(clone(pipeline).fit(tasks).predict(tasks), expected)
    path = tmp_path / "selector.joblib"
    joblib.dump(pipeline[-1], path)
    restored = joblib.load(path)
    np.testing.assert_array_equal(restored.predict(logme_matrix(tasks)), expected)


# ----------------------------------------------------------------------------- ranking metric


def test_weighted_kendall_tau_per_task():
    errors = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])  # perfect, then reversed
    np.testing.assert_allclose(weighted_kendall_tau(scores, errors), [1.0, -1.0])
    # Swapping the two worst experts costs less than swapping the two best (the weighting).
    bottom = weighted_kendall_tau([[4.0, 3.0, 1.0, 2.0]], errors[:1])[0]
    top = weighted_kendall_tau([[3.0, 4.0, 2.0, 1.0]], errors[:1])[0]
    assert 0 < top < bottom < 1
    with pytest.raises(ValueError, match="shape"):
        weighted_kendall_tau(scores[:, :3], errors)
