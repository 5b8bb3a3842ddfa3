"""Transferability scores against small independent computations, and the selector built on them."""

import itertools
from collections import Counter

import joblib
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.mixture import GaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_task2vec.selector import model_selection_scorer, weighted_kendall_tau
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

# BLAS on one thread: on a busy shared machine its threads cost the larger LogME cases ~100x.
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

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


def direct_max_evidence(features, y):
    """The marginal likelihood of one column ``y`` maximised numerically over (log alpha, log
    beta), per example; several starts, bounds that keep the covariance well conditioned (the
    maxima of these cases lie inside, or the evidence is flat within 1e-6 beyond them)."""
    n = len(y)
    best = min(
        (
            scipy.optimize.minimize(
                lambda p: -direct_log_evidence(features, y, *p) / n,
                start,
                method="L-BFGS-B",
                bounds=[(-10, 25), (-10, 12)],
            )
            for start in [(0, 0), (8, 8), (-8, 8), (8, -2), (0, 10), (20, 0)]
        ),
        key=lambda result: result.fun,
    )
    return -best.fun


def direct_logme(features, labels):
    """The maximised evidence of each class's indicator, averaged over the classes."""
    return float(
        np.mean(
            [direct_max_evidence(features, (labels == label).astype(float)) for label in np.unique(labels)]
        )
    )


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


# ----------------------------------------------------------------------------- regression targets


def _regression_task(n=80, d=6, seed=0, noise=0.3):
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(n, d))
    values = features @ rng.normal(size=d) + noise * rng.normal(size=n)
    return features, values


@pytest.mark.parametrize(("n", "d"), [(80, 6), (40, 60)])
def test_logme_of_a_regression_target_is_its_maximised_marginal_likelihood(n, d):
    features, values = _regression_task(n, d, seed=n)
    assert logme_score(features, values) == pytest.approx(direct_max_evidence(features, values), abs=1e-6)


def test_a_linear_target_scores_above_its_shuffle():
    # The case: given continuous targets, LogME and H-score made each distinct value a
    # class, and a linear target and its shuffle scored the same (H-score: the feature count).
    features, values = _regression_task(100, 16, seed=1, noise=0.1)
    shuffled = np.random.RandomState(2).permutation(values)
    assert logme_score(features, values) > logme_score(features, shuffled) + 2.0
    assert h_score(features, values) > 0.99 > 0.5 > h_score(features, shuffled)
    assert knn_score(features, values) > knn_score(features, shuffled)
    # Told they are classes, the scores are the old ones: every value its own class.
    assert h_score(features, values, target="classification") == pytest.approx(16.0)


def test_regression_h_score_is_the_trace_formula_with_the_least_squares_conditional_mean():
    features, values = _regression_task(60, 5, seed=3)
    design = np.c_[np.ones(60), values]
    coefficients, *_ = np.linalg.lstsq(design, features, rcond=None)
    conditional = design @ coefficients  # E[f | y] by least squares of each feature on y
    expected = np.trace(np.linalg.inv(np.cov(features, rowvar=False)) @ np.cov(conditional, rowvar=False))
    assert h_score(features, values) == pytest.approx(expected, rel=1e-10)
    r_squared = LinearRegression().fit(features, values).score(features, values)
    assert h_score(features, values) == pytest.approx(r_squared, rel=1e-10)
    shrunk = 0.8 * np.cov(features, rowvar=False) + 0.2 * np.trace(
        np.cov(features, rowvar=False)
    ) / 5 * np.eye(5)
    expected = np.trace(np.linalg.inv(shrunk) @ np.cov(conditional, rowvar=False))
    assert h_score(features, values, shrinkage=0.2) == pytest.approx(expected, rel=1e-10)


@settings(max_examples=6)
@given(st.integers(0, 2**31 - 1), st.integers(4, 40), st.integers(1, 5))
def test_auto_reads_classes_and_regression_targets_as_type_of_target_does(seed, n, n_values):
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(n, 3))
    codes = np.r_[np.arange(min(n_values + 1, n // 2)), rng.randint(min(n_values + 1, n // 2), size=n)][:n]
    # Integer-valued labels, as ints, floats or strings, are classes: one score whatever the type.
    expected = logme_score(features, codes, target="classification")
    for labels in (codes, codes.astype(float), codes.astype(str)):
        assert logme_score(features, labels) == pytest.approx(expected, rel=1e-12)
    # Values that are not all integers are a regression target.
    values = codes + rng.uniform(0.01, 0.99, size=n)
    assert logme_score(features, values) == pytest.approx(
        logme_score(features, values, target="regression"), rel=1e-12
    )
    assert h_score(features, values) == pytest.approx(
        h_score(features, values, target="regression"), rel=1e-12
    )


@pytest.mark.parametrize("score", [logme_score, h_score, knn_score])
def test_auto_refuses_integers_that_may_be_classes_or_a_count(score):
    features, _ = _regression_task(20, 3)
    counts = np.arange(20) % 15  # 15 distinct integers for 20 examples
    options = {"n_neighbors": 3} if score is knn_score else {}
    with pytest.raises(ValueError, match="15 distinct integer values for 20 examples.*target="):
        score(features, counts, **options)
    as_values = score(features, counts, target="regression", **options)
    as_classes = score(features, counts, target="classification", **options)
    assert np.isfinite(as_values) and np.isfinite(as_classes) and as_values != as_classes


# ----------------------------------------------------------------------------- k-NN


def loop_knn(features, labels, n_neighbors, metric, regression):
    """Leave-one-out k-NN by explicit loops: neighbours sorted on (distance, index), the vote by
    counting, a tie to the class met first in that order."""

    def distance(a, b):
        if metric == "euclidean":
            return float(np.sum((a - b) ** 2))
        return 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    n = len(labels)
    hits, errors = 0, []
    for i in range(n):
        others = (j for j in range(n) if j != i)
        nearest = sorted(others, key=lambda j, i=i: (distance(features[i], features[j]), j))[:n_neighbors]
        if regression:
            errors.append((np.mean([labels[j] for j in nearest]) - labels[i]) ** 2)
            continue
        votes = Counter(labels[j] for j in nearest)
        top = max(votes.values())
        predicted = next(labels[j] for j in nearest if votes[labels[j]] == top)
        hits += predicted == labels[i]
    return -float(np.mean(errors)) if regression else hits / n


@settings(max_examples=40)
@given(
    st.integers(6, 25).flatmap(
        lambda n: st.tuples(
            # Small integers: many exact ties of distance and of votes.
            hnp.arrays(np.float64, (n, 2), elements=st.integers(-2, 2)),
            hnp.arrays(np.int64, n, elements=st.integers(0, 2)),
            st.integers(1, n - 1),
        )
    ),
    st.sampled_from(["euclidean", "cosine"]),
)
def test_knn_is_the_leave_one_out_vote_with_its_tie_rules(data, metric):
    features, labels, n_neighbors = data
    if metric == "cosine":
        features = features + 3.0  # no zero vector
    if len(np.unique(labels)) < 2:
        labels[0] = (labels[0] + 1) % 3
    expected = loop_knn(features, labels, n_neighbors, metric, regression=False)
    assert (
        knn_score(features, labels, n_neighbors=n_neighbors, metric=metric, target="classification")
        == expected
    )
    values = labels + 0.5 * features[:, 0]
    if np.ptp(values) > 0:
        expected = loop_knn(features, values, n_neighbors, metric, regression=True)
        got = knn_score(features, values, n_neighbors=n_neighbors, metric=metric, target="regression")
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_knn_is_computed_in_blocks_of_rows_alike(monkeypatch):
    from sklearn_task2vec import transferability

    features, labels = _features(70, 4, seed=11)
    whole = knn_score(features, labels, n_neighbors=7)
    monkeypatch.setattr(transferability, "_KNN_BLOCK_ROWS", 16)
    assert knn_score(features, labels, n_neighbors=7) == whole


# ----------------------------------------------------------------------------- SFDA


def direct_fisher_probabilities(features, labels, shrinkage):
    """p(y | x) of the regularised Fisher discriminant, through the explicit projection on the
    first n_classes - 1 generalised eigenvectors of the scatter matrices (Shao et al. sec. 3.2)."""
    classes = np.unique(labels)
    n, d = features.shape
    mean = features.mean(axis=0)
    within, between = np.zeros((d, d)), np.zeros((d, d))
    means, priors = [], []
    for c in classes:
        rows = features[labels == c]
        means.append(rows.mean(axis=0))
        priors.append(len(rows) / n)
        within += priors[-1] * np.cov(rows, rowvar=False, bias=True).reshape(d, d)
        between += priors[-1] * np.outer(means[-1] - mean, means[-1] - mean)
    if shrinkage is None:
        shrinkage = np.exp(-5.0 * np.linalg.eigvalsh(within)[-1])
    regularised = (1 - shrinkage) * within + shrinkage * np.trace(within) / d * np.eye(d)
    eigenvalues, eigenvectors = scipy.linalg.eigh(between, regularised)
    projection = eigenvectors[:, np.argsort(eigenvalues)[::-1][: len(classes) - 1]]
    projected_means = np.array(means) @ projection
    scores = (
        features @ projection @ projected_means.T - 0.5 * (projected_means**2).sum(axis=1) + np.log(priors)
    )
    return scipy.special.softmax(scores, axis=1), shrinkage


def direct_sfda(features, labels, shrinkage=None):
    """SFDA: the discriminant, ConfMix by a loop over the examples, the discriminant again."""
    classes = list(np.unique(labels))
    probabilities, shrinkage = direct_fisher_probabilities(features, labels, shrinkage)
    means = {c: features[labels == c].mean(axis=0) for c in classes}
    mixed = features.copy()
    for i, label in enumerate(labels):
        confidence = scipy.special.softmax(probabilities[i])[classes.index(label)]
        others = np.mean([means[c] for c in classes if c != label], axis=0)
        mixed[i] = confidence * features[i] + (1 - confidence) * others
    probabilities, _ = direct_fisher_probabilities(mixed, labels, shrinkage)
    return float(np.mean([np.log(probabilities[i, classes.index(label)]) for i, label in enumerate(labels)]))


@settings(max_examples=15)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(2, 4),
    st.integers(2, 6),
    st.sampled_from([0.2, 1.0, 3.0]),
    st.sampled_from([None, 0.3]),
)
def test_sfda_is_the_projected_discriminant_with_confmix(seed, n_classes, d, scale, shrinkage):
    rng = np.random.RandomState(seed)
    labels = np.r_[np.arange(n_classes), rng.randint(n_classes, size=40)]
    features = scale * (rng.normal(size=(len(labels), d)) + rng.normal(size=(n_classes, d))[labels])
    expected = direct_sfda(features, labels, shrinkage)
    assert sfda_score(features, labels, shrinkage=shrinkage) == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_sfda_refuses_a_singular_within_class_covariance():
    features, labels = _features(20, 40, seed=12)
    with pytest.raises(ValueError, match="sfda_score: the within-class covariance .* singular"):
        sfda_score(features, labels, shrinkage=0.0)
    assert np.isfinite(sfda_score(features, labels, shrinkage=0.5))


# ----------------------------------------------------------------------------- N-LEEP


def test_nleep_is_leep_of_the_mixture_posteriors_on_the_principal_components():
    features, labels = _features(120, 10, seed=13)
    reduced = PCA(n_components=0.8, svd_solver="full").fit_transform(features)
    mixture = GaussianMixture(n_components=15, random_state=4).fit(reduced)
    expected = loop_leep(mixture.predict_proba(reduced), labels)
    assert nleep_score(features, labels, random_state=4) == pytest.approx(expected, rel=1e-12)
    mixture = GaussianMixture(n_components=4, random_state=5).fit(features)
    expected = loop_leep(mixture.predict_proba(features), labels)
    got = nleep_score(features, labels, pca_variance=None, mixture_components=4, random_state=5)
    assert got == pytest.approx(expected, rel=1e-12)


def test_nleep_refuses_more_mixture_components_than_examples():
    features, labels = _features(12, 3, seed=14)
    with pytest.raises(ValueError, match="a mixture of 15 Gaussians needs 15 examples at least, got 12"):
        nleep_score(features, labels)


# ----------------------------------------------------------------------------- TransRate


def direct_transrate(features, labels, eps):
    """R(Z) - sum_c n_c / n R(Z_c) by log-determinants of the D x D matrices."""
    centred = features - features.mean(axis=0)
    n, d = centred.shape

    def rate(rows):
        return 0.5 * np.linalg.slogdet(np.eye(d) + rows.T @ rows / (len(rows) * eps))[1]

    return rate(centred) - sum(np.mean(labels == c) * rate(centred[labels == c]) for c in np.unique(labels))


@settings(max_examples=25)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4), st.integers(1, 12), st.sampled_from([1e-4, 1e-2, 1.0]))
def test_transrate_is_the_coding_rate_difference_and_not_negative(seed, n_classes, d, eps):
    rng = np.random.RandomState(seed)
    labels = np.r_[np.arange(n_classes), rng.randint(n_classes, size=rng.randint(1, 30))]
    features = rng.normal(size=(len(labels), d)) + rng.normal(size=(n_classes, d))[labels]
    score = transrate_score(features, labels, eps=eps)
    assert score == pytest.approx(direct_transrate(features, labels, eps), rel=1e-9, abs=1e-9)
    assert score >= -1e-9


# ----------------------------------------------------------------------------- GBC


def direct_gbc(features, labels, covariance):
    """-sum over ordered pairs of exp(-D_B), with explicit covariance matrices and determinants."""
    classes = np.unique(labels)
    d = features.shape[1]
    gaussians = {}
    for c in classes:
        rows = features[labels == c]
        variances = rows.var(axis=0)
        if covariance == "spherical":
            variances = np.full(d, variances.mean())
        gaussians[c] = rows.mean(axis=0), np.diag(variances)
    total = 0.0
    for first, second in itertools.permutations(classes, 2):
        (mu_1, sigma_1), (mu_2, sigma_2) = gaussians[first], gaussians[second]
        sigma = (sigma_1 + sigma_2) / 2
        distance = (mu_1 - mu_2) @ np.linalg.inv(sigma) @ (mu_1 - mu_2) / 8 + 0.5 * np.log(
            np.linalg.det(sigma) / np.sqrt(np.linalg.det(sigma_1) * np.linalg.det(sigma_2))
        )
        total += np.exp(-distance)
    return -total


@settings(max_examples=25)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(2, 5),
    st.integers(1, 6),
    st.sampled_from(["diagonal", "spherical"]),
)
def test_gbc_is_the_bhattacharyya_overlap_of_the_class_gaussians(seed, n_classes, d, covariance):
    rng = np.random.RandomState(seed)
    labels = np.r_[np.repeat(np.arange(n_classes), 2), rng.randint(n_classes, size=30)]
    features = (
        rng.normal(size=(len(labels), d)) * rng.uniform(0.5, 2, size=d)
        + rng.normal(size=(n_classes, d))[labels]
    )
    expected = direct_gbc(features, labels, covariance)
    got = gbc_score(features, labels, covariance=covariance, pca_components=None)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert -n_classes * (n_classes - 1) <= got <= 0


def test_gbc_and_parc_reduce_with_pca_first():
    features, labels = _features(60, 12, seed=15)
    reduced = PCA(n_components=5, svd_solver="full").fit_transform(features)
    assert gbc_score(features, labels, pca_components=5) == pytest.approx(
        gbc_score(reduced, labels, pca_components=None), rel=1e-10
    )
    assert parc_score(features, labels, pca_components=5) == pytest.approx(
        parc_score(reduced, labels, pca_components=None), rel=1e-10
    )
    # More components than examples or features: all of them (less the rank's last, without variance).
    assert gbc_score(features, labels, pca_components=100) == pytest.approx(
        gbc_score(PCA(svd_solver="full").fit_transform(features), labels, pca_components=None), rel=1e-10
    )


def test_gbc_refuses_degenerate_class_gaussians():
    features, labels = _features(30, 3, seed=16)
    with pytest.raises(ValueError, match="class 7 of labels has a single example"):
        gbc_score(features, np.r_[labels[:-1], 7])
    dead = np.c_[features, np.zeros(30)]
    with pytest.raises(ValueError, match="do not vary along feature dimension 3"):
        gbc_score(dead, labels, pca_components=None)
    assert np.isfinite(gbc_score(dead, labels, pca_components=None, covariance="spherical"))
    coinciding = features.copy()
    coinciding[labels == 1] = 0.5
    with pytest.raises(ValueError, match="the examples of class 1 coincide"):
        gbc_score(coinciding, labels, pca_components=None, covariance="spherical")
    assert gbc_score(dead, labels) == pytest.approx(gbc_score(features, labels), rel=1e-10)  # PCA drops it


# ----------------------------------------------------------------------------- PARC


def direct_parc(features, labels):
    """Spearman correlation of the two dissimilarity matrices, built pair by pair; dissimilarities
    equal to 12 decimals are ties."""

    def pearson(a, b):
        a, b = a - a.mean(), b - b.mean()
        return a @ b / np.sqrt((a @ a) * (b @ b))

    n = len(labels)
    standardised = (features - features.mean(axis=0)) / features.std(axis=0)
    one_hot = (labels[:, None] == np.unique(labels)[None, :]).astype(float)
    feature_pairs, label_pairs = [], []
    for i, j in itertools.combinations(range(n), 2):
        feature_pairs.append(1 - pearson(standardised[i], standardised[j]))
        label_pairs.append(1 - pearson(one_hot[i], one_hot[j]))
    ranks_f = scipy.stats.rankdata(np.round(feature_pairs, 12))
    ranks_y = scipy.stats.rankdata(np.round(label_pairs, 12))
    return np.corrcoef(ranks_f, ranks_y)[0, 1]


@settings(max_examples=10)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4), st.integers(2, 6))
def test_parc_is_the_rank_correlation_of_the_dissimilarities(seed, n_classes, d):
    rng = np.random.RandomState(seed)
    labels = np.r_[np.repeat(np.arange(n_classes), 2), rng.randint(n_classes, size=20)]
    features = rng.normal(size=(len(labels), d)) + rng.normal(size=(n_classes, d))[labels]
    got = parc_score(features, labels, pca_components=None)
    assert got == pytest.approx(direct_parc(features, labels), rel=1e-9, abs=1e-12)
    assert -1 <= got <= 1


def test_parc_refuses_undefined_correlations():
    features, labels = _features(30, 4, seed=17)
    with pytest.raises(ValueError, match="single dimension"):
        parc_score(features[:, :1], labels, pca_components=None)
    with pytest.raises(ValueError, match="no two examples share a class"):
        parc_score(features[:3], [0, 1, 2])
    # Rows in opposite pairs and a zero row: the columns' means are 0, and the zero row stays
    # zero when standardised.
    symmetric = np.r_[features[:10], -features[:10], np.zeros((1, 4))]
    with pytest.raises(ValueError, match="example 20 are equal in every dimension"):
        parc_score(symmetric, np.r_[labels[:10], labels[:10], 0], pca_components=None)


# ----------------------------------------------------------------------------- properties


# The scores of features and labels, with settings that suit small data.
FEATURE_SCORES = {
    "logme": logme_score,
    "h_score": h_score,
    "knn": lambda features, labels: knn_score(features, labels, n_neighbors=5),
    "sfda": sfda_score,
    "nleep": lambda features, labels: nleep_score(features, labels, mixture_components=4, random_state=0),
    "transrate": transrate_score,
    "gbc": gbc_score,
    "parc": parc_score,
}


def _all_scores(features, probabilities, source, labels):
    return np.array(
        [leep_score(probabilities, labels), nce_score(source, labels)]
        + [score(features, labels) for score in FEATURE_SCORES.values()]
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


@settings(max_examples=8)
@given(st.integers(0, 2**31 - 1), st.integers(2, 4))
def test_feature_scores_do_not_depend_on_the_order_of_the_examples_or_the_class_codes(seed, n_classes):
    rng = np.random.RandomState(seed)
    labels = np.r_[np.repeat(np.arange(n_classes), 3), rng.randint(n_classes, size=30)]
    features = rng.normal(size=(len(labels), 5)) + rng.normal(size=(n_classes, 5))[labels]
    order = rng.permutation(len(labels))
    recoded = rng.permutation(n_classes)[labels]
    for name, score in FEATURE_SCORES.items():
        expected = score(features, labels)
        assert score(features, recoded) == pytest.approx(expected, rel=1e-9, abs=1e-12), name
        if name != "nleep":  # the mixture's initialisation draws examples by position
            assert score(features[order], labels[order]) == pytest.approx(expected, rel=1e-9, abs=1e-12), name


@settings(max_examples=5)
@given(st.integers(0, 2**31 - 1))
def test_features_that_separate_the_classes_score_above_noise(seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(3, size=150)
    noise = rng.normal(size=(150, 6))
    separating = noise.copy()
    separating[:, :3] += 3.0 * np.eye(3)[labels]
    for name, score in FEATURE_SCORES.items():
        assert score(separating, labels) > score(noise, labels), name
    # A source head that knows the classes vs one that guesses.
    informed = np.full((150, 3), 0.05)
    informed[np.arange(150), labels] = 0.9
    uniform = rng.dirichlet(np.ones(3), size=150)
    assert leep_score(informed, labels) > leep_score(uniform, labels)
    assert nce_score(labels, labels) == pytest.approx(0.0)
    assert nce_score(rng.randint(3, size=150), labels) < -0.5


_CONTINUOUS = [0.5, 1.5, 0.25, 2.0]


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
        # Regression targets.
        (lambda: logme_score(np.eye(4), [1.5, 1.5, 1.5, 1.5], target="regression"), "constant"),
        (lambda: h_score(np.eye(4), ["a", "b", "a", "b"], target="regression"), "must be numbers"),
        (lambda: knn_score(np.eye(4), [0.5, 1.5, np.inf, 2.0], target="regression"), "NaN or infinity"),
        (lambda: logme_score(np.eye(4), [0.5, 1.5, 2.5], target="regression"), "3 values for 4 examples"),
        # Scores of classes, given a continuous target.
        *[
            (lambda score=score: score(np.eye(4), _CONTINUOUS), f"{score.__name__}: labels has non-integer")
            for score in (sfda_score, nleep_score, transrate_score, gbc_score, parc_score)
        ],
        (lambda: leep_score(np.full((4, 2), 0.5), _CONTINUOUS), "leep_score: labels has non-integer"),
        (lambda: nce_score([0, 1, 0, 1], _CONTINUOUS), "nce_score: labels has non-integer"),
        # The new scores' other refusals.
        *[
            (
                lambda score=score: score([[0.0, np.nan], [1.0, 2.0]], [0, 1]),
                f"{score.__name__}: features: .*NaN",
            )
            for score in (knn_score, sfda_score, nleep_score, transrate_score, gbc_score, parc_score)
        ],
        *[
            (lambda score=score: score(np.eye(4), [0, 1, 0]), f"{score.__name__}: labels has 3 labels for 4")
            for score in (knn_score, sfda_score, nleep_score, transrate_score, gbc_score, parc_score)
        ],
        *[
            (lambda score=score: score(np.eye(4), ["a"] * 4), f"{score.__name__}: labels has a single class")
            for score in (knn_score, sfda_score, nleep_score, transrate_score, gbc_score, parc_score)
        ],
        (
            lambda: knn_score(np.eye(4), [0, 1, 0, 1]),
            r"n_neighbors=20 needs 21 examples at least \(each example is predicted from 20 others\), got 4",
        ),
        (lambda: knn_score(np.eye(4) * [1, 1, 1, 0], [0, 1, 0, 1], n_neighbors=2), "example 3 are all zero"),
        (lambda: nleep_score(np.ones((12, 2)), [0, 1] * 6, mixture_components=2), "features are constant"),
        (lambda: gbc_score(np.ones((12, 2)), [0, 1] * 6), "features are constant"),
    ],
)
def test_bad_inputs_are_refused_with_a_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: h_score(np.eye(4), [0, 1, 0, 1], shrinkage=1.5), "shrinkage"),
        (lambda: sfda_score(np.eye(4), [0, 1, 0, 1], shrinkage=-0.1), "shrinkage"),
        (lambda: logme_score(np.eye(4), [0, 1, 0, 1], target="ordinal"), "target"),
        (lambda: knn_score(np.eye(4), [0, 1, 0, 1], n_neighbors=0), "n_neighbors"),
        (lambda: knn_score(np.eye(4), [0, 1, 0, 1], n_neighbors=True), "n_neighbors"),
        (lambda: knn_score(np.eye(4), [0, 1, 0, 1], metric="manhattan"), "metric"),
        (lambda: nleep_score(np.eye(4), [0, 1, 0, 1], pca_variance=1.0), "pca_variance"),
        (lambda: nleep_score(np.eye(4), [0, 1, 0, 1], mixture_components=0), "mixture_components"),
        (lambda: transrate_score(np.eye(4), [0, 1, 0, 1], eps=0.0), "eps"),
        (lambda: gbc_score(np.eye(4), [0, 1, 0, 1], covariance="full"), "covariance"),
        (lambda: parc_score(np.eye(4), [0, 1, 0, 1], pca_components=1), "pca_components"),
    ],
)
def test_bad_parameters_are_refused(call, name):
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        call()


# ----------------------------------------------------------------------------- the selector


@parametrize_with_checks([TransferabilitySelector(), TransferabilitySelector(score_name="sfda")])
def test_sklearn_compatible_selector(estimator, check):
    check(estimator)


def test_selector_records_the_name_of_its_score():
    scores = np.array([[-0.7, -0.5, -0.9], [-0.2, -0.6, -0.4]])
    for name in SCORE_NAMES:
        selector = TransferabilitySelector(score_name=name).fit(scores)
        assert f"score_name='{name}'" in repr(selector)
        np.testing.assert_array_equal(selector.predict(scores), [1, 0])  # the name leaves the choice alone
    with pytest.raises(ValueError, match="'score_name' parameter .* Got 'kendall'"):
        TransferabilitySelector(score_name="kendall").fit(scores)


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


@settings(max_examples=15)
@given(n_dead=st.integers(1, 6), value=st.floats(-3, 3), seed=st.integers(0, 2**16))
def test_sfda_leaves_dead_units_out(n_dead, value, seed):
    """Features constant over the examples (dead ReLU units) change no class's score relative to
    another: SFDA is the same with them, and they never make the covariance singular, even
    where the paper's shrinkage is negligible (features of large spread)."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(3, size=60)
    features = 4.0 * rng.normal(size=(60, 5)) + 6.0 * np.eye(5)[labels]
    dead = np.full((60, n_dead), value)
    with_dead = np.hstack([dead[:, : n_dead // 2], features, dead[:, n_dead // 2 :]])
    assert sfda_score(with_dead, labels) == pytest.approx(sfda_score(features, labels), rel=1e-12)
    with pytest.raises(ValueError, match="constant over the examples"):
        sfda_score(dead, labels)
