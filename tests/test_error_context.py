"""Errors keep their context: the failed task's name in every pass, the finished rows, the
parameters validated again after ``set_params``, and discovery's unscorable candidates.

Failures are simulated where they happen on a GPU (an out-of-memory error in any pass of one
task) by monkeypatching the pass's function for that task only.
"""

import copy
import inspect
import warnings
from contextlib import nullcontext

import joblib
import numpy as np
import pytest
import torch
from sklearn import config_context
from sklearn.utils._param_validation import (
    InvalidParameterError,
    generate_invalid_param_val,
    make_constraint,
)

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector, _pipeline
from sklearn_task2vec._utils import with_context
from sklearn_task2vec.discovery import TaskDiscovery
from sklearn_task2vec.transferability import TransferabilitySelector

# Task 1 has fewer examples than the others, which is how a patched pass recognises it.
N_EXAMPLES, N_FAILING = 40, 32


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny probes: threads gain nothing and cost a lot on a busy machine."""


def make_tasks():
    rng = np.random.RandomState(0)
    tasks = []
    for index, n in enumerate((N_EXAMPLES, N_FAILING, N_EXAMPLES)):
        X = rng.normal(size=(n, 4))
        tasks.append((X, (X[:, index] > 0).astype(int)))
    return tasks


def is_task_one(argument):
    """Whether a pass's argument belongs to the task of ``N_FAILING`` examples (task 1 of
    :func:`make_tasks`): its coerced task, its examples' features or labels, or their number."""
    if isinstance(argument, int) and not isinstance(argument, bool):
        return argument == N_FAILING
    if isinstance(argument, torch.Tensor):
        return argument.dim() >= 1 and len(argument) == N_FAILING
    return len(getattr(argument, "labels", ())) == N_FAILING


# Each pass: the function the embedder's pipeline calls, and the method that runs it.
PASSES = {
    "features": ("task_features", "montecarlo"),
    "head": ("train_head", "montecarlo"),
    "fisher": ("task_fisher", "exact"),
    "variational": ("variational_fisher", "variational"),
}
ERRORS = {
    "out-of-memory": lambda: torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    "runtime": lambda: RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
}


def failing(monkeypatch, name, make_error):
    """Make the pipeline's ``name`` raise ``make_error()`` for task 1; returns the errors raised."""
    original, raised = getattr(_pipeline, name), []

    def fail_for_task_one(*args, **kwargs):
        if any(is_task_one(argument) for argument in (*args, *kwargs.values())):
            raised.append(make_error())
            raise raised[-1]
        return original(*args, **kwargs)

    monkeypatch.setattr(_pipeline, name, fail_for_task_one)
    return raised


def causes(error):
    """The chain of ``error``'s causes."""
    chain = []
    while error.__cause__ is not None:
        chain.append(error := error.__cause__)
    return chain


def embedder(method, **params):
    return FisherTaskEmbedder(
        method=method, variational_steps=3, variational_tol=0.0, random_state=0, **params
    )


def backend(n_jobs):
    # Threads: the patched pass is seen by every worker.
    return joblib.parallel_config(backend="threading") if n_jobs else nullcontext()


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("step", PASSES)
@pytest.mark.parametrize("n_jobs", [None, 2])
def test_a_failed_pass_is_named_by_its_task_and_keeps_its_type(monkeypatch, step, error, n_jobs):
    name, method = PASSES[step]
    expected = embedder(method).fit_transform(make_tasks())
    raised = failing(monkeypatch, name, ERRORS[error])
    with backend(n_jobs), pytest.raises(type(raised_type := ERRORS[error]())) as caught:
        embedder(method, n_jobs=n_jobs).fit_transform(make_tasks())
    assert type(caught.value) is type(raised_type)  # an out-of-memory error stays one
    assert str(caught.value).startswith(f"task 1: {raised_type}")
    assert raised[0] in causes(caught.value)  # the original, with its traceback, is chained
    assert "(1 task had finished: their rows are not returned; pass memory=<a folder>" in str(caught.value)
    # on_error="warn": the other tasks' rows are kept, exactly.
    kept = embedder(method, n_jobs=n_jobs, on_error="warn")
    with (
        backend(n_jobs),
        pytest.warns(UserWarning, match=f"Task 1 failed and its row is NaN.*task 1: {raised_type}"),
    ):
        rows = kept.fit_transform(make_tasks())
    assert np.isnan(rows[1]).all()
    np.testing.assert_array_equal(rows[[0, 2]], expected[[0, 2]], err_msg=repr(kept.errors_))
    assert list(kept.errors_) == [1] and type(kept.errors_[1]) is type(raised_type)
    assert str(kept.errors_[1]).startswith("task 1: ")


def test_an_out_of_memory_error_in_the_probe_stays_one():
    class ProbeOutOfMemoryOnTaskOne(torch.nn.Module):
        """A probe whose forward runs out of memory on task 1's batch (all its examples)."""

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            if len(x) == N_FAILING:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory in the probe")
            return torch.relu(self.linear(x))

    probe = ProbeOutOfMemoryOnTaskOne()
    with pytest.raises(torch.cuda.OutOfMemoryError, match="^task 1: CUDA out of memory in the probe"):
        FisherTaskEmbedder(probe=probe, random_state=0).fit_transform(make_tasks())


def test_with_raise_the_finished_rows_are_in_the_cache_and_a_rerun_computes_the_rest(
    monkeypatch, tmp_path, counted
):
    computed = counted
    with monkeypatch.context() as patch:
        failing(patch, "task_fisher", ERRORS["out-of-memory"])
        with pytest.raises(torch.cuda.OutOfMemoryError) as caught:
            embedder("exact", memory=tmp_path).fit_transform(make_tasks())
    assert f"(1 task had finished: their rows are kept in the cache, {tmp_path / 'sklearn_task2vec'}" in str(
        caught.value
    )
    assert computed == ["task 0", "task 1"]
    computed.clear()
    rows = embedder("exact", memory=tmp_path).fit_transform(make_tasks())
    assert computed == ["task 1", "task 2"]  # task 0 was read from the cache
    np.testing.assert_array_equal(rows, embedder("exact").fit_transform(make_tasks()))


def test_an_error_of_the_first_task_says_nothing_of_finished_rows(monkeypatch):
    tasks = make_tasks()
    tasks[0], tasks[1] = tasks[1], tasks[0]
    failing(monkeypatch, "task_fisher", ERRORS["runtime"])
    with pytest.raises(RuntimeError) as caught:
        embedder("exact").fit_transform(tasks)
    assert str(caught.value) == f"task 0: {ERRORS['runtime']()}"


class NeedsTwoArguments(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        OSError("disk"),
        torch.cuda.OutOfMemoryError("oom"),
        KeyError("a key"),  # quotes its message
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),  # five arguments
        NeedsTwoArguments(7, "detail"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_with_context_keeps_the_type_and_the_cause_of_any_error(error):
    named = with_context(error, "task 3", " (and more)")
    assert type(named) is type(error)
    if named is error:  # a type that cannot be rebuilt from a message: noted instead
        assert error.__notes__ == [f"task 3: {error} (and more)"]
    else:
        assert str(named) == f"task 3: {error} (and more)" and named.__cause__ is error


@pytest.mark.parametrize("message", ["task 3: already named", "task 3 is empty"])
def test_with_context_does_not_name_a_task_twice(message):
    error = ValueError(message)
    assert with_context(error, "task 3") is error
    assert str(with_context(error, "task 3", " (more)")) == f"{message} (more)"
    assert str(with_context(ValueError("task 31: other"), "task 3")) == "task 3: task 31: other"


# ---------------------------------------------------------------- parameters after set_params
def _tasks():
    return make_tasks()[:2]


X_SCORES = np.abs(np.random.RandomState(0).normal(size=(6, 3))) + 0.1


def fitted_estimators():
    """Every estimator of the package, fitted, with each method that reads its parameters
    after ``fit`` and the arguments to call it with."""
    sequence = FisherTaskEmbedder(random_state=0, head_epochs=5).fit(_tasks())
    X, y = make_tasks()[0]
    one_task = FisherTaskEmbedder(random_state=0, head_epochs=5).fit(X, y)
    selector = Model2VecSelector(max_iter=2, n_init=1, random_state=0).fit(X_SCORES, [0, 1, 2, 0, 1, 2])
    transferability = TransferabilitySelector(experts=["a", "b", "c"]).fit(X_SCORES)
    discovery = TaskDiscovery(budget=4, n_candidates=4, score_params={"n_steps": 5}, random_state=0)
    discovery.fit(X.astype(np.float32))
    return {
        "FisherTaskEmbedder(tasks)": (sequence, {"transform": (_tasks(),), "get_feature_names_out": ()}),
        "FisherTaskEmbedder(X, y)": (one_task, {"transform": (X,), "get_feature_names_out": ()}),
        "Model2VecSelector": (
            selector,
            {
                "predict": (X_SCORES,),
                "predict_proba": (X_SCORES,),
                "predict_log_proba": (X_SCORES,),
                "decision_function": (X_SCORES,),
                "score": (X_SCORES, [0, 1, 2, 0, 1, 2]),
            },
        ),
        "TransferabilitySelector": (
            transferability,
            {"predict": (X_SCORES,), "decision_function": (X_SCORES,)},
        ),
        "TaskDiscovery": (discovery, {}),  # fit only: nothing reads its parameters afterwards
    }


# Methods every scikit-learn estimator has that do not read the estimator's own parameters.
BASE_METHODS = {"fit", "fit_transform", "get_params", "set_params", "get_metadata_routing", "set_output"}


@pytest.fixture(scope="module")
def estimators():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny fits' convergence warnings
        return fitted_estimators()


def test_every_method_of_every_estimator_is_checked(estimators):
    for name, (estimator, methods) in estimators.items():
        public = {
            method
            for method in dir(estimator)
            if not method.startswith("_")
            and inspect.isfunction(getattr(type(estimator), method, None))
            and not method.startswith(("set_", "get_params"))
            and method not in BASE_METHODS
        }
        assert public == set(methods), name


def invalid_values(constraints):
    """Values that every constraint of a parameter refuses: an object of no accepted type, and
    where the constraints allow, one of an accepted type out of range (``batch_size=0``,
    ``normalize="bogus"``)."""
    values = [object()]
    for constraint in constraints:
        try:
            values.append(generate_invalid_param_val(make_constraint(constraint)))
        except NotImplementedError:
            continue
    return values


CASES = [
    (name, parameter)
    for name, estimator in (
        ("FisherTaskEmbedder(tasks)", FisherTaskEmbedder),
        ("FisherTaskEmbedder(X, y)", FisherTaskEmbedder),
        ("Model2VecSelector", Model2VecSelector),
        ("TransferabilitySelector", TransferabilitySelector),
    )
    for parameter in estimator._parameter_constraints
]


@pytest.mark.parametrize("name, parameter", CASES, ids=[f"{name}-{parameter}" for name, parameter in CASES])
def test_a_parameter_set_invalid_after_fit_is_refused_by_every_method(estimators, name, parameter):
    estimator, methods = estimators[name]
    constraints = type(estimator)._parameter_constraints[parameter]
    for value in invalid_values(constraints):
        broken = fitted_copy(estimator).set_params(**{parameter: value})
        for method, arguments in methods.items():
            with pytest.raises(
                InvalidParameterError, match=f"The '{parameter}' parameter of {type(estimator).__name__}"
            ):
                getattr(broken, method)(*arguments)


def fitted_copy(estimator):
    """A fitted copy (its fitted attributes too), whose parameters can be changed alone."""
    return copy.deepcopy(estimator)


@pytest.mark.parametrize(
    "params, fragment",
    [({"batch_size": 0}, "'batch_size' parameter"), ({"normalize": "bogus"}, "'normalize' parameter")],
)
def test_the_reported_cases_now_name_the_parameter(params, fragment):
    embedder_ = FisherTaskEmbedder(random_state=0, head_epochs=5).fit(_tasks())
    embedder_.set_params(**params)
    with pytest.raises(ValueError, match=fragment):
        embedder_.transform(_tasks())


def test_validation_is_skipped_where_scikit_learn_skips_it(estimators):
    selector = fitted_copy(estimators["TransferabilitySelector"][0]).set_params(experts=object())
    with config_context(skip_parameter_validation=True):
        assert selector.predict(X_SCORES).shape == (6,)  # the experts were fitted already


def test_set_params_back_to_valid_values_works_again(estimators):
    estimator = fitted_copy(estimators["FisherTaskEmbedder(tasks)"][0])
    expected = estimator.transform(_tasks())
    estimator.set_params(batch_size=0)
    with pytest.raises(ValueError):
        estimator.transform(_tasks())
    np.testing.assert_array_equal(estimator.set_params(batch_size=64).transform(_tasks()), expected)


# ---------------------------------------------------------------- discovery
def discovery_data():
    return np.random.RandomState(0).normal(size=(30, 3)).astype(np.float32)


def nan_score(X, y):
    return np.nan


@pytest.mark.parametrize("n_candidates, limit", [(1, 10), (4, 10), (16, 16)])
def test_discovery_stops_early_when_no_candidate_can_be_scored(n_candidates, limit):
    search = TaskDiscovery(scoring=nan_score, budget=400, n_candidates=n_candidates, random_state=0)
    with pytest.raises(ValueError) as caught:
        search.fit(discovery_data())
    message = str(caught.value)
    assert message.startswith("TaskDiscovery, task 1 of 1: the scorer (nan_score) returned NaN for the last")
    assert f"last {limit} labellings (after {limit} of 400 candidates, every one so far)" in message
    assert search.n_unscorable_ == limit  # stopped at the bound, not at the budget


def test_a_few_unscorable_candidates_are_skipped_with_a_count():
    seen = []

    def sometimes_nan(X, y):
        seen.append(y)
        return np.nan if len(seen) % 5 == 0 else float(y[:10].mean())

    search = TaskDiscovery(scoring=sometimes_nan, budget=40, n_candidates=4, random_state=0)
    with pytest.warns(
        UserWarning, match=r"TaskDiscovery: (\d+) of 40 candidates could not be scored"
    ) as caught:
        search.fit(discovery_data())
    n_nan = int(np.isnan(search.history_).sum())
    assert n_nan == search.n_unscorable_ > 0 and f"{n_nan} of 40" in str(caught[0].message)
    assert np.isfinite(search.scores_).all() and search.labels_.shape == (1, 30)


def test_nan_after_good_scores_stops_once_a_batch_is_unscorable():
    calls = []

    def breaks_down(X, y):
        calls.append(1)
        return np.nan if len(calls) > 8 else float(y[:10].mean())

    search = TaskDiscovery(scoring=breaks_down, budget=400, n_candidates=4, random_state=0)
    with pytest.raises(
        ValueError, match=r"returned NaN for the last 10 labellings \(after \d+ of 400 candidates\):"
    ):
        search.fit(discovery_data())


def test_a_failing_scorer_names_the_search():
    def broken(X, y):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(
        torch.cuda.OutOfMemoryError,
        match="^TaskDiscovery, task 1 of 2: scoring 4 labellings after 0 candidates: CUDA",
    ):
        TaskDiscovery(scoring=broken, n_tasks=2, budget=8, n_candidates=4, random_state=0).fit(
            discovery_data()
        )


@pytest.mark.parametrize("budget", [1, 4, 9])
def test_a_budget_below_the_bound_all_unscorable_is_refused_too(budget):
    search = TaskDiscovery(scoring=nan_score, budget=budget, n_candidates=4, random_state=0)
    with pytest.raises(
        ValueError,
        match=rf"NaN for the last {budget} labellings \(after {budget} of {budget} candidates, every",
    ):
        search.fit(discovery_data())
