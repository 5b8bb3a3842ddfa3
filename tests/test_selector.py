"""Model2VecSelector: asymmetric TASK2VEC and MODEL2VEC model selection (paper, sec. 3.3-3.4)."""

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from sklearn import config_context
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils import shuffle
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_task2vec._kernels import symmetric_distances
from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.selector import (
    Model2VecSelector,
    model_selection_scorer,
    relative_error_increase,
    soft_labels,
)


# The API contract does not depend on the amount of training: the common checks run on a
# selector trained 5x faster than the defaults (8 runs of 30 epochs at a larger step), still
# accurate enough for check_classifiers_train (about 0.89 training accuracy on its 3 blobs,
# 0.83 required). test_defaults_fit_the_blobs_of_the_common_checks checks the defaults there.
@parametrize_with_checks([Model2VecSelector(n_init=8, max_iter=30, learning_rate=0.2)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def common_check_blobs():
    """check_classifiers_train's 3-class and binary problems, shifted to be non-negative."""
    X, y = make_blobs(n_samples=300, random_state=0)
    X, y = shuffle(X, y, random_state=7)
    X = StandardScaler().fit_transform(X)
    X_binary, y_binary = X[y != 2], y[y != 2]
    return (X - X.min(), y), (X_binary - X_binary.min(), y_binary)


@pytest.mark.parametrize("problem", ["3 classes", "2 classes"])
def test_defaults_fit_the_blobs_of_the_common_checks(problem):
    """The default selector (40 runs of 81 epochs) passes check_classifiers_train's bar."""
    X, y = common_check_blobs()[problem == "2 classes"]
    selector = Model2VecSelector(random_state=0).fit(X, y)
    assert selector.n_iter_ == 81
    assert np.mean(selector.predict(X) == y) > 0.83  # about 0.9 (3 classes) and 0.98 (2 classes)
    np.testing.assert_allclose(selector.predict_proba(X).sum(axis=1), 1.0)


def test_decision_proba_consistency_on_non_negative_tasks():
    """scikit-learn's check_decision_proba_consistency, on its data shifted to be non-negative."""
    X, y = make_blobs(n_samples=100, random_state=0, centers=[(2, 2), (4, 4)], cluster_std=1.0)
    X = X - X.min()
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0)
    selector = Model2VecSelector(random_state=0).fit(X_train, y_train)
    proba = selector.predict_proba(X_test)[:, 1].round(decimals=10)
    scores = selector.decision_function(X_test).round(decimals=10)
    np.testing.assert_array_equal(rankdata(proba), rankdata(scores))


# ------------------------------------------------------------------------------------------
# Synthetic tasks: embeddings concentrated on one group of features
# ------------------------------------------------------------------------------------------


def group_tasks(n_tasks, n_groups=4, width=5, seed=0, noise=0.5, boost=10.0):
    """Fisher-like task embeddings: a task of group g has most of its mass on features of g."""
    rng = np.random.RandomState(seed)
    groups = rng.randint(n_groups, size=n_tasks)
    X = 0.1 * np.exp(rng.normal(scale=noise, size=(n_tasks, n_groups * width)))
    for i, g in enumerate(groups):
        X[i, g * width : (g + 1) * width] *= boost * np.exp(rng.normal(scale=0.3))
    return X, groups


def group_experts(n_groups=4, width=5):
    """Embeddings of the tasks the experts were trained on: expert j on group j."""
    F = np.full((n_groups, n_groups * width), 0.1)
    for j in range(n_groups):
        F[j, j * width : (j + 1) * width] = 1.0
    return F


def errors_for(best, n_experts=4, seed=0):
    """Test errors: the best expert about 0.1, the others about 0.3."""
    rng = np.random.RandomState(seed)
    errors = 0.3 + 0.05 * rng.uniform(size=(len(best), n_experts))
    errors[np.arange(len(best)), best] = 0.1 + 0.02 * rng.uniform(size=len(best))
    return errors


def numpy_asymmetric(model_embeddings, tasks, trivial, alpha):
    """d_asym(m_j -> t) with the numpy distances: (n_tasks, n_experts)."""
    d_tasks = pairwise_task_distances(model_embeddings, tasks)
    d_trivial = pairwise_task_distances(model_embeddings, trivial[None, :])
    return (d_tasks - alpha * d_trivial).T


# ------------------------------------------------------------------------------------------
# The torch distance
# ------------------------------------------------------------------------------------------


def fisher_like(n, n_features=12, seed=0, sparsity=0.3):
    rng = np.random.RandomState(seed)
    X = np.exp(rng.normal(scale=2.0, size=(n, n_features)))
    X[rng.uniform(size=X.shape) < sparsity] = 0.0
    X[:, 0] = 0.0  # a filter no task uses
    return X


def test_torch_distance_matches_numpy():
    M, T = fisher_like(5, seed=0), fisher_like(7, seed=1)
    M[1] = 0.0  # a zero embedding: distance 1 to non-zero ones, 0 to zero ones
    T[2] = 0.0
    T[3] = M[2] * 3.0  # same direction: distance 0
    T[4] *= 1e300  # no overflow in M + T
    torch_distances = symmetric_distances(torch.from_numpy(M), torch.from_numpy(T)).numpy()
    np.testing.assert_allclose(torch_distances, pairwise_task_distances(M, T), rtol=1e-12, atol=1e-13)
    assert torch_distances[1, 2] == 0.0 and torch_distances[1, 0] == 1.0
    tiny_M, tiny_T = M[[0, 2]] * 1e-300, T[[0, 1, 5]] * 1e-300  # sums below the normal range
    np.testing.assert_allclose(
        symmetric_distances(torch.from_numpy(tiny_M), torch.from_numpy(tiny_T)).numpy(),
        pairwise_task_distances(M[[0, 2]], T[[0, 1, 5]]),
        rtol=1e-12,
        atol=1e-13,
    )


def test_torch_distance_gradient():
    """The hand-written backward pass against finite differences (float64)."""
    rng = np.random.RandomState(0)
    M = torch.from_numpy(np.exp(rng.normal(size=(3, 6)))).requires_grad_()
    T = fisher_like(4, n_features=6, seed=2)
    T[1, :] = 0.0  # distance constant (1): zero gradient
    T = torch.from_numpy(T)
    assert torch.autograd.gradcheck(lambda m: symmetric_distances(m, T), (M,), eps=1e-6, atol=1e-7)
    # Filters on scales far apart (the kernel rescales each filter by a power of two).
    scales = torch.from_numpy(np.array([1e-200, 1.0, 1e150, 1.0, 1e-30, 1e250]))
    big_M = (M.detach() * scales).requires_grad_()
    analytic = torch.autograd.grad(symmetric_distances(big_M, T * scales).sum(), big_M)[0]
    expected = torch.autograd.grad(symmetric_distances(M, T).sum(), M)[0] / scales
    np.testing.assert_allclose(analytic.numpy(), expected.numpy(), rtol=1e-10)


# ------------------------------------------------------------------------------------------
# Labels, the selector's math
# ------------------------------------------------------------------------------------------


def test_soft_labels():
    errors = np.array([[0.1, 0.2, 0.4], [0.3, 0.3, 0.3], [0.5, 0.1, 0.2]])
    labels = soft_labels(errors, temperature=2.0)
    standardised = (errors[0] - errors[0].mean()) / errors[0].std()
    expected = np.exp(-2.0 * standardised) / np.exp(-2.0 * standardised).sum()
    np.testing.assert_allclose(labels[0], expected, rtol=1e-12)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(labels[1], 1 / 3)  # equal errors: uniform
    np.testing.assert_array_equal(labels.argmax(axis=1)[[0, 2]], [0, 1])
    np.testing.assert_array_equal(soft_labels(errors, temperature=1e6)[[0, 2]], np.eye(3)[[0, 1]])  # one-hot
    np.testing.assert_allclose(soft_labels(errors, temperature=0.0), 1 / 3)
    # Invariant to the scale and offset of the errors of a task.
    np.testing.assert_allclose(soft_labels(3 * errors + 1, temperature=2.0), labels, rtol=1e-12)


def test_sharp_soft_labels_train_like_the_best_expert():
    """errors with label_temperature -> infinity trains exactly like y = argmin(errors)."""
    X, groups = group_tasks(40, seed=0)
    errors = errors_for(groups, seed=1)
    params = {"max_iter": 10, "n_init": 3, "random_state": 0}
    with_errors = Model2VecSelector(label_temperature=1e6, **params).fit(X, groups, errors=errors)
    with_labels = Model2VecSelector(**params).fit(X, errors.argmin(axis=1))
    np.testing.assert_allclose(with_errors.model_embeddings_, with_labels.model_embeddings_, rtol=1e-10)
    # A soft temperature trains on other targets.
    soft = Model2VecSelector(label_temperature=0.5, **params).fit(X, groups, errors=errors)
    assert not np.allclose(soft.model_embeddings_, with_labels.model_embeddings_)


@pytest.mark.parametrize("n_experts", [2, 4])
def test_max_iter_0_is_asymmetric_task2vec(n_experts):
    """argmin of d_asym(F_j -> t) = d_sym(F_j, t) - alpha d_sym(F_j, t_0), computed with numpy."""
    rng = np.random.RandomState(0)
    F = fisher_like(n_experts, seed=3, sparsity=0.1)
    X = fisher_like(30, seed=4, sparsity=0.1)
    trivial = np.exp(rng.normal(scale=2.0, size=X.shape[1]))
    selector = Model2VecSelector(model_embeddings=F, trivial_embedding=trivial, alpha=0.3, max_iter=0)
    selector.fit(X, rng.randint(n_experts, size=len(X)))
    expected = numpy_asymmetric(F, X, trivial, alpha=0.3)
    np.testing.assert_array_equal(selector.predict(X), expected.argmin(axis=1))
    scores = selector.decision_function(X)
    if n_experts == 2:
        np.testing.assert_allclose(scores, expected[:, 0] - expected[:, 1], atol=1e-12)
    else:
        np.testing.assert_allclose(scores, -expected, atol=1e-12)
    np.testing.assert_allclose(selector.model_embeddings_, F, rtol=1e-14)
    assert selector.n_iter_ == 0
    proba = selector.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.log(proba), selector.predict_log_proba(X), atol=1e-12)


def test_trivial_embedding_normalisation_is_exact():
    """Dividing X, the experts and t_0 by t_0 leaves the fitted selector unchanged."""
    X, groups = group_tasks(40, seed=0)
    trivial = np.exp(np.random.RandomState(1).normal(size=X.shape[1]))
    params = {"max_iter": 15, "n_init": 2, "random_state": 0}
    raw = Model2VecSelector(trivial_embedding=trivial, **params).fit(X * trivial, groups)
    normalised = Model2VecSelector(**params).fit(X, groups)
    np.testing.assert_allclose(raw.model_embeddings_, normalised.model_embeddings_ * trivial, rtol=1e-8)
    np.testing.assert_allclose(
        raw.decision_function(X * trivial), normalised.decision_function(X), atol=1e-10
    )


def test_unknown_experts_start_at_the_mean_of_their_tasks():
    """model_embeddings=None, or a zero row (the paper's F_j = 0): start at the class mean."""
    X, groups = group_tasks(40, seed=0)
    F = group_experts()
    F[2] = 0.0
    frozen = {"max_iter": 1, "learning_rate": 1e-12, "n_init": 1}  # one negligible step
    selector = Model2VecSelector(model_embeddings=F, **frozen).fit(X, groups)
    np.testing.assert_allclose(selector.model_embeddings_[[0, 1, 3]], F[[0, 1, 3]], rtol=1e-9)
    np.testing.assert_allclose(selector.model_embeddings_[2], X[groups == 2].mean(axis=0), rtol=1e-9)
    centroids = Model2VecSelector(**frozen).fit(X, groups).model_embeddings_
    np.testing.assert_allclose(centroids, [X[groups == j].mean(axis=0) for j in range(4)], rtol=1e-9)


def test_gamma_learned_positive_or_fixed():
    X, groups = group_tasks(40, seed=0)
    learned = Model2VecSelector(max_iter=20, n_init=2, random_state=0).fit(X, groups)
    assert np.isfinite(learned.gamma_) and learned.gamma_ > 0
    assert learned.gamma_ > 1.0  # separable tasks: confident predictions
    fixed = Model2VecSelector(gamma=2.5, max_iter=20, n_init=2, random_state=0).fit(X, groups)
    assert fixed.gamma_ == 2.5
    np.testing.assert_allclose(
        fixed.predict_proba(X[:3]), torch.softmax(torch.from_numpy(2.5 * fixed.decision_function(X[:3])), 1)
    )


def test_deterministic_for_a_random_state():
    X, groups = group_tasks(30, seed=0)
    first = Model2VecSelector(max_iter=10, n_init=4, random_state=3).fit(X, groups)
    second = Model2VecSelector(max_iter=10, n_init=4, random_state=3).fit(X, groups)
    np.testing.assert_array_equal(first.model_embeddings_, second.model_embeddings_)
    assert first.gamma_ == second.gamma_


def test_expert_names():
    X, groups = group_tasks(30, seed=0)
    names = np.array(["resnet-birds", "resnet-cars", "resnet-fungi", "resnet-food"])
    errors = errors_for(groups, seed=1)
    selector = Model2VecSelector(experts=names, max_iter=10, n_init=2, random_state=0)
    selector.fit(X, names[groups], errors=errors)
    np.testing.assert_array_equal(selector.classes_, names)  # in column order, not sorted
    assert set(selector.predict(X)) <= set(names)
    assert selector.model_embeddings_.shape == (4, X.shape[1])
    # With errors and no names, the experts are the columns 0 .. k-1 even if y misses some.
    by_column = Model2VecSelector(max_iter=5, n_init=1).fit(
        X[groups < 2], groups[groups < 2], errors=errors[groups < 2]
    )
    np.testing.assert_array_equal(by_column.classes_, np.arange(4))


def test_expert_names_or_column_indices_in_fit_and_metric():
    """With experts=names, y and the metric take names or column indices alike (issue 15)."""
    X, groups = group_tasks(30, seed=0)
    names = np.array(["resnet-birds", "resnet-cars", "resnet-fungi", "resnet-food"])
    errors = errors_for(groups, seed=1)
    params = {"experts": names, "max_iter": 10, "n_init": 2, "random_state": 0}
    by_index = Model2VecSelector(**params).fit(X, errors.argmin(axis=1), errors=errors)
    by_name = Model2VecSelector(**params).fit(X, names[errors.argmin(axis=1)], errors=errors)
    np.testing.assert_array_equal(by_index.model_embeddings_, by_name.model_embeddings_)
    chosen = by_index.predict(X)
    assert set(chosen) <= set(names)
    increase = relative_error_increase(errors, chosen, experts=by_index.classes_)
    columns = np.array([names.tolist().index(name) for name in chosen])
    assert increase == relative_error_increase(errors, columns)
    assert increase == -model_selection_scorer(by_index, X, errors=errors)
    # One-hot training (no errors) maps indices to names the same way.
    one_hot = Model2VecSelector(**params).fit(X, groups)
    np.testing.assert_array_equal(
        one_hot.model_embeddings_, Model2VecSelector(**params).fit(X, names[groups]).model_embeddings_
    )
    with pytest.raises(ValueError, match=r"pass experts=\.\.\. .*experts=selector.classes_"):
        relative_error_increase(errors, chosen)
    with pytest.raises(ValueError, match="not experts"):
        relative_error_increase(errors, np.full(len(X), "resnet-dogs"), experts=names)
    with pytest.raises(ValueError, match="name every column"):
        relative_error_increase(errors, chosen, experts=names[:3])
    # Integer names are names: their positions would be ambiguous.
    integers = [10, 20, 30, 40]
    assert relative_error_increase(errors, np.full(len(X), 20), experts=integers) == pytest.approx(
        relative_error_increase(errors, np.full(len(X), 1))
    )
    with pytest.raises(ValueError, match="read as names"):
        relative_error_increase(errors, np.full(len(X), 1), experts=integers)


# ------------------------------------------------------------------------------------------
# Metric, scorer, metadata routing
# ------------------------------------------------------------------------------------------


def test_relative_error_increase_by_hand():
    errors = np.array([[0.10, 0.20, 0.40], [0.30, 0.15, 0.60], [0.25, 0.35, 0.05]])
    # oracle mean (0.10 + 0.15 + 0.05) / 3 = 0.1; chosen mean (0.20 + 0.15 + 0.25) / 3 = 0.2.
    assert relative_error_increase(errors, [1, 1, 0]) == pytest.approx(1.0)
    assert relative_error_increase(errors, errors.argmin(axis=1)) == 0.0
    # Integer-valued floats are indices too: chosen 0.40, 0.15, 0.05 (mean 0.2).
    assert relative_error_increase(errors, np.array([2.0, 1.0, 2.0])) == pytest.approx(1.0)


def test_scorer_by_hand():
    """The scorer is minus the relative error increase of the selector's predictions."""
    F = group_experts(n_groups=3)
    X = F[[0, 1, 2, 0]] * 2.0  # each task is closest to the expert of its group
    errors = np.array([[0.1, 0.2, 0.3], [0.4, 0.3, 0.1], [0.2, 0.3, 0.1], [0.2, 0.1, 0.3]])
    selector = Model2VecSelector(model_embeddings=F, max_iter=0).fit(X, [0, 1, 2, 0])
    np.testing.assert_array_equal(selector.predict(X), [0, 1, 2, 0])
    # chosen errors 0.1, 0.3, 0.1, 0.2 (mean 0.175); oracle 0.1, 0.1, 0.1, 0.1 (mean 0.1).
    assert model_selection_scorer(selector, X, None, errors=errors) == pytest.approx(-0.75)
    names = np.array(["a", "b", "c"])
    named = Model2VecSelector(model_embeddings=F, max_iter=0, experts=names).fit(X, names[[0, 1, 2, 0]])
    assert model_selection_scorer(named, X, None, errors=errors) == pytest.approx(-0.75)
    with pytest.raises(ValueError, match="metadata routing"):
        model_selection_scorer(selector, X, None)


def test_errors_routed_through_pipeline_and_grid_search():
    X, groups = group_tasks(45, seed=0)
    best = (groups + 1) % 4
    errors = errors_for(best, seed=1)
    params = {"max_iter": 10, "n_init": 2, "random_state": 0}
    with config_context(enable_metadata_routing=True):
        selector = Model2VecSelector(**params).set_fit_request(errors=True)
        assert selector.get_metadata_routing().fit.requests == {"errors": True}
        pipeline = Pipeline([("embeddings", FunctionTransformer()), ("selector", selector)])
        pipeline.fit(X, best, errors=errors)
        direct = Model2VecSelector(**params).fit(X, best, errors=errors)
        np.testing.assert_array_equal(pipeline[-1].model_embeddings_, direct.model_embeddings_)

        cv = KFold(3, shuffle=True, random_state=0)
        search = GridSearchCV(
            pipeline, {"selector__alpha": [0.0, 0.15]}, scoring=model_selection_scorer, cv=cv
        )
        search.fit(X, best, errors=errors)
    # The split scores are those computed by hand on the same folds.
    for candidate, alpha in enumerate([0.0, 0.15]):
        for split, (train, test) in enumerate(cv.split(X)):
            fold = Model2VecSelector(alpha=alpha, **params).fit(X[train], best[train], errors=errors[train])
            expected = -relative_error_increase(errors[test], fold.predict(X[test]))
            assert search.cv_results_[f"split{split}_test_score"][candidate] == pytest.approx(
                expected, abs=1e-12
            )
    assert search.best_score_ <= 0.0


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

X_OK, Y_OK = group_tasks(12, seed=0)
E_OK = errors_for(Y_OK)


def with_entry(value, at=(0, 0)):
    X = X_OK.copy()
    X[at] = value
    return X


@pytest.mark.parametrize(
    "params, X, y, errors, match",
    [
        ({}, with_entry(np.nan), Y_OK, None, "NaN"),
        ({}, with_entry(np.inf), Y_OK, None, "infinity"),
        ({}, with_entry(-1e-3), Y_OK, None, "Negative values"),
        ({}, X_OK, Y_OK, E_OK[:-1], "one row per task"),
        ({"experts": [0, 1, 2, 3]}, X_OK, Y_OK, E_OK[:, :3], "one of its columns per expert"),
        ({}, X_OK, Y_OK, E_OK[:, :3], "not experts"),  # 3 columns: experts 0, 1, 2
        ({}, X_OK, Y_OK, np.where(E_OK > 0.2, np.nan, E_OK), "NaN"),
        ({"model_embeddings": group_experts()[:, :-1]}, X_OK, Y_OK, None, "as many features"),
        ({"model_embeddings": -group_experts()}, X_OK, Y_OK, None, "Negative values"),
        ({"model_embeddings": group_experts()[:3]}, X_OK, Y_OK, None, "not experts"),
        ({"model_embeddings": group_experts()[:3]}, X_OK, Y_OK, E_OK, "one of its rows per expert"),
        ({"trivial_embedding": np.ones(X_OK.shape[1] + 1)}, X_OK, Y_OK, None, "one entry per feature"),
        (
            {"trivial_embedding": np.r_[0.0, np.ones(X_OK.shape[1] - 1)]},
            X_OK,
            Y_OK,
            None,
            "strictly positive",
        ),
        ({"experts": ["a", "b", "c", "d"]}, X_OK, np.array(list("abcx"))[Y_OK], None, "not experts"),
        ({"experts": ["a", "b", "c"]}, X_OK, Y_OK, None, "column indices outside \\[0, 2\\]"),
        ({"experts": [10, 20, 30, 40]}, X_OK, Y_OK, None, "integer labels are read as names"),
        ({"experts": ["a", "b", "a", "d"]}, X_OK, Y_OK, None, "repeat"),
        ({"max_iter": 0}, X_OK, Y_OK, None, "needs model_embeddings"),
        ({"gamma": 0.0}, X_OK, Y_OK, None, "gamma"),
        ({"n_init": 0}, X_OK, Y_OK, None, "n_init"),
        ({"alpha": -0.1}, X_OK, Y_OK, None, "alpha"),
        ({"experts": "abcd"}, X_OK, Y_OK, None, "'experts' parameter"),
        ({"trivial_embedding": 1.0}, X_OK, Y_OK, None, "'trivial_embedding' parameter"),
        ({}, X_OK, np.zeros(len(X_OK), dtype=int), None, "at least 2 classes"),
    ],
)
def test_bad_input(params, X, y, errors, match):
    with pytest.raises(ValueError, match=match):
        Model2VecSelector(**{"max_iter": 2, "n_init": 1, **params}).fit(X, y, errors=errors)


@pytest.mark.parametrize(
    "name, value",
    [
        ("alpha", np.inf),
        ("alpha", np.nan),
        ("gamma", -1.0),
        ("label_temperature", -1.0),
        ("learning_rate", 0.0),
        ("weight_decay", -1e-4),
        ("max_iter", -1),
        ("max_iter", 2.0),  # an integer-valued float is not a number of epochs
        ("n_init", 1.5),
        ("random_state", "0"),
        # True is an Integral to Python, but alpha=True or n_init=True is a mistake.
        ("alpha", True),
        ("gamma", True),
        ("label_temperature", True),
        ("learning_rate", True),
        ("weight_decay", False),
        ("max_iter", True),
        ("n_init", True),
    ],
)
def test_bad_parameter(name, value):
    selector = Model2VecSelector(**{"max_iter": 2, "n_init": 1, name: value})
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of Model2VecSelector must be"):
        selector.fit(X_OK, Y_OK)


def test_parameters_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        Model2VecSelector(0.15)
    with pytest.raises(TypeError, match="positional"):
        soft_labels(E_OK, 20.0)


def test_bad_arguments_of_the_functions():
    for temperature in (-1.0, np.inf, True):
        with pytest.raises(InvalidParameterError, match="'temperature' parameter of soft_labels"):
            soft_labels(E_OK, temperature=temperature)
    with pytest.raises(InvalidParameterError, match="'chosen' parameter of relative_error_increase"):
        relative_error_increase(E_OK, 0)
    with pytest.raises(ValueError, match="chosen must be 1-D"):
        relative_error_increase(E_OK, [0, 1])


def test_bad_input_at_predict():
    selector = Model2VecSelector(max_iter=2, n_init=1).fit(X_OK, Y_OK)
    with pytest.raises(ValueError, match="Negative values"):
        selector.predict(with_entry(-1.0))
    with pytest.raises(ValueError, match="features"):
        selector.predict(X_OK[:, :-1])
    with pytest.raises(ValueError, match="outside"):
        relative_error_increase(E_OK, np.full(len(E_OK), 4))


# ------------------------------------------------------------------------------------------
# Learning
# ------------------------------------------------------------------------------------------


def test_assigns_tasks_to_the_expert_of_their_feature_group():
    """Tasks whose Fisher mass is on different feature groups, under cross-validation."""
    X, groups = group_tasks(100, seed=0, noise=0.7, boost=3.0)  # noisy: the groups overlap
    cv = KFold(4, shuffle=True, random_state=0)
    accuracy = cross_val_score(Model2VecSelector(random_state=0), X, groups, cv=cv)
    assert accuracy.mean() > 0.75  # chance: 0.25; about 0.9 over random states


def test_model2vec_beats_task2vec_when_the_training_task_misleads():
    """Expert j was trained on group j but is the best expert on group j + 1.

    Asymmetric TASK2VEC follows the training tasks and picks the wrong expert; MODEL2VEC learns
    the bias b_j from tasks with known errors and picks the right one on held-out tasks.
    """
    F = group_experts()
    X_train, groups_train = group_tasks(80, seed=2)
    X_test, groups_test = group_tasks(80, seed=3)
    errors_train = errors_for((groups_train - 1) % 4, seed=4)
    errors_test = errors_for((groups_test - 1) % 4, seed=5)
    y_train = errors_train.argmin(axis=1)

    task2vec = Model2VecSelector(model_embeddings=F, max_iter=0).fit(X_train, y_train, errors=errors_train)
    model2vec = Model2VecSelector(model_embeddings=F, n_init=1, random_state=0)  # the paper's single run
    model2vec.fit(X_train, y_train, errors=errors_train)

    task2vec_increase = relative_error_increase(errors_test, task2vec.predict(X_test))
    model2vec_increase = relative_error_increase(errors_test, model2vec.predict(X_test))
    assert task2vec_increase > 1.0  # about 2: the error of a wrong expert
    assert model2vec_increase < 0.1 * task2vec_increase
    assert np.mean(model2vec.predict(X_test) == errors_test.argmin(axis=1)) > 0.9
    # The learned expert j moved towards group j + 1.
    width = 5
    for j in range(4):
        mass = model2vec.model_embeddings_[j].reshape(4, width).sum(axis=1)
        assert mass.argmax() == (j + 1) % 4
