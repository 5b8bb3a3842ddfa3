"""Figures of task embeddings, in the style of scikit-learn's Display objects.

Each Display is made by a class method from what the package computes (``from_embeddings``,
``from_estimator``, ``from_errors``) or by its constructor from numbers computed elsewhere;
``plot(ax=...)`` draws it, on new axes or on the given ones, and the Display keeps the
matplotlib objects it drew as attributes (``figure_``, ``ax_``, ...), like scikit-learn's
:class:`~sklearn.metrics.ConfusionMatrixDisplay`:

* :class:`TaskDistanceDisplay`: the TASK2VEC distances between tasks (Achille et al., ICCV
  2019, sec. 3.3) as a heatmap with the tasks' names, in the order of an average-linkage
  clustering with its dendrogram, or in the given order;
* :class:`NormDifficultyDisplay`: each task's embedding norm against its difficulty (the
  paper's Fig. 2, right), the tasks named without overlapping labels and Spearman's rank
  correlation in the title;
* :class:`ModelSelectionDisplay`: the relative error increase over the oracle of model
  selectors (the paper's Table 1), with the oracle and chance as references;
* :class:`DiscoveredTasksDisplay`: the tasks found by
  :class:`~sklearn_task2vec.discovery.TaskDiscovery` as grids of their images, the positives
  first and framed, with their scores.

**One colour convention for distances.** Every heatmap of distances in the package (the
Displays, the demo, the examples) uses :data:`DISTANCE_CMAP`, ``"viridis_r"``: **bright
(yellow) is close, dark (purple) is far**, so that blocks of similar tasks stand out. Its
colour bar says so.

**Readable figures.** Tick labels shrink until neighbours no longer overlap, and the names of
a scatter plot are placed where they overlap no other name and no point, with a thin leader
line when a name had to move away from its point. Both are done for the figure as it is laid
out when ``plot`` is called: draw a figure's other panels first, and do not resize it after.

matplotlib is an optional dependency: ``pip install 'sklearn-task2vec[plot]'``. Nothing here
imports it before a Display is made or drawn.
"""

from __future__ import annotations

import importlib
from numbers import Integral, Real

import numpy as np
from scipy.cluster.hierarchy import dendrogram as draw_dendrogram
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import spearmanr
from sklearn.utils import check_array
from sklearn.utils._param_validation import HasMethods, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted

from ._utils import StrictInterval, check_embeddings, with_context
from .distances import pairwise_task_distances
from .selector import model_selection_scorer, relative_error_increase

__all__ = [
    "DISTANCE_CMAP",
    "DiscoveredTasksDisplay",
    "ModelSelectionDisplay",
    "NormDifficultyDisplay",
    "TaskDistanceDisplay",
]

#: The colour map of every heatmap of task distances: bright (yellow) is close, dark (purple) far.
DISTANCE_CMAP = "viridis_r"
#: The colour of the frames around the positive examples of a discovered task.
POSITIVE_COLOR = "tab:orange"
#: The colour of the model selectors' bars.
SELECTOR_COLOR = "tab:blue"
#: The colour of chance's bar and reference line.
CHANCE_COLOR = "0.6"
#: Smallest font size (points) that tick labels are shrunk to.
SMALLEST_FONT = 4.0

_KIND = [StrOptions({"symmetric", "asymmetric"})]
_AXES = [HasMethods(["imshow", "annotate"]), None]


def _pyplot(caller):
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise ImportError(
            f"{caller} draws with matplotlib, which is not installed: pip install 'sklearn-task2vec[plot]' "
            f"(or pip install matplotlib)."
        ) from exc


def _root_figure(ax):
    """The figure that ``ax`` is drawn in (a SubFigure's ``figure`` is its root figure, a
    Figure's is itself)."""
    return ax.figure.figure


def _figure_and_axes(plt, ax, figsize):
    """``(figure, ax)``: the given axes and their (root) figure, or new ones with constrained layout."""
    if ax is None:
        figure, ax = plt.subplots(figsize=figsize, layout="constrained")
        return figure, ax
    return _root_figure(ax), ax


def _check_names(names, n, where):
    """``names`` as a list of ``n`` strings (``None``: ``"0"``, ``"1"``, ...)."""
    if names is None:
        return [str(i) for i in range(n)]
    names = np.asarray(names, dtype=object)
    if names.ndim != 1:
        raise ValueError(f"names must be 1-D (one name per task), got an array of shape {names.shape}.")
    if len(names) != n:
        raise ValueError(f"names has {len(names)} names but {where} has {n} tasks: give one name per task.")
    return [str(name) for name in names]


def _check_vector(values, name, *, n=None, where=None):
    """``values`` as a finite 1-D float array (of length ``n``, that of ``where``, if given)."""
    values = check_array(values, ensure_2d=False, dtype=np.float64, ensure_all_finite=True, input_name=name)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per task), got an array of shape {values.shape}.")
    if n is not None and len(values) != n:
        raise ValueError(f"{name} has {len(values)} values but {where} has {n} tasks: give one per task.")
    return values


def _fit_tick_labels(ax):
    """Shrink the tick labels of ``ax`` (both axes) until no two neighbours overlap.

    On the laid-out figure; a few rounds, as smaller labels may let the layout grow the axes.
    Stops at :data:`SMALLEST_FONT`.
    """
    figure = _root_figure(ax)
    for _ in range(4):
        figure.draw_without_rendering()
        ratio = 1.0
        for labels, along in ((ax.get_xticklabels(), 0), (ax.get_yticklabels(), 1)):
            boxes = [label.get_window_extent() for label in labels if label.get_text()]
            if len(boxes) < 2:
                continue
            starts = np.array([box.extents[along] for box in boxes])
            sizes = np.array([box.extents[along + 2] - box.extents[along] for box in boxes])
            pitch = np.min(np.diff(np.sort(starts)))
            ratio = min(ratio, 0.9 * pitch / sizes.max())
        size = ax.get_xticklabels()[0].get_fontsize() if ax.get_xticklabels() else None
        if ratio >= 1.0 or size is None or size <= SMALLEST_FONT:
            return
        ax.tick_params(labelsize=max(SMALLEST_FONT, size * ratio))


# --------------------------------------------------------------------------------------
# Task distances
# --------------------------------------------------------------------------------------


def _colour_limits(distances):
    """The range of the off-diagonal distances: a task's zero distance to itself would squeeze it."""
    off = distances[~np.eye(len(distances), dtype=bool)]
    if off.size == 0:
        return 0.0, 1.0
    low, high = float(off.min()), float(off.max())
    if low == high:
        low, high = min(low, 0.0), max(high, 0.0)
    return (low, high) if low < high else (0.0, 1.0)


def _average_linkage(distances):
    """scipy's average-linkage tree of the tasks, on ``(D + D^T) / 2`` off the diagonal.

    An asymmetric matrix's negative entries are shifted to 0 first: average linkage merges the
    same clusters in the same order when a constant is added to every distance (each cluster
    distance is a mean of distances), and so does the optimal leaf ordering.
    """
    symmetric = (distances + distances.T) / 2.0
    np.fill_diagonal(symmetric, 0.0)
    condensed = squareform(symmetric, checks=False)
    condensed = condensed - min(0.0, float(condensed.min()))
    return linkage(condensed, method="average", optimal_ordering=True)


class TaskDistanceDisplay:
    """Heatmap of the TASK2VEC distances between tasks, with their names and a dendrogram.

    Made by :meth:`from_embeddings` or :meth:`from_estimator`, or from a distance matrix
    computed elsewhere (e.g. :func:`~sklearn_task2vec.distances.pairwise_task_distances`).
    :meth:`plot` orders the tasks by average-linkage hierarchical clustering (scipy; the
    distances of a cluster are the mean of its members', the paper's Fig. 2 ordering) and
    draws the tree above the heatmap, or keeps the given order. Colours follow
    :data:`DISTANCE_CMAP` (bright: close) and span the off-diagonal distances.

    Parameters
    ----------
    distances : array-like of shape (n_tasks, n_tasks)
        Distance from the task of each row to the task of each column, finite. With
        ``kind="symmetric"``, symmetric, non-negative, with a zero diagonal.
    names : array-like of shape (n_tasks,) or None, default=None
        The tasks' names (``None``: their indices).
    kind : {"symmetric", "asymmetric"}, default="symmetric"
        Which distance ``distances`` holds: ``d_sym``, or ``d_asym(row -> column)``
        (sec. 3.3), which is neither symmetric nor non-negative. It names the figure; the
        clustering of an asymmetric matrix uses ``(D + D^T) / 2``.

    Attributes
    ----------
    distances : ndarray of shape (n_tasks, n_tasks)
        The distances, in the given order.
    names : list of str
        The tasks' names, in the given order.
    kind : str
        ``"symmetric"`` or ``"asymmetric"``.
    order_ : ndarray of shape (n_tasks,)
        The tasks in the order plotted (indices into ``names``): row and column ``k`` of the
        heatmap are task ``order_[k]``.
    linkage_ : ndarray of shape (n_tasks - 1, 4) or None
        scipy's linkage matrix of the clustered order; None with ``order="given"``.
    im_ : matplotlib AxesImage
        The heatmap.
    ax_ : matplotlib Axes
        The axes of the heatmap.
    dendrogram_ax_ : matplotlib Axes or None
        The axes of the dendrogram, above the heatmap; None without a dendrogram, or when
        every task is at distance 0 from the others (a tree of height 0).
    colorbar_ : matplotlib Colorbar or None
        The colour bar, right of the heatmap; None without one.
    figure_ : matplotlib Figure
        The figure.

    See Also
    --------
    sklearn_task2vec.distances.pairwise_task_distances : The distance matrix.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_task2vec.plotting import TaskDistanceDisplay
    >>> embeddings = np.array([[4.0, 1, 0], [0, 1, 4], [4, 1.5, 0], [0, 1.2, 4]])
    >>> display = TaskDistanceDisplay.from_embeddings(embeddings, names=["a1", "b1", "a2", "b2"])
    >>> [display.names[i] for i in display.order_]   # the near tasks together
    ['b2', 'b1', 'a1', 'a2']
    >>> [label.get_text() for label in display.ax_.get_yticklabels()]
    ['b2', 'b1', 'a1', 'a2']
    >>> display.im_.cmap.name
    'viridis_r'
    """

    def __init__(self, distances, *, names=None, kind="symmetric"):
        distances = check_array(distances, dtype=np.float64, ensure_all_finite=True, input_name="distances")
        if distances.shape[0] != distances.shape[1]:
            raise ValueError(
                f"distances must be square (n_tasks, n_tasks), one row and column per task, got shape "
                f"{distances.shape}."
            )
        if kind not in ("symmetric", "asymmetric"):
            raise ValueError(f"kind must be 'symmetric' or 'asymmetric', got {kind!r}.")
        if kind == "symmetric":
            asymmetry = float(np.max(np.abs(distances - distances.T)))
            if asymmetry > 1e-6 * max(1.0, float(np.max(np.abs(distances)))):
                raise ValueError(
                    f"distances is not symmetric (largest |D - D.T| = {asymmetry:.3g}): pass "
                    f"kind='asymmetric' for an asymmetric distance."
                )
            if np.any(np.diag(distances) != 0) or np.any(distances < 0):
                raise ValueError(
                    "distances must be non-negative with a zero diagonal (a task is at distance 0 from "
                    "itself) for kind='symmetric'."
                )
        self.distances = distances
        self.names = _check_names(names, len(distances), "distances")
        self.kind = kind

    @validate_params(
        {
            "order": [StrOptions({"cluster", "given"})],
            "dendrogram": ["boolean", None],
            "ax": _AXES,
            "cmap": "no_validation",
            "colorbar": ["boolean"],
            "im_kw": [dict, None],
        },
        prefer_skip_nested_validation=True,
    )
    def plot(
        self, *, order="cluster", dendrogram=None, ax=None, cmap=DISTANCE_CMAP, colorbar=True, im_kw=None
    ):
        """Draw the heatmap.

        Parameters
        ----------
        order : {"cluster", "given"}, default="cluster"
            ``"cluster"``: the leaves' order of average-linkage clustering (with scipy's
            optimal leaf ordering), so that near tasks sit together; ``"given"``: the order of
            ``names``.
        dendrogram : bool or None, default=None
            Draw the clustering's tree above the heatmap. ``None``: with ``order="cluster"``.
            A dendrogram needs ``order="cluster"``.
        ax : matplotlib Axes or None, default=None
            Axes to draw on (the dendrogram and colour bar are drawn in axes attached to them);
            ``None``: a new figure.
        cmap : str or matplotlib Colormap, default=DISTANCE_CMAP
            Colour map. The default is the package's convention for distances.
        colorbar : bool, default=True
            Draw a colour bar.
        im_kw : dict or None, default=None
            Keyword arguments of ``imshow`` (e.g. ``vmin``, ``vmax``).

        Returns
        -------
        display : TaskDistanceDisplay
            ``self``, with the matplotlib objects as attributes.
        """
        plt = _pyplot("TaskDistanceDisplay.plot")
        if dendrogram and order != "cluster":
            raise ValueError("dendrogram=True needs order='cluster': the tree orders the tasks.")
        n = len(self.names)
        self.linkage_ = _average_linkage(self.distances) if order == "cluster" and n > 1 else None
        self.order_ = np.arange(n) if self.linkage_ is None else leaves_list(self.linkage_)
        side = min(14.0, max(4.0, 0.25 * n + 2.5))
        figure, ax = _figure_and_axes(plt, ax, figsize=(side + 1.0, side + 0.6))
        low, high = _colour_limits(self.distances)
        options = {"cmap": cmap, "vmin": low, "vmax": high, "interpolation": "nearest", **(im_kw or {})}
        self.im_ = ax.imshow(self.distances[np.ix_(self.order_, self.order_)], **options)
        shown = [self.names[i] for i in self.order_]
        ax.set_xticks(range(n), shown, rotation=90)
        ax.set_yticks(range(n), shown)
        ax.tick_params(labelsize=8)
        symbol = "d_sym" if self.kind == "symmetric" else "d_asym(row → column)"
        ax.set_title(
            f"{self.kind.capitalize()} TASK2VEC distance"
            + (", average-linkage order" if self.linkage_ is not None else ""),
            # Clear of the colour bar's top label, centred on its upper end (8 points high).
            pad=12 if colorbar else None,
        )
        self.colorbar_ = None
        if colorbar:
            self.colorbar_ = figure.colorbar(self.im_, cax=ax.inset_axes([1.03, 0.0, 0.04, 1.0]))
            self.colorbar_.set_label(f"{symbol} (bright: close)")
            self.colorbar_.ax.tick_params(labelsize=8)
        self.dendrogram_ax_ = None
        # A tree of height 0 (every task at distance 0 from the others) has nothing to show.
        tree = self.linkage_ is not None and self.linkage_[:, 2].max() > 0
        if (order == "cluster" if dendrogram is None else dendrogram) and tree:
            self.dendrogram_ax_ = ax.inset_axes([0.0, 1.01, 1.0, 0.15])
            draw_dendrogram(
                self.linkage_,
                ax=self.dendrogram_ax_,
                orientation="top",
                no_labels=True,
                link_color_func=lambda _: "0.3",
            )
            # scipy puts leaf k at 10 k + 5: the columns' centres once the axis spans 10 n.
            self.dendrogram_ax_.set_xlim(0, 10 * n)
            self.dendrogram_ax_.set_axis_off()
        self.ax_, self.figure_ = ax, figure
        _fit_tick_labels(ax)
        return self

    @classmethod
    @validate_params(
        {
            "embeddings": ["array-like"],
            "names": ["array-like", None],
            "kind": _KIND,
            "alpha": [StrictInterval(Real, 0, None, closed="left")],
            "trivial": ["array-like", None],
        },
        prefer_skip_nested_validation=False,
    )
    def from_embeddings(
        cls,
        embeddings,
        *,
        names=None,
        kind="symmetric",
        alpha=0.15,
        trivial=None,
        order="cluster",
        dendrogram=None,
        ax=None,
        cmap=DISTANCE_CMAP,
        colorbar=True,
        im_kw=None,
    ):
        """Draw the distances between task embeddings.

        Parameters
        ----------
        embeddings : array-like of shape (n_tasks, n_filters)
            Non-negative, finite task embeddings, one per row (e.g. the output of
            :meth:`FisherTaskEmbedder.transform <sklearn_task2vec.FisherTaskEmbedder.transform>`).
        names : array-like of shape (n_tasks,) or None, default=None
            The tasks' names (``None``: their indices).
        kind : {"symmetric", "asymmetric"}, default="symmetric"
            Which distance (see :func:`~sklearn_task2vec.distances.pairwise_task_distances`).
        alpha : float, default=0.15
            Weight of the complexity term of the asymmetric distance.
        trivial : array-like of shape (n_filters,) or None, default=None
            The trivial embedding of the asymmetric distance; ``None``: all ones (embeddings
            normalised by it, ``FisherTaskEmbedder(normalize="trivial")``).
        order, dendrogram, ax, cmap, colorbar, im_kw
            See :meth:`plot`.

        Returns
        -------
        display : TaskDistanceDisplay
        """
        _pyplot("TaskDistanceDisplay.from_embeddings")
        embeddings = check_embeddings(embeddings, "embeddings")
        names = _check_names(names, len(embeddings), "embeddings")
        distances = pairwise_task_distances(embeddings, kind=kind, alpha=alpha, trivial=trivial)
        return cls(distances, names=names, kind=kind).plot(
            order=order, dendrogram=dendrogram, ax=ax, cmap=cmap, colorbar=colorbar, im_kw=im_kw
        )

    @classmethod
    @validate_params(
        {"embedder": [HasMethods(["transform"])], "tasks": "no_validation", "names": ["array-like", None]},
        prefer_skip_nested_validation=False,
    )
    def from_estimator(cls, embedder, tasks, *, names=None, kind="symmetric", alpha=0.15, **plot_kw):
        """Embed tasks with a fitted embedder and draw their distances.

        Parameters
        ----------
        embedder : FisherTaskEmbedder
            A fitted embedder: its ``transform(tasks)`` gives the embeddings. With
            ``kind="asymmetric"``, the trivial embedding is its ``trivial_embedding_``, or all
            ones with ``normalize="trivial"``.
        tasks : sequence of tasks
            The tasks to embed (see :class:`~sklearn_task2vec.FisherTaskEmbedder`).
        names : array-like of shape (n_tasks,) or None, default=None
            The tasks' names; ``None``: ``tasks.names`` for a
            :class:`~sklearn_task2vec.task_library.TaskLibrary`, else their indices.
        kind : {"symmetric", "asymmetric"}, default="symmetric"
            Which distance.
        alpha : float, default=0.15
            Weight of the complexity term of the asymmetric distance.
        **plot_kw
            ``order``, ``dendrogram``, ``ax``, ``cmap``, ``colorbar``, ``im_kw`` of :meth:`plot`.

        Returns
        -------
        display : TaskDistanceDisplay
        """
        _pyplot("TaskDistanceDisplay.from_estimator")
        check_is_fitted(embedder)
        if names is None:
            names = getattr(tasks, "names", None)
        trivial = None
        if kind == "asymmetric" and getattr(embedder, "normalize", None) != "trivial":
            trivial = embedder.trivial_embedding_
        return cls.from_embeddings(
            embedder.transform(tasks), names=names, kind=kind, alpha=alpha, trivial=trivial, **plot_kw
        )


# --------------------------------------------------------------------------------------
# Names of a scatter plot, placed without overlap
# --------------------------------------------------------------------------------------


def _boxes_overlap(boxes, others):
    """``(len(boxes), len(others))``: whether each box ``(x0, y0, x1, y1)`` overlaps each other one."""
    boxes, others = boxes[:, None, :], others[None, :, :]
    return (
        (boxes[..., 0] < others[..., 2])
        & (boxes[..., 2] > others[..., 0])
        & (boxes[..., 1] < others[..., 3])
        & (boxes[..., 3] > others[..., 1])
    )


def _segments_cross_boxes(starts, ends, boxes):
    """``(len(starts), len(boxes))``: whether each segment crosses each box (Liang-Barsky clipping)."""
    start, direction = starts[:, None, :], (ends - starts)[:, None, :]
    low, high = boxes[None, :, :2], boxes[None, :, 2:]
    enter, leave = np.zeros((len(starts), len(boxes))), np.ones((len(starts), len(boxes)))
    inside = np.ones((len(starts), len(boxes)), dtype=bool)
    for axis in (0, 1):
        step = direction[..., axis]
        flat = step == 0
        inside &= ~flat | ((start[..., axis] >= low[..., axis]) & (start[..., axis] <= high[..., axis]))
        with np.errstate(divide="ignore", invalid="ignore"):
            t_low = (low[..., axis] - start[..., axis]) / step
            t_high = (high[..., axis] - start[..., axis]) / step
        enter = np.where(flat, enter, np.maximum(enter, np.minimum(t_low, t_high)))
        leave = np.where(flat, leave, np.minimum(leave, np.maximum(t_low, t_high)))
    return inside & (enter <= leave)


def _candidate_offsets(width, height, near, step, reach):
    """Offsets (pixels) of a name's centre from its point, nearest first, in groups: ``(offsets,
    leader)`` where ``leader`` says whether the group's places need a leader line.

    First the eight places just clear of the point's marker (right, above, left, below, then
    the corners), then rings of growing radius, ``step`` apart, up to ``reach``.
    """
    right, up = near + width / 2.0, near + height / 2.0
    beside = [
        (right, 0),
        (0, up),
        (-right, 0),
        (0, -up),
        (right, up),
        (-right, up),
        (right, -up),
        (-right, -up),
    ]
    yield np.array(beside), False
    radius = near + step
    while radius <= reach:
        n_angles = max(16, int(np.ceil(2 * np.pi * radius / step)))
        angles = 2 * np.pi * np.arange(n_angles) / n_angles
        yield (
            np.column_stack([np.cos(angles) * (radius + width / 2), np.sin(angles) * (radius + height / 2)]),
            True,
        )
        radius += step


class _Placed:
    """The names placed so far, with room around them, and their leader lines (pixels)."""

    def __init__(self, frame, markers, apart):
        self.frame, self.markers, self.apart = frame, markers, apart
        self.boxes, self.starts, self.ends = np.zeros((0, 4)), np.zeros((0, 2)), np.zeros((0, 2))

    def score(self, point, centres, size, leader):
        """``(overlaps, crossings, boxes)`` of names of ``size`` centred at ``centres``.

        Overlaps: with a name placed before, with a point, or with the axes' edge. Crossings:
        of the name's leader line (if ``leader``) with a name placed before, and of the name
        with a leader line drawn before.
        """
        half = np.asarray(size) / 2.0
        boxes = np.column_stack([centres - half, centres + half])
        inside = np.all((boxes[:, :2] >= self.frame[:2]) & (boxes[:, 2:] <= self.frame[2:]), axis=1)
        overlaps = (
            _boxes_overlap(boxes, self.boxes + self.apart).sum(axis=1)
            + _boxes_overlap(boxes, self.markers).sum(axis=1)
            + ~inside
        )
        crossings = _segments_cross_boxes(self.starts, self.ends, boxes).sum(axis=0)
        if leader:
            starts = np.repeat(point[None, :], len(centres), axis=0)
            crossings += _segments_cross_boxes(starts, centres, self.boxes).sum(axis=1)
        return overlaps, crossings, boxes

    def add(self, box, point=None, centre=None):
        self.boxes = np.vstack([self.boxes, box])
        if point is not None:
            self.starts, self.ends = np.vstack([self.starts, point]), np.vstack([self.ends, centre])


def _place_labels(ax, names, xs, ys, *, fontsize, marker_radius):
    """Name the points of a scatter plot, each name where it overlaps no other name or point.

    Deterministic: on the laid-out figure, the most isolated points first, each name goes to
    the first place of :func:`_candidate_offsets` inside the axes that overlaps no name placed
    before and no point, and, if there is such a place, whose leader line (when it is not next
    to its point) crosses no name placed before and which crosses no leader line drawn before
    (around many points at one place, the inner names must be crossed). When no place is
    free, the one with the fewest overlaps. The names are kept out of the layout, so that
    placing them does not move the axes. Returns the annotations.
    """
    figure = _root_figure(ax)
    figure.draw_without_rendering()
    pixels = figure.dpi / 72.0
    gap = 2.0 * pixels
    points = ax.transData.transform(np.column_stack([xs, ys]))
    frame = ax.bbox.extents + np.array([gap, gap, -gap, -gap])
    keep_out = (marker_radius * pixels) + gap
    # Names side by side on one line need room between them, or they read as one name.
    apart = np.array([-fontsize * pixels, -gap, fontsize * pixels, gap])
    placed = _Placed(frame, np.column_stack([points - keep_out, points + keep_out]), apart)
    sizes = []
    for name in names:
        probe = ax.text(0, 0, name, fontsize=fontsize)
        box = probe.get_window_extent()
        probe.remove()
        sizes.append((box.width, box.height))
    spacing = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    np.fill_diagonal(spacing, np.inf)
    reach = float(np.hypot(frame[2] - frame[0], frame[3] - frame[1]))
    annotations = {}
    for i in np.lexsort((np.arange(len(points)), -spacing.min(axis=1))):
        width, height = sizes[i]
        best = None  # (overlaps, crossings, offset, box, leader) of the best place so far
        for offsets, leader in _candidate_offsets(width, height, keep_out, height + gap, reach):
            overlaps, crossings, boxes = placed.score(points[i], points[i] + offsets, sizes[i], leader)
            first = int(np.lexsort((crossings, overlaps))[0])  # stable: the nearest of the best
            if best is None or (overlaps[first], crossings[first]) < best[:2]:
                best = (overlaps[first], crossings[first], offsets[first], boxes[first], leader)
            if best[:2] == (0, 0):
                break
        _, _, offset, box, leader = best
        placed.add(box, *((points[i], points[i] + offset) if leader else ()))
        arrow = None
        if leader:
            arrow = {
                "arrowstyle": "-",
                "linewidth": 0.5,
                "color": "0.5",
                "shrinkA": 0,
                "shrinkB": marker_radius,
            }
        label = ax.annotate(
            names[i],
            (xs[i], ys[i]),
            xytext=tuple(offset / pixels),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=fontsize,
            arrowprops=arrow,
        )
        label.set_in_layout(False)
        annotations[i] = label
    return [annotations[i] for i in range(len(points))]


class NormDifficultyDisplay:
    """Each task's embedding norm against its difficulty, the tasks named.

    The paper (Achille et al., ICCV 2019, Fig. 2, right) finds that the norm of
    a task's embedding grows with the task's difficulty (the test error of a model trained on
    it). The title gives Spearman's rank correlation between the two
    (:func:`scipy.stats.spearmanr`). Every point is named; the names are placed where they
    overlap no other name and no point (see the module's notes).

    Parameters
    ----------
    norms : array-like of shape (n_tasks,)
        The embeddings' norms, finite and non-negative.
    difficulty : array-like of shape (n_tasks,)
        A measure of each task's difficulty, finite (e.g. the test error of a linear probe).
    names : array-like of shape (n_tasks,) or None, default=None
        The tasks' names (``None``: their indices).
    difficulty_label : str, default="difficulty (test error)"
        Label of the horizontal axis.
    norm_label : str, default="L1 norm of the embedding"
        Label of the vertical axis.

    Attributes
    ----------
    norms, difficulty : ndarray of shape (n_tasks,)
        The values plotted.
    names : list of str
        The tasks' names.
    spearman_ : float
        Spearman's rank correlation of norm and difficulty; NaN when either is constant.
    scatter_ : matplotlib PathCollection
        The points.
    labels_ : list of matplotlib Annotation
        The names, in the order of ``names``.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_task2vec.plotting import NormDifficultyDisplay
    >>> embeddings = np.array([[1.0, 0.5], [2.0, 1.0], [4.0, 2.5], [0.5, 0.2]])
    >>> display = NormDifficultyDisplay.from_embeddings(
    ...     embeddings, [0.05, 0.10, 0.30, 0.01], names=["easy", "medium", "hard", "trivial"]
    ... )
    >>> display.norms.tolist()
    [1.5, 3.0, 6.5, 0.7]
    >>> display.ax_.get_title()
    'Norm vs difficulty (Spearman ρ = +1.00)'
    >>> [label.get_text() for label in display.labels_]
    ['easy', 'medium', 'hard', 'trivial']
    """

    def __init__(
        self,
        norms,
        difficulty,
        *,
        names=None,
        difficulty_label="difficulty (test error)",
        norm_label="L1 norm of the embedding",
    ):
        norms = _check_vector(norms, "norms")
        if np.any(norms < 0):
            raise ValueError("norms has negative values: a norm is non-negative.")
        self.norms = norms
        self.difficulty = _check_vector(difficulty, "difficulty", n=len(norms), where="norms")
        self.names = _check_names(names, len(norms), "norms")
        self.difficulty_label = difficulty_label
        self.norm_label = norm_label

    @validate_params(
        {
            "ax": _AXES,
            "yscale": [StrOptions({"linear", "log"})],
            "fontsize": [StrictInterval(Real, 0, None, closed="neither")],
            "scatter_kw": [dict, None],
        },
        prefer_skip_nested_validation=True,
    )
    def plot(self, *, ax=None, yscale="linear", fontsize=8, scatter_kw=None):
        """Draw the points and name them.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None``: a new figure.
        yscale : {"linear", "log"}, default="linear"
            Scale of the norms' axis; ``"log"`` for norms spanning decades (all positive).
        fontsize : float, default=8
            Size of the names, in points.
        scatter_kw : dict or None, default=None
            Keyword arguments of ``scatter`` (``s``, the markers' area, sets the room kept
            around each point).

        Returns
        -------
        display : NormDifficultyDisplay
        """
        plt = _pyplot("NormDifficultyDisplay.plot")
        if yscale == "log" and np.any(self.norms <= 0):
            raise ValueError(
                "yscale='log' needs positive norms; a zero norm (a one-class task) has no logarithm."
            )
        figure, ax = _figure_and_axes(plt, ax, figsize=(6.0, 4.5))
        options = {"s": 25, "zorder": 2, **(scatter_kw or {})}
        self.scatter_ = ax.scatter(self.difficulty, self.norms, **options)
        ax.set_yscale(yscale)
        ax.margins(0.12)  # room for the names of the outermost points
        ax.set_xlabel(self.difficulty_label)
        ax.set_ylabel(self.norm_label)
        varies = np.ptp(self.norms) > 0 and np.ptp(self.difficulty) > 0
        self.spearman_ = float(spearmanr(self.norms, self.difficulty)[0]) if varies else np.nan
        correlation = "undefined" if np.isnan(self.spearman_) else f"{self.spearman_:+.2f}"
        ax.set_title(f"Norm vs difficulty (Spearman ρ = {correlation})")
        self.ax_, self.figure_ = ax, figure
        self.labels_ = _place_labels(
            ax,
            self.names,
            self.difficulty,
            self.norms,
            fontsize=fontsize,
            marker_radius=np.sqrt(options["s"]) / 2.0,
        )
        return self

    @classmethod
    @validate_params(
        {"embeddings": ["array-like"], "difficulty": ["array-like"], "names": ["array-like", None]},
        prefer_skip_nested_validation=False,
    )
    def from_embeddings(
        cls,
        embeddings,
        difficulty,
        *,
        names=None,
        difficulty_label="difficulty (test error)",
        ax=None,
        yscale="linear",
        fontsize=8,
        scatter_kw=None,
    ):
        """Draw the L1 norms of task embeddings against the tasks' difficulty.

        Parameters
        ----------
        embeddings : array-like of shape (n_tasks, n_filters)
            Non-negative, finite task embeddings, one per row; the norm is the L1 norm, the sum
            of a row (the paper's Fig. 2 plots the norm of the embedding).
        difficulty : array-like of shape (n_tasks,)
            Each task's difficulty, finite.
        names : array-like of shape (n_tasks,) or None, default=None
            The tasks' names (``None``: their indices).
        difficulty_label : str, default="difficulty (test error)"
            Label of the horizontal axis.
        ax, yscale, fontsize, scatter_kw
            See :meth:`plot`.

        Returns
        -------
        display : NormDifficultyDisplay
        """
        _pyplot("NormDifficultyDisplay.from_embeddings")
        embeddings = check_embeddings(embeddings, "embeddings")
        difficulty = _check_vector(difficulty, "difficulty", n=len(embeddings), where="embeddings")
        names = _check_names(names, len(embeddings), "embeddings")
        norms = embeddings.sum(axis=1, dtype=np.float64)  # the entries are non-negative: the L1 norm
        display = cls(norms, difficulty, names=names, difficulty_label=difficulty_label)
        return display.plot(ax=ax, yscale=yscale, fontsize=fontsize, scatter_kw=scatter_kw)


# --------------------------------------------------------------------------------------
# Model selection
# --------------------------------------------------------------------------------------


def _percent(value):
    return "0%" if value == 0 else f"{100 * value:+.1f}%"


class ModelSelectionDisplay:
    """Relative error increase over the oracle of model selectors, with oracle and chance.

    The paper's measure of model selection (Achille et al., ICCV 2019, sec. 3.4 and Table 1;
    :func:`~sklearn_task2vec.selector.relative_error_increase`): how much larger the mean error
    of the chosen experts is than the oracle's, which picks the best expert of every task;
    lower is better. One bar per selector, on one axis of its own: the oracle (0) and chance (a
    random expert, the mean of always choosing each expert) are its reference lines. Numbers
    of another study (the paper's) belong on another Display, on other axes: the relative
    increase divides by the oracle's error, which differs between studies.

    Parameters
    ----------
    increases : dict of str to float
        Each selector's relative error increase (0.25: 25% more error than the oracle), finite
        and non-negative, in the order to draw.
    chance : float or None, default=None
        Chance's relative error increase; ``None``: not drawn.

    Attributes
    ----------
    increases : dict of str to float
    chance : float or None
    bars_ : matplotlib BarContainer
        The selectors' bars, and chance's last.
    values_ : list of matplotlib Text
        The value written at the end of each bar.
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_task2vec.plotting import ModelSelectionDisplay
    >>> errors = np.array([[0.1, 0.3], [0.2, 0.1], [0.2, 0.4]])   # 3 tasks, 2 experts
    >>> display = ModelSelectionDisplay.from_errors(errors, {"always 0": [0, 0, 0], "best": [0, 1, 0]})
    >>> {name: round(value, 3) for name, value in display.increases.items()}
    {'always 0': 0.25, 'best': 0.0}
    >>> display.chance   # the mean of always 0 (+25%) and always 1 (+100%)
    0.625
    >>> [label.get_text() for label in display.ax_.get_yticklabels()]
    ['oracle', 'always 0', 'best', 'chance (random expert)']
    """

    def __init__(self, increases, *, chance=None):
        if not isinstance(increases, dict) or not increases:
            raise ValueError("increases must be a non-empty dict {selector name: relative error increase}.")
        checked = {}
        for name, value in increases.items():
            if not isinstance(value, Real) or not np.isfinite(value) or value < 0:
                raise ValueError(
                    f"increases[{name!r}] = {value!r}: a relative error increase over the oracle is a finite "
                    f"number >= 0."
                )
            checked[str(name)] = float(value)
        if chance is not None and (not isinstance(chance, Real) or not np.isfinite(chance) or chance < 0):
            raise ValueError(f"chance = {chance!r}: it must be a finite number >= 0, or None.")
        self.increases = checked
        self.chance = None if chance is None else float(chance)

    @validate_params({"ax": _AXES, "bar_kw": [dict, None]}, prefer_skip_nested_validation=True)
    def plot(self, *, ax=None, bar_kw=None):
        """Draw one bar per selector, the oracle at 0 and chance.

        Parameters
        ----------
        ax : matplotlib Axes or None, default=None
            Axes to draw on; ``None``: a new figure.
        bar_kw : dict or None, default=None
            Keyword arguments of ``barh`` for the selectors' bars.

        Returns
        -------
        display : ModelSelectionDisplay
        """
        plt = _pyplot("ModelSelectionDisplay.plot")
        from matplotlib.ticker import PercentFormatter

        rows = ["oracle", *self.increases]
        values = [0.0, *self.increases.values()]
        colours = [SELECTOR_COLOR] * len(self.increases)
        if self.chance is not None:
            rows.append("chance (random expert)")
            values.append(self.chance)
            colours.append(CHANCE_COLOR)
        figure, ax = _figure_and_axes(plt, ax, figsize=(6.0, 0.45 * len(rows) + 1.4))
        positions = np.arange(len(rows))
        self.bars_ = ax.barh(positions[1:], values[1:], color=colours, height=0.6, **(bar_kw or {}))
        ax.axvline(0.0, color="black", linewidth=1.0)
        if self.chance is not None:
            ax.axvline(self.chance, color=CHANCE_COLOR, linestyle="--", linewidth=1.0)
        ax.set_yticks(positions, rows)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
        ax.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.set_xlabel("error increase over the oracle (lower is better)")
        ax.set_title("Model selection")
        self.values_ = [
            ax.annotate(
                _percent(value),
                (value, position),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
            for position, value in zip(positions, values)
        ]
        self.ax_, self.figure_ = ax, figure
        self._make_room_for_values()
        return self

    def _make_room_for_values(self):
        """Widen the value axis so that the value written at each bar's end stays inside the axes."""
        ax = self.ax_
        largest = max(value.xy[0] for value in self.values_)
        ax.set_xlim(0.0, largest * 1.05 if largest > 0 else 1.0)
        _root_figure(ax).draw_without_rendering()
        width = ax.bbox.width
        needed = max(
            value.xy[0] * width / (width - value.get_window_extent().width - 4.0) for value in self.values_
        )
        if needed > ax.get_xlim()[1]:
            ax.set_xlim(0.0, needed * 1.02)

    @classmethod
    @validate_params(
        {"errors": ["array-like"], "choices": [dict], "experts": ["array-like", None]},
        prefer_skip_nested_validation=False,
    )
    def from_errors(cls, errors, choices, *, experts=None, ax=None, bar_kw=None):
        """Draw the relative error increase of each selector's choices.

        Parameters
        ----------
        errors : array-like of shape (n_tasks, n_experts)
            Test error of every expert on every task (finite; the oracle's mean error, the
            mean of the rows' minima, must be positive), e.g. from
            :func:`~sklearn_task2vec.zoo.error_matrix`.
        choices : dict of str to array-like of shape (n_tasks,)
            Each selector's chosen expert for every task: column indices, or with
            ``experts`` names (see :func:`~sklearn_task2vec.selector.relative_error_increase`).
        experts : array-like of shape (n_experts,) or None, default=None
            The names of the columns of ``errors``.
        ax, bar_kw
            See :meth:`plot`.

        Returns
        -------
        display : ModelSelectionDisplay
        """
        _pyplot("ModelSelectionDisplay.from_errors")
        errors = check_array(errors, dtype=np.float64, ensure_all_finite=True, input_name="errors")
        if not choices:
            raise ValueError("choices is empty: give at least one selector's chosen experts.")
        increases = {}
        for name, chosen in choices.items():
            try:
                increases[name] = relative_error_increase(errors, chosen, experts=experts)
            except ValueError as error:
                raise with_context(error, f"choices[{name!r}]")  # noqa: B904 (chained by with_context)
        return cls(increases, chance=_chance(errors)).plot(ax=ax, bar_kw=bar_kw)

    @classmethod
    @validate_params(
        {
            "selector": [HasMethods(["predict"])],
            "X": ["array-like"],
            "errors": ["array-like"],
            "name": [str, None],
        },
        prefer_skip_nested_validation=False,
    )
    def from_estimator(cls, selector, X, errors, *, name=None, ax=None, bar_kw=None):
        """Draw the relative error increase of a fitted selector's predictions.

        Parameters
        ----------
        selector : Model2VecSelector or another fitted model selector
            Its ``predict(X)`` chooses an expert per task; predictions are mapped to columns of
            ``errors`` through its ``classes_`` (as by
            :data:`~sklearn_task2vec.selector.model_selection_scorer`).
        X : array-like of shape (n_tasks, n_filters)
            The tasks' embeddings.
        errors : array-like of shape (n_tasks, n_experts)
            Test error of every expert on every task.
        name : str or None, default=None
            The selector's name in the figure; ``None``: its class name.
        ax, bar_kw
            See :meth:`plot`.

        Returns
        -------
        display : ModelSelectionDisplay
        """
        _pyplot("ModelSelectionDisplay.from_estimator")
        errors = check_array(errors, dtype=np.float64, ensure_all_finite=True, input_name="errors")
        increase = -model_selection_scorer(selector, X, errors=errors)
        name = type(selector).__name__ if name is None else name
        return cls({name: increase}, chance=_chance(errors)).plot(ax=ax, bar_kw=bar_kw)


def _chance(errors):
    """Relative error increase of a random expert: the mean over experts of always choosing it."""
    n_tasks, n_experts = errors.shape
    return float(
        np.mean([relative_error_increase(errors, np.full(n_tasks, column)) for column in range(n_experts)])
    )


# --------------------------------------------------------------------------------------
# Discovered tasks
# --------------------------------------------------------------------------------------


def _check_images(images):
    """``images`` as ``(n, height, width)`` (grey) or ``(n, height, width, 3)`` (colour) floats."""
    images = check_array(images, dtype=np.float64, ensure_all_finite=True, allow_nd=True, input_name="images")
    if images.ndim == 4 and images.shape[1] in (1, 3):
        images = images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
        raise ValueError(
            f"images must be grey (n, height, width) or (n, 1, height, width), or colour (n, 3, height, width) "
            f"or (n, height, width, 3), got shape {images.shape}."
        )
    return images


class DiscoveredTasksDisplay:
    """The tasks found by task discovery, as grids of their images with the positives framed.

    A discovered task is a binary labelling of a fixed set of examples
    (:class:`~sklearn_task2vec.discovery.TaskDiscovery`). Each task gets one axes: its images
    in a grid, the positive ones (label 1) first and framed in orange, then the
    negative ones, with the task's score in the title.

    Parameters
    ----------
    images : array-like of shape (n_samples, height, width), (n_samples, 1 or 3, height, width) or (n_samples, height, width, 3)
        The examples, finite.
    labels : array-like of shape (n_tasks, n_samples) or (n_samples,)
        Each task's labelling, 0 (negative) or 1 (positive).
    scores : array-like of shape (n_tasks,) or None, default=None
        Each task's score, finite; ``None``: not shown.
    names : array-like of shape (n_tasks,) or None, default=None
        The tasks' names (``None``: ``"task 0"``, ...).
    score_name : str, default="score"
        What the scores are, in the titles (e.g. ``"task-ness"``).

    Attributes
    ----------
    images : ndarray of shape (n_samples, height, width) or (n_samples, height, width, 3)
    labels : ndarray of shape (n_tasks, n_samples)
    scores : ndarray of shape (n_tasks,) or None
    names : list of str
    tile_order_ : list of ndarray
        For each task, the examples in the order of its grid's tiles (row by row).
    frames_ : list of list of matplotlib Rectangle
        For each task, the frames around its positive examples' tiles.
    images_ : list of matplotlib AxesImage
        For each task, the image of its grid.
    axes_ : ndarray of matplotlib Axes
        One per task.
    figure_ : matplotlib Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn_task2vec.plotting import DiscoveredTasksDisplay
    >>> images = np.random.RandomState(0).uniform(size=(12, 8, 8))
    >>> labels = np.array([[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]])
    >>> display = DiscoveredTasksDisplay(images, labels, scores=[0.8, 0.4], score_name="task-ness").plot()
    >>> display.tile_order_[1][:3].tolist()   # the positives come first
    [9, 10, 11]
    >>> [len(frames) for frames in display.frames_]
    [3, 3]
    >>> display.axes_[0].get_title(loc="left")
    'task 0: task-ness 0.80, 3 of 12 positive (framed)'
    """

    def __init__(self, images, labels, *, scores=None, names=None, score_name="score"):
        self.images = _check_images(images)
        labels = np.asarray(labels)
        labels = labels.reshape(1, -1) if labels.ndim == 1 else labels
        if labels.ndim != 2 or labels.shape[1] != len(self.images):
            raise ValueError(
                f"labels must be (n_tasks, n_samples) with one label per image ({len(self.images)}), got shape "
                f"{labels.shape}."
            )
        if not np.all(np.isin(labels, (0, 1))):
            raise ValueError("labels must hold 0 (negative) and 1 (positive) only.")
        self.labels = labels.astype(np.int64)
        self.scores = (
            None if scores is None else _check_vector(scores, "scores", n=len(labels), where="labels")
        )
        names = [f"task {task}" for task in range(len(labels))] if names is None else names
        self.names = _check_names(names, len(labels), "labels")
        self.score_name = score_name

    @validate_params(
        {
            "ax": "no_validation",
            "n_columns": [StrictInterval(Integral, 1, None, closed="left"), None],
            "cmap": "no_validation",
        },
        prefer_skip_nested_validation=True,
    )
    def plot(self, *, ax=None, n_columns=None, cmap="gray_r"):
        """Draw each task's grid of images.

        Parameters
        ----------
        ax : matplotlib Axes, sequence of Axes or None, default=None
            One axes per task (one Axes for one task); ``None``: a new figure, one row per task.
        n_columns : int or None, default=None
            Images per row of a grid; ``None``: half of the images, at most 25.
        cmap : str or matplotlib Colormap, default="gray_r"
            Colour map of grey images (dark ink on white for ``"gray_r"``).

        Returns
        -------
        display : DiscoveredTasksDisplay
        """
        plt = _pyplot("DiscoveredTasksDisplay.plot")
        from matplotlib.patches import Rectangle

        n_tasks, n_samples = self.labels.shape
        height, width = self.images.shape[1:3]
        n_columns = int(min(25, max(1, -(-n_samples // 2)))) if n_columns is None else int(n_columns)
        n_rows = -(-n_samples // n_columns)
        gap = max(2, height // 4)
        if ax is None:
            figure, axes = plt.subplots(
                n_tasks,
                1,
                figsize=(0.35 * n_columns + 0.6, n_tasks * (0.35 * n_rows + 0.45)),
                squeeze=False,
                layout="constrained",
            )
            axes = axes[:, 0]
        else:
            axes = np.atleast_1d(np.asarray(ax, dtype=object)).ravel()
            if len(axes) != n_tasks:
                raise ValueError(f"ax must be one Axes per task ({n_tasks}), got {len(axes)}.")
            figure = _root_figure(axes[0])
        low, high = float(self.images.min()), float(self.images.max())
        self.tile_order_, self.frames_, self.images_ = [], [], []
        for task, axis in enumerate(axes):
            labels = self.labels[task]
            order = np.concatenate([np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)])
            mosaic = np.full(
                (gap + n_rows * (height + gap), gap + n_columns * (width + gap), *self.images.shape[3:]),
                np.nan,
            )
            frames = []
            for tile, index in enumerate(order):
                row, column = divmod(tile, n_columns)
                top, left = gap + row * (height + gap), gap + column * (width + gap)
                mosaic[top : top + height, left : left + width] = self.images[index]
                if labels[index] == 1:
                    # Pixel (r, c) covers [c - 0.5, c + 0.5]: the frame runs through the gap around the tile.
                    frame = Rectangle(
                        (left - 0.5 - gap / 2, top - 0.5 - gap / 2),
                        width + gap,
                        height + gap,
                        fill=False,
                        edgecolor=POSITIVE_COLOR,
                        linewidth=1.5,
                    )
                    frames.append(axis.add_patch(frame))
            if self.images.ndim == 4:  # colour: the gaps white, the values scaled to [0, 1]
                shown = np.nan_to_num((mosaic - low) / (high - low if high > low else 1.0), nan=1.0)
                self.images_.append(axis.imshow(shown, interpolation="nearest"))
            else:
                self.images_.append(
                    axis.imshow(mosaic, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
                )
            axis.set_xticks([])
            axis.set_yticks([])
            score = "" if self.scores is None else f": {self.score_name} {self.scores[task]:.2f}"
            positives = int(labels.sum())
            axis.set_title(
                f"{self.names[task]}{score}, {positives} of {n_samples} positive (framed)",
                loc="left",
                fontsize=9,
            )
            self.tile_order_.append(order)
            self.frames_.append(frames)
        self.axes_, self.figure_ = axes, figure
        return self

    @classmethod
    @validate_params(
        {
            "search": [HasMethods(["fit"])],
            "images": ["array-like", None],
            "image_shape": [tuple, None],
            "names": ["array-like", None],
        },
        prefer_skip_nested_validation=False,
    )
    def from_estimator(cls, search, *, images=None, image_shape=None, names=None, ax=None, n_columns=None):
        """Draw the tasks of a fitted :class:`~sklearn_task2vec.discovery.TaskDiscovery`.

        Parameters
        ----------
        search : TaskDiscovery
            Fitted: its ``labels_`` are the tasks, its ``scores_`` their scores.
        images : array-like of shape (n_samples, ...) or None, default=None
            The examples as images; ``None``: the ``X`` the search was fitted on (from its
            ``tasks_``), reshaped to ``image_shape`` when it holds 2-D features.
        image_shape : tuple of int or None, default=None
            ``(height, width)`` of the images when ``X`` holds them flattened (e.g. ``(8, 8)``
            for scikit-learn's digits as 64 features).
        names : array-like of shape (n_tasks,) or None, default=None
            The tasks' names (``None``: ``"task 0"``, ...).
        ax, n_columns
            See :meth:`plot`.

        Returns
        -------
        display : DiscoveredTasksDisplay
        """
        _pyplot("DiscoveredTasksDisplay.from_estimator")
        check_is_fitted(search, "labels_")
        if images is None:
            images = np.asarray(search.tasks_[0][0])
            if images.ndim == 2:
                if image_shape is None or int(np.prod(image_shape)) != images.shape[1]:
                    raise ValueError(
                        f"The search was fitted on {images.shape[1]} features per example: pass "
                        f"image_shape=(height, width) with height * width = {images.shape[1]}, or images=..."
                        + ("" if image_shape is None else f" (got image_shape={image_shape})")
                    )
                images = images.reshape(len(images), *image_shape)
        score_name = {"taskness": "task-ness", "agreement": "agreement"}.get(search.scoring, "score")
        display = cls(images, search.labels_, scores=search.scores_, names=names, score_name=score_name)
        return display.plot(ax=ax, n_columns=n_columns)
