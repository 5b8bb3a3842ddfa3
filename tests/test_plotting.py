"""The Displays of :mod:`sklearn_task2vec.plotting`: what they draw, and that it is readable.

Each Display is checked against a direct evaluation of what it shows (the paper's distance
and metric written out, the ranks of Spearman's correlation, the images of the grids), on
generated inputs; the layouts are checked on the drawn figure: the boxes of the texts (names,
tick labels, titles, values) pairwise apart, apart from the points, inside the figure.
"""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import rankdata

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector, demo
from sklearn_task2vec.plotting import (
    DISTANCE_CMAP,
    DiscoveredTasksDisplay,
    ModelSelectionDisplay,
    NormDifficultyDisplay,
    TaskDistanceDisplay,
)
from sklearn_task2vec.task_library import TaskLibrary

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.text import Text  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True, scope="module")
def closed_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------
# Direct evaluations and layout checks
# --------------------------------------------------------------------------------------


def direct_symmetric_distance(a, b):
    """Paper, sec. 3.3: d_cos(a / (a + b), b / (a + b)), the filters neither task uses left out;
    two zero embeddings at 0, a zero and a non-zero one at 1 (the module's conventions)."""
    if not a.any() or not b.any():
        return float(a.any() or b.any())
    total = a + b
    used = total > 0
    u, v = a[used] / total[used], b[used] / total[used]
    return 1.0 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v))


def direct_increase(errors, chosen):
    """Paper, Table 1: (mean error of the chosen experts - the oracle's) / the oracle's."""
    rows = range(len(errors))
    oracle = sum(min(errors[i]) for i in rows) / len(errors)
    return (sum(errors[i][chosen[i]] for i in rows) / len(errors) - oracle) / oracle


def text_boxes(figure):
    """``[(text, box)]`` for every non-empty text drawn: titles, axis and tick labels (of the
    ticks in view), annotations (their text, not the leader line), in every axes."""
    figure.draw_without_rendering()
    found = []

    def visit(ax):
        texts = [child for child in ax.get_children() if isinstance(child, Text)]
        axes = (ax.xaxis, ax.yaxis) if ax.axison else ()
        for axis in axes:
            texts.append(axis.label)
            low, high = sorted(axis.get_view_interval())
            for location, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels()):
                if low - 1e-9 <= location <= high + 1e-9:
                    texts.append(label)
        found.extend(
            (text, Text.get_window_extent(text))
            for text in texts
            if text.get_visible() and text.get_text() and ax.get_visible()
        )
        for child in ax.child_axes:
            visit(child)

    children = {id(child) for ax in figure.axes for child in ax.child_axes}
    for ax in figure.axes:
        if id(ax) not in children:  # an inset (colour bar, dendrogram) is visited with its parent
            visit(ax)
    return found


def assert_apart(boxes):
    for i, (first, first_box) in enumerate(boxes):
        for second, second_box in boxes[i + 1 :]:
            assert not first_box.overlaps(second_box), (first.get_text(), second.get_text())


def assert_readable(figure):
    """No two texts of ``figure`` overlap, and each lies inside the figure."""
    boxes = text_boxes(figure)
    assert_apart(boxes)
    inside = figure.bbox
    for text, box in boxes:
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, text.get_text()
        assert inside.y0 <= box.y0 and box.y1 <= inside.y1, text.get_text()


def luminance(rgba):
    red, green, blue = rgba[:3]
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


names_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-", min_size=1, max_size=12)


# --------------------------------------------------------------------------------------
# TaskDistanceDisplay
# --------------------------------------------------------------------------------------


@settings(max_examples=4)
@given(
    embeddings=st.integers(2, 9).flatmap(
        lambda n: arrays(np.float64, (n, 6), elements=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 10.0]))
    ),
    kind=st.sampled_from(["symmetric", "asymmetric"]),
)
def test_heatmap_shows_the_paper_distances_with_the_names_in_the_plotted_order(embeddings, kind):
    names = [f"task {i}" for i in range(len(embeddings))]
    display = TaskDistanceDisplay.from_embeddings(embeddings, names=names, kind=kind)
    n = len(names)
    expected = np.array([[direct_symmetric_distance(a, b) for b in embeddings] for a in embeddings])
    if kind == "asymmetric":  # d_asym(a -> b) = d_sym(a, b) - alpha d_sym(a, t_0), t_0 all ones
        complexity = [direct_symmetric_distance(a, np.ones(6)) if a.any() else 0.0 for a in embeddings]
        expected -= 0.15 * np.array(complexity)[:, None]
    np.testing.assert_allclose(display.distances, expected, atol=1e-12)
    order = display.order_
    assert sorted(order) == list(range(n))
    np.testing.assert_allclose(display.im_.get_array(), expected[np.ix_(order, order)], atol=1e-12)
    shown = [names[i] for i in order]
    assert [label.get_text() for label in display.ax_.get_xticklabels()] == shown
    assert [label.get_text() for label in display.ax_.get_yticklabels()] == shown
    assert display.im_.cmap.name == DISTANCE_CMAP
    assert_readable(display.figure_)
    if display.distances.any():  # a tree of height 0 is not drawn
        title = display.ax_.title.get_window_extent()
        assert not title.overlaps(display.dendrogram_ax_.get_window_extent())
    plt.close("all")


@settings(max_examples=6)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=2, max_size=3),
    data=st.data(),
)
def test_clustered_order_puts_each_block_of_near_tasks_together(sizes, data):
    """Tasks nearer within their block than to any task of another block: average linkage
    merges every block before any two blocks, so each block is contiguous in the order."""
    n = sum(sizes)
    block = np.repeat(np.arange(len(sizes)), sizes)
    within = data.draw(arrays(np.float64, (n, n), elements=st.floats(0.05, 0.3)))
    between = data.draw(arrays(np.float64, (n, n), elements=st.floats(0.6, 1.0)))
    distances = np.where(block[:, None] == block[None, :], within, between)
    distances = np.triu(distances, 1) + np.triu(distances, 1).T
    shuffle = np.random.RandomState(n).permutation(n)
    distances, block = distances[np.ix_(shuffle, shuffle)], block[shuffle]
    names = [f"{b}-{i}" for i, b in enumerate(block)]
    figure, ax = plt.subplots(figsize=(3, 3))
    display = TaskDistanceDisplay(distances, names=names).plot(ax=ax)
    plotted = block[display.order_]
    assert np.count_nonzero(np.diff(plotted)) == len(sizes) - 1, plotted
    assert [label.get_text() for label in ax.get_yticklabels()] == [names[i] for i in display.order_]
    plt.close(figure)


def test_given_order_keeps_the_names_and_many_names_shrink_until_apart():
    rng = np.random.RandomState(0)
    embeddings = rng.gamma(1.0, size=(40, 20))
    names = [f"a rather long task name {i}" for i in range(40)]
    figure, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    display = TaskDistanceDisplay.from_embeddings(embeddings, names=names, order="given", ax=ax)
    assert display.order_.tolist() == list(range(40)) and display.dendrogram_ax_ is None
    assert [label.get_text() for label in display.ax_.get_yticklabels()] == names
    assert display.ax_.get_yticklabels()[0].get_fontsize() < 8  # shrunk from the default
    assert_readable(display.figure_)


def test_colour_convention_bright_is_close_and_spans_the_off_diagonal():
    distances = np.array([[0.0, 0.2, 0.9], [0.2, 0.0, 0.5], [0.9, 0.5, 0.0]])
    display = TaskDistanceDisplay(distances).plot(order="given")
    assert DISTANCE_CMAP == "viridis_r" and display.im_.cmap.name == DISTANCE_CMAP
    assert display.im_.norm.vmin == 0.2 and display.im_.norm.vmax == 0.9
    colour = display.im_.cmap
    assert luminance(colour(display.im_.norm(0.2))) > luminance(colour(display.im_.norm(0.9)))
    assert "bright: close" in display.colorbar_.ax.get_ylabel()


@pytest.mark.slow
def test_every_distance_heatmap_of_the_demo_and_examples_uses_the_convention(monkeypatch):
    """The class: each image drawn with a colour bar (a heatmap of numbers) in the figures of
    the demo and of the examples uses DISTANCE_CMAP."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    rng = np.random.RandomState(0)
    names = [f"t{i}" for i in range(8)]
    distances = TaskDistanceDisplay.from_embeddings(rng.gamma(1.0, size=(8, 5))).distances
    norms, errors = rng.uniform(1, 5, 8), rng.uniform(0.01, 0.3, 8)
    taxonomic = np.abs(np.subtract.outer(np.arange(8), np.arange(8))) % 5
    images = rng.uniform(size=(20, 1, 8, 8))
    labellings = (rng.uniform(size=(2, 20)) > 0.7).astype(int)
    figures = [
        demo.study_figure(
            names,
            distances,
            norms,
            errors,
            [("oracle", 0.1, 0.0), ("chance", 0.2, 1.0), ("TASK2VEC", 0.15, 0.5)],
        )
    ]
    plot = runpy.run_path(str(EXAMPLES / "slow_task_distances.py"), run_name="plotting_test")["plot"]
    groups = ["fashion", "clothing", "upper", "warm", "light", "long", "accessories", "footwear"]
    figures.append(plot(plt, names, groups, distances, taxonomic, norms, errors))
    plot = runpy.run_path(str(EXAMPLES / "slow_text_task_distances.py"), run_name="plotting_test")["plot"]
    groups = ["media", "science", "languages", "system", "writing", "debian", "py-io", "gnu"]
    figures.append(plot(plt, names, groups, distances, distances, "other", taxonomic, norms, errors))
    plot = runpy.run_path(str(EXAMPLES / "slow_task_discovery.py"), run_name="plotting_test")["plot_tasks"]
    figures.append(plot(plt, images, labellings, ["found 0", "random 0"], [0.5, 0.2], distances, names))
    for figure in figures:
        heatmaps = [
            image
            for ax in figure.get_axes()
            for image in ax.get_images()
            if isinstance(image, AxesImage) and image.colorbar is not None
        ]
        assert heatmaps
        assert all(image.cmap.name == DISTANCE_CMAP for image in heatmaps)
        plt.close(figure)
    assert "_common" in sys.modules  # the examples' own helpers were found


def test_from_estimator_embeds_the_tasks_and_reads_a_library_s_names(one_thread):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    library = TaskLibrary(
        [(X, X[:, 0] > 0), (X, X[:, 1] > 0), (X, X[:, 0] + X[:, 1] > 0)], names=["x", "y", "x+y"]
    )
    embedder = FisherTaskEmbedder(random_state=0).fit(library)
    display = TaskDistanceDisplay.from_estimator(embedder, library, kind="asymmetric")
    rows = embedder.transform(library)
    trivial = embedder.trivial_embedding_  # raw rows: the trivial embedding is not all ones
    expected = np.array([[direct_symmetric_distance(a, b) for b in rows] for a in rows])
    expected -= 0.15 * np.array([direct_symmetric_distance(a, trivial) for a in rows])[:, None]
    np.testing.assert_allclose(display.distances, expected, atol=1e-10)
    assert sorted(label.get_text() for label in display.ax_.get_yticklabels()) == ["x", "x+y", "y"]


def test_distance_display_refuses_bad_input():
    good = np.array([[0.0, 0.5], [0.5, 0.0]])
    with pytest.raises(ValueError, match="square"):
        TaskDistanceDisplay(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        TaskDistanceDisplay(np.array([[0.0, np.nan], [np.nan, 0.0]]))
    with pytest.raises(ValueError, match="names has 3 names but distances has 2 tasks"):
        TaskDistanceDisplay(good, names=["a", "b", "c"])
    with pytest.raises(ValueError, match="not symmetric.*kind='asymmetric'"):
        TaskDistanceDisplay(np.array([[0.0, 0.5], [0.4, 0.0]]))
    with pytest.raises(ValueError, match="zero diagonal"):
        TaskDistanceDisplay(np.eye(2))
    TaskDistanceDisplay(np.array([[-0.1, 0.5], [0.4, -0.2]]), kind="asymmetric")  # d_asym may be negative
    with pytest.raises(ValueError, match="embeddings has negative entries"):
        TaskDistanceDisplay.from_embeddings(-np.ones((2, 3)))
    with pytest.raises(ValueError, match="names has 1 names but embeddings has 2 tasks"):
        TaskDistanceDisplay.from_embeddings(np.ones((2, 3)), names=["a"])
    with pytest.raises(ValueError, match="dendrogram=True needs order='cluster'"):
        TaskDistanceDisplay(good).plot(order="given", dendrogram=True)
    with pytest.raises(ValueError, match="order"):
        TaskDistanceDisplay(good).plot(order="alphabetical")


# --------------------------------------------------------------------------------------
# NormDifficultyDisplay
# --------------------------------------------------------------------------------------

coordinate = st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.001, 0.5]))


@settings(max_examples=10)
@given(
    points=st.integers(2, 20).flatmap(
        lambda n: st.tuples(
            st.lists(names_text, min_size=n, max_size=n),
            arrays(np.float64, (n,), elements=coordinate),
            arrays(np.float64, (n,), elements=coordinate),
        )
    )
)
def test_names_of_a_point_cloud_overlap_no_other_name_and_no_point(points):
    names, difficulty, norms = points
    display = NormDifficultyDisplay(10 * norms, 100 * difficulty, names=names).plot()
    figure, ax = display.figure_, display.ax_
    figure.draw_without_rendering()
    boxes = [Text.get_window_extent(label) for label in display.labels_]
    assert [label.get_text() for label in display.labels_] == names
    assert [label.xy for label in display.labels_] == list(zip(100 * difficulty, 10 * norms))
    assert_apart(list(zip(display.labels_, boxes)))
    radius = np.sqrt(display.scatter_.get_sizes()[0]) / 2 * figure.dpi / 72
    for x, y in ax.transData.transform(np.column_stack([100 * difficulty, 10 * norms])):
        for name, box in zip(names, boxes):
            assert not (
                box.x0 < x + radius and x - radius < box.x1 and box.y0 < y + radius and y - radius < box.y1
            ), name
    frame = ax.bbox
    assert all(
        frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        for box in boxes
    )
    assert_readable(figure)
    plt.close(figure)


@settings(max_examples=10)
@given(
    values=st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            arrays(np.float64, (n, 4), elements=st.floats(0, 5)),
            arrays(np.float64, (n,), elements=st.floats(-1, 1)),
        )
    )
)
def test_norms_are_l1_norms_and_the_title_gives_spearman_of_the_ranks(values):
    embeddings, difficulty = values
    figure, ax = plt.subplots(figsize=(4, 3))
    display = NormDifficultyDisplay.from_embeddings(embeddings, difficulty, ax=ax)
    norms = np.array([sum(abs(value) for value in row) for row in embeddings])
    np.testing.assert_allclose(display.norms, norms)
    first, second = rankdata(norms), rankdata(difficulty)
    if len(norms) > 1 and first.std() > 0 and second.std() > 0:
        expected = np.corrcoef(first, second)[0, 1]  # Pearson's correlation of the ranks
        assert display.spearman_ == pytest.approx(expected, abs=1e-9)
        assert ax.get_title() == f"Norm vs difficulty (Spearman ρ = {display.spearman_:+.2f})"
    else:
        assert np.isnan(display.spearman_) and "undefined" in ax.get_title()
    assert display.ax_ is ax and display.figure_ is figure
    plt.close(figure)


def test_norm_display_refuses_bad_input():
    with pytest.raises(ValueError, match="difficulty has 2 values but embeddings has 3 tasks"):
        NormDifficultyDisplay.from_embeddings(np.ones((3, 2)), [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        NormDifficultyDisplay([1.0, 2.0], [0.1, np.nan])
    with pytest.raises(ValueError, match="norms has negative values"):
        NormDifficultyDisplay([1.0, -2.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="names has 1 names but norms has 2 tasks"):
        NormDifficultyDisplay([1.0, 2.0], [0.1, 0.2], names=["a"])
    with pytest.raises(ValueError, match="yscale='log' needs positive norms"):
        NormDifficultyDisplay([0.0, 2.0], [0.1, 0.2]).plot(yscale="log")


# --------------------------------------------------------------------------------------
# ModelSelectionDisplay
# --------------------------------------------------------------------------------------


@settings(max_examples=8)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 8), st.integers(1, 5)),
    n_methods=st.integers(1, 3),
)
def test_bars_are_the_paper_s_relative_error_increase_with_oracle_and_chance(data, shape, n_methods):
    errors = data.draw(arrays(np.float64, shape, elements=st.floats(0.01, 1.0)))
    choices = {
        f"selector {k}": data.draw(arrays(np.int64, shape[0], elements=st.integers(0, shape[1] - 1)))
        for k in range(n_methods)
    }
    display = ModelSelectionDisplay.from_errors(errors, choices)
    rows = errors.tolist()
    for name, chosen in choices.items():
        assert display.increases[name] == pytest.approx(
            direct_increase(rows, chosen.tolist()), rel=1e-9, abs=1e-12
        )
    # Chance: a random expert, the mean over the experts of always choosing it.
    chance = np.mean([direct_increase(rows, [j] * shape[0]) for j in range(shape[1])])
    assert display.chance == pytest.approx(chance, rel=1e-9, abs=1e-12)
    ax = display.ax_
    assert [label.get_text() for label in ax.get_yticklabels()] == [
        "oracle",
        *choices,
        "chance (random expert)",
    ]
    widths = [bar.get_width() for bar in display.bars_]
    np.testing.assert_allclose(widths, [*display.increases.values(), display.chance])
    written = [float(value.get_text().rstrip("%")) for value in display.values_]
    np.testing.assert_allclose(written, [0.0, *(100 * v for v in widths)], atol=0.051)
    display.figure_.draw_without_rendering()
    frame = ax.bbox
    assert all(
        frame.x0 <= value.get_window_extent().x0 and value.get_window_extent().x1 <= frame.x1
        for value in display.values_
    )
    assert_readable(display.figure_)
    plt.close("all")


def test_from_estimator_maps_the_selector_s_names_to_columns(one_thread):
    rng = np.random.RandomState(0)
    X = rng.gamma(1.0, size=(6, 4))
    errors = rng.uniform(0.05, 0.5, size=(6, 3))
    selector = Model2VecSelector(
        experts=["a", "b", "c"], model_embeddings=rng.gamma(1.0, size=(3, 4)), max_iter=0
    )
    selector.fit(X, errors.argmin(axis=1))
    display = ModelSelectionDisplay.from_estimator(selector, X, errors, name="asymmetric TASK2VEC")
    columns = ["abc".index(name) for name in selector.predict(X)]
    assert display.increases == {
        "asymmetric TASK2VEC": pytest.approx(direct_increase(errors.tolist(), columns))
    }


def test_model_selection_display_refuses_bad_input():
    errors = np.array([[0.1, 0.3], [0.2, 0.1]])
    with pytest.raises(ValueError, match=r"choices\['short'\]: chosen must be 1-D with one expert per task"):
        ModelSelectionDisplay.from_errors(errors, {"short": [0]})
    with pytest.raises(ValueError, match="choices is empty"):
        ModelSelectionDisplay.from_errors(errors, {})
    with pytest.raises(ValueError, match="oracle's mean error is 0"):
        ModelSelectionDisplay.from_errors(np.array([[0.0, 0.3], [0.0, 0.1]]), {"x": [0, 1]})
    with pytest.raises(ValueError, match=r"increases\['x'\] = -0.1"):
        ModelSelectionDisplay({"x": -0.1})
    with pytest.raises(ValueError, match="non-empty dict"):
        ModelSelectionDisplay({})
    with pytest.raises(ValueError, match="chance = nan"):
        ModelSelectionDisplay({"x": 0.1}, chance=float("nan"))


# --------------------------------------------------------------------------------------
# DiscoveredTasksDisplay
# --------------------------------------------------------------------------------------


@settings(max_examples=6)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(4, 30), st.integers(1, 3)),
    channels=st.sampled_from([None, 1, 3]),
)
def test_grids_show_every_image_once_with_exactly_the_positives_framed(data, shape, channels):
    n_samples, n_tasks = shape
    height, width = 5, 6
    rng = np.random.RandomState(n_samples)
    images = rng.uniform(size=(n_samples, height, width))  # distinct: each image identifies its example
    given_images = images if channels is None else np.repeat(images[:, None], channels, axis=1)
    labels = data.draw(arrays(np.int64, (n_tasks, n_samples), elements=st.integers(0, 1)))
    display = DiscoveredTasksDisplay(given_images, labels, scores=np.linspace(0, 1, n_tasks)).plot()
    assert len(display.axes_) == n_tasks
    for task, (axis, image) in enumerate(zip(display.axes_, display.images_)):
        positives, negatives = np.flatnonzero(labels[task] == 1), np.flatnonzero(labels[task] == 0)
        assert display.tile_order_[task].tolist() == [*positives, *negatives]
        mosaic = np.asarray(image.get_array())
        mosaic = mosaic if mosaic.ndim == 2 else mosaic[..., 0]
        framed = []
        for frame in display.frames_[task]:
            gap = frame.get_width() - width
            left, top = (int(round(value + 0.5 + gap / 2)) for value in frame.get_xy())
            inside = mosaic[top : top + height, left : left + width]
            if channels == 3:  # colour images are scaled to [0, 1] by the overall range
                inside = inside * (images.max() - images.min()) + images.min()
            matches = [k for k in range(n_samples) if np.allclose(inside, images[k])]
            assert len(matches) == 1
            framed += matches
        assert sorted(framed) == positives.tolist()
        assert np.count_nonzero(~np.isnan(mosaic)) == n_samples * height * width or channels == 3
        assert f"{len(positives)} of {n_samples} positive (framed)" in axis.get_title(loc="left")
    plt.close("all")


def test_from_estimator_draws_a_fitted_search_s_tasks_and_scores(one_thread):
    pytest.importorskip("nevergrad")
    from sklearn_task2vec.discovery import TaskDiscovery

    X = np.random.RandomState(0).normal(size=(20, 16)).astype(np.float32)
    search = TaskDiscovery(
        n_tasks=2, budget=8, n_candidates=8, score_params={"n_steps": 5}, random_state=0
    ).fit(X)
    display = DiscoveredTasksDisplay.from_estimator(search, image_shape=(4, 4))
    np.testing.assert_array_equal(display.labels, search.labels_)
    np.testing.assert_array_equal(display.images, X.reshape(20, 4, 4))
    for task, (axis, score, labels) in enumerate(zip(display.axes_, search.scores_, search.labels_)):
        assert axis.get_title(loc="left").startswith(f"task {task}: task-ness {score:.2f}")
        assert len(display.frames_[task]) == labels.sum()
    with pytest.raises(ValueError, match="16 features per example: pass image_shape"):
        DiscoveredTasksDisplay.from_estimator(search)
    with pytest.raises(ValueError, match="height \\* width = 16"):
        DiscoveredTasksDisplay.from_estimator(search, image_shape=(3, 3))


def test_discovered_tasks_display_refuses_bad_input():
    images = np.zeros((4, 3, 3))
    with pytest.raises(ValueError, match="0 \\(negative\\) and 1 \\(positive\\) only"):
        DiscoveredTasksDisplay(images, [[0, 1, 2, 0]])
    with pytest.raises(ValueError, match="one label per image \\(4\\)"):
        DiscoveredTasksDisplay(images, [[0, 1, 0]])
    with pytest.raises(ValueError, match="scores has 1 values but labels has 2 tasks"):
        DiscoveredTasksDisplay(images, [[0, 1, 0, 1], [1, 0, 1, 0]], scores=[0.5])
    with pytest.raises(ValueError, match="images must be grey"):
        DiscoveredTasksDisplay(np.zeros((4, 2, 3, 5)), [[0, 1, 0, 1]])
    figure, ax = plt.subplots()
    with pytest.raises(ValueError, match="one Axes per task \\(2\\), got 1"):
        DiscoveredTasksDisplay(images, [[0, 1, 0, 1], [1, 0, 1, 0]]).plot(ax=ax)
    plt.close(figure)


# --------------------------------------------------------------------------------------
# The demo's figure
# --------------------------------------------------------------------------------------


def test_demo_figure_is_readable_and_keeps_the_paper_s_numbers_on_axes_of_their_own():
    """The demo's numbers: five tasks with no test error and close norms (1v7, 4v9, 5v6...);
    its selection table, hundreds of percent, and the paper's Table 1, tens."""
    from test_demo import NAMES, NORMS, RAW_ERRORS, ROWS

    distances = np.abs(np.subtract.outer(NORMS, NORMS)) / NORMS.max()
    figure = demo.study_figure(NAMES, distances, NORMS, RAW_ERRORS, ROWS)
    assert_readable(figure)
    norms = next(ax for ax in figure.axes if ax.get_title().startswith("Norm vs difficulty"))
    assert sorted(text.get_text() for text in norms.texts) == sorted(NAMES)
    ours, paper = (ax for ax in figure.axes if ax.get_title().startswith(("Model selection", "The paper")))
    increases = {label: increase for label, _, increase in ROWS}
    selectors = ("generic", "TASK2VEC", "asymmetric TASK2VEC", "chance")
    assert [bar.get_width() for bar in ours.patches] == pytest.approx([increases[k] for k in selectors])
    table = demo.PAPER_TABLE1
    assert [bar.get_width() for bar in paper.patches] == pytest.approx([table[k] / 100 for k in selectors])
    assert ours.get_shared_x_axes().get_siblings(ours) == [ours]  # one axis per study
    assert ours.get_xlim()[1] > 6.0 > 1.0 > paper.get_xlim()[1]  # each on its own scale
    panels = [ax.get_tightbbox() for ax in figure.axes if ax.get_title()]
    assert len(panels) == 4
    assert_apart([(Text(text=str(k)), box) for k, box in enumerate(panels)])
    plt.close(figure)


# --------------------------------------------------------------------------------------
# Every Display: axes given, drawn twice, matplotlib missing
# --------------------------------------------------------------------------------------

DISPLAYS = {
    "distances": lambda: TaskDistanceDisplay(np.array([[0.0, 0.4, 0.8], [0.4, 0.0, 0.6], [0.8, 0.6, 0.0]])),
    "norms": lambda: NormDifficultyDisplay([1.0, 2.0, 3.0], [0.1, 0.3, 0.2], names=["a", "b", "c"]),
    "selection": lambda: ModelSelectionDisplay({"TASK2VEC": 0.5}, chance=1.0),
    "discovery": lambda: DiscoveredTasksDisplay(np.arange(24.0).reshape(4, 2, 3), [1, 0, 1, 0]),
}


@pytest.mark.parametrize("kind", DISPLAYS)
def test_plot_draws_on_the_given_axes_and_twice(kind):
    display = DISPLAYS[kind]()
    figure, (first, second) = plt.subplots(1, 2, figsize=(8, 4))
    display.plot(ax=first)
    drawn = display.axes_[0] if kind == "discovery" else display.ax_
    assert drawn is first and display.figure_ is figure
    assert first.get_children() and not second.images and not second.collections and not second.patches
    display.plot(ax=second)  # again, elsewhere: the attributes follow the new drawing
    drawn = display.axes_[0] if kind == "discovery" else display.ax_
    assert drawn is second and (second.images or second.collections or second.patches)
    display.plot()  # and on a figure of its own
    assert display.figure_ is not figure
    plt.close("all")


@pytest.mark.parametrize(
    "call",
    [
        lambda: TaskDistanceDisplay.from_embeddings(np.ones((2, 3))),
        lambda: TaskDistanceDisplay(np.zeros((1, 1))).plot(),
        lambda: NormDifficultyDisplay.from_embeddings(np.ones((2, 3)), [0.1, 0.2]),
        lambda: ModelSelectionDisplay.from_errors(np.ones((2, 2)), {"x": [0, 1]}),
        lambda: DiscoveredTasksDisplay(np.zeros((2, 3, 3)), [0, 1]).plot(),
    ],
)
def test_without_matplotlib_the_error_names_the_plot_extra(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'sklearn-task2vec\[plot\]'"):
        call()
