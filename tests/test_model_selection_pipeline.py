"""FisherTaskEmbedder -> Model2VecSelector on real task lists: GridSearchCV, routing, joblib."""

import subprocess
import sys

import joblib
import numpy as np
import pytest
from sklearn import config_context
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector
from sklearn_task2vec.selector import model_selection_scorer

N_GROUPS = 3


def group_tasks(n_tasks, seed):
    """Tasks whose labels depend on one of three feature groups; the group's expert is best."""
    rng = np.random.RandomState(seed)
    tasks, groups = [], []
    for index in range(n_tasks):
        group = index % N_GROUPS
        X = rng.normal(size=(60, 2 * N_GROUPS))
        weights = rng.normal(size=2)
        labels = X[:, 2 * group : 2 * group + 2] @ weights > 0
        tasks.append((X, labels))
        groups.append(group)
    groups = np.array(groups)
    errors = 0.3 + 0.05 * rng.uniform(size=(n_tasks, N_GROUPS))
    errors[np.arange(n_tasks), groups] = 0.1 + 0.05 * rng.uniform(size=n_tasks)
    return tasks, groups, errors


@pytest.mark.slow
def test_grid_search_over_alpha_and_gamma_with_routed_errors_then_joblib_in_a_fresh_process(tmp_path):
    tasks, best, errors = group_tasks(18, seed=0)
    with config_context(enable_metadata_routing=True):
        pipeline = make_pipeline(
            # The cache embeds each task once for all the folds and settings (about 200 fits).
            FisherTaskEmbedder(normalize="trivial", random_state=0, memory=tmp_path / "cache"),
            Model2VecSelector(max_iter=20, n_init=2, random_state=0).set_fit_request(errors=True),
        )
        search = GridSearchCV(
            pipeline,
            {"model2vecselector__alpha": [0.0, 0.15], "model2vecselector__gamma": [None, 10.0]},
            scoring=model_selection_scorer,
            cv=KFold(3, shuffle=True, random_state=0),
        )
        search.fit(tasks, best, errors=errors)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    model = search.best_estimator_
    new_tasks, new_best, _ = group_tasks(9, seed=1)
    predictions = model.predict(new_tasks)
    probabilities = model.predict_proba(new_tasks)
    assert np.mean(predictions == new_best) > 1.0 / N_GROUPS  # better than chance on new tasks

    joblib.dump(model, tmp_path / "model.joblib")
    joblib.dump(new_tasks, tmp_path / "tasks.joblib")
    script = (
        "import joblib, numpy as np, sys; "
        "model = joblib.load(sys.argv[1] + '/model.joblib'); tasks = joblib.load(sys.argv[1] + '/tasks.joblib'); "
        "np.savez(sys.argv[1] + '/out.npz', predictions=model.predict(tasks), probabilities=model.predict_proba(tasks))"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    reloaded = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(reloaded["predictions"], predictions)
    np.testing.assert_array_equal(reloaded["probabilities"], probabilities)
