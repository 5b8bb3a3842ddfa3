"""FisherTaskEmbedder: TASK2VEC as a scikit-learn transformer."""

from __future__ import annotations

import contextlib
import copy
import numbers
import threading
import uuid
import warnings

import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from . import _fisher as fisher, _probes as probes
from ._cache import EmbeddingCache, cache_folder, settings_key, task_key
from ._heads import probe_features, run_without_gradient, train_head
from .tasks import ArrayTask, check_inputs, coerce_task, encode_labels, example_shape, is_task_sequence

_METHODS = ("auto", *fisher.METHODS)


class FisherTaskEmbedder(TransformerMixin, BaseEstimator):
    """Embed learning tasks as the diagonal Fisher Information of a probe network's filters.

    TASK2VEC (Achille et al., ICCV 2019): a task's data go through a fixed probe network, a
    linear head is trained on the task's labels over the probe's frozen features, and the
    embedding is the Fisher Information of the probe's weights, with ``y`` drawn from the
    trained model, diagonal only and averaged over the weights of each filter: one number
    per output channel of every Conv and per output unit of every Linear layer of the probe.
    Its size does not depend on the number of classes; its norm grows with the task's
    difficulty; its distances (:mod:`sklearn_task2vec.distances`) follow task similarity.

    ``X`` is either

    1. a sequence of tasks (list or tuple): each an ``(inputs, labels)`` pair, a torch
       ``Dataset`` of ``(x, y)`` or a ``DataLoader``. ``transform`` returns one row per task,
       ``(n_tasks, n_filters)``; each task gets its own head. ``y`` is ignored (in a Pipeline
       it is the meta-target of the next step). ``fit`` only prepares the probe;
    2. one task as a numeric array with labels ``y``: ``fit`` trains the head (``head_``) and
       computes the task's embedding (``embedding_``); ``transform(X)`` returns each example's
       own Fisher contribution under that head, ``(n_samples, n_filters)``, whose mean over
       the fitted ``X`` is ``embedding_``.

    Parameters
    ----------
    probe : "auto", str or torch.nn.Module, default="auto"
        The probe network. A torchvision classification model name (``"resnet18"``,
        ``"resnet34"`` (the paper's), ``"resnet50"``, ``"densenet121"``, ``"vgg13_bn"``, ...),
        whose final Linear classifier is dropped; or any module mapping a batch of inputs to a
        ``(batch, d)`` feature matrix, used as given (it is copied, never modified).
        ``"auto"``: images (N x C x H x W) go to ``"resnet34"``; 2-D features go to a
        :class:`~sklearn_task2vec.probes.RandomReLUProbe` seeded by ``random_state``.
    probe_weights : "imagenet", None or path-like, default="imagenet"
        Weights of a named probe: torchvision's ImageNet weights (downloaded and cached by
        torch.hub), ``None`` for random initialisation, or a local ``state_dict`` file
        (loaded with ``weights_only=True``). Ignored for module probes and the random probe.
    method : {"auto", "montecarlo", "exact", "variational"}, default="auto"
        Fisher estimator. ``"montecarlo"``: one label sampled from the model per example
        (unbiased, one backward pass). ``"exact"``: the expectation over labels in closed form
        (``n_classes - 1`` backward passes, one for binary tasks). ``"auto"``: ``"exact"`` for
        tasks with at most 3 classes, ``"montecarlo"`` above. ``"variational"``: the paper's
        robust estimator (sec. 3.1): the per-filter precision ``Lambda`` of the largest
        Gaussian perturbation of the probe's weights the task's loss tolerates, trained with
        the head by stochastic variational Bayes (``variational_*`` parameters); the row is
        ``(beta / N) Lambda = F + (beta / N) lambda^2``, which tends to the prior (the trivial
        embedding) when the task has few examples. It costs one point-estimate pass plus
        ``variational_steps`` forward and backward passes of a batch, has no per-example rows, and its rows are best compared
        with ``normalize="trivial"``, which divides each by its own prior term.
    normalize : {None, "trivial"}, default=None
        ``None``: rows are the Fisher estimate itself. ``"trivial"``: rows are divided by
        ``trivial_embedding_``, the trivial-normalised space where the trivial embedding is all
        ones and the per-layer scales of the probe's weights are gone. The symmetric distance
        is the same in both spaces; in this one, the asymmetric distance and
        :class:`Model2VecSelector` need no trivial embedding passed to them.
    skip_layers : str or None, default=None
        Embed only the filters from this layer of the probe on (a module path the probe's
        forward calls, at a block boundary, e.g. ``"layer3"`` of a ResNet), as the reference
        implementation's ``skip_layers``. The probe is cut there (``torch.fx``); the layers
        before it run once per task, and their output activations are kept (in host memory,
        one tensor per example) for the Fisher pass, which then covers only the rest. Saves
        the early layers' forward (and, with ``method="variational"``, every step's), at the
        cost of memory that grows with the task. ``None``: every filter.
    max_samples : int or None, default=None
        Use at most this many examples per task, drawn at random.
    batch_size : int, default=64
        Examples per forward/backward pass (and per head-training step).
    head_epochs : int, default=100
        Most epochs of head training. Each task's head is fitted to convergence by full-batch
        L-BFGS on the cached probe features, one epoch per iteration; it stops earlier when
        converged.
    head_learning_rate : float, default=1.0
        L-BFGS step size of the head (its line search adapts the step).
    head_weight_decay : float, default=5e-4
        L2 penalty ``weight_decay / 2 * ||W||^2`` on the head's weights (the paper's 5e-4).
    variational_beta : float, default=1e-3
        ``beta`` of ``method="variational"``: the weight of the prior (KL) term against the
        task's summed cross-entropy; 1 is the evidence lower bound. Smaller values trust the
        data more: a filter's row leaves the prior once ``N F / beta`` outgrows ``lambda^2``.
        The default matches the reference implementation (1e-7 per example at 10,000 examples).
    variational_steps : int, default=300
        Optimisation steps (batches of ``batch_size``) of ``method="variational"``, cycling over
        the task (about the reference implementation's two epochs of 10,000 samples).
    variational_learning_rate : float, default=1e-2
        Adam learning rate of the log-precisions of ``method="variational"`` (the paper's
        1e-2); the head is trained jointly at the paper's 1e-4. The precisions start from the
        second-order solution of a point estimate (``exact`` up to 3 classes, ``montecarlo``
        above), which the variational objective then corrects: started from the prior, they
        take thousands of steps to converge.
    device : str or torch.device, default="auto"
        Where to compute; ``"auto"`` is CUDA when available, else CPU. Results come back as
        float64 numpy arrays in any case.
    autocast : {None, "bfloat16", "float16"}, default=None
        Run the probe's forward and backward passes under ``torch.autocast`` in this
        precision (the per-example squares, the head and the sums stay in float32/float64).
        Faster on GPUs with tensor cores (slower on most CPUs). bfloat16 moved the rows of a
        random-init ResNet-18 on 32x32 images by 3% (montecarlo) to 8% (exact) in relative L2
        norm and kept the filter ranking (Spearman >= 0.99). ``None``: the probe's own
        precision. On CUDA the probe also runs in channels-last memory format.
    n_jobs : int or None, default=None
        Tasks embedded in parallel with joblib; ``None`` means one at a time. Any joblib
        backend works (``joblib.parallel_config(backend="dask")`` on a ``dask.distributed``
        cluster, ``"loky"`` processes, threads), with the same rows as a sequential run. Each
        worker process prepares the probe once and reuses it for its tasks.
    memory : str, path-like, joblib.Memory or None, default=None
        A folder (or a ``joblib.Memory``'s location) where each task's row is stored as soon as
        it is computed, keyed by the task's content and by the probe's weights, the settings,
        the seeds and the versions (:mod:`sklearn_task2vec.cache`). A rerun after a crash or
        an interruption loads the finished tasks and computes only the missing ones; several
        processes may share the folder; a damaged file is detected by its checksum, reported
        and recomputed. Needs an integer ``random_state`` to be reused (``None`` draws new
        seeds each time). Streamed tasks (Datasets, DataLoaders) are read once more to hash
        their content.
    on_error : {"raise", "warn"}, default="raise"
        What a task that fails (bad data, a probe error) does to a sequence of tasks:
        ``"raise"`` stops with its error; ``"warn"`` warns, makes its row NaN, keeps the error
        in ``errors_`` and goes on with the other tasks.
    random_state : int, RandomState instance or None, default=None
        Seeds the random probe (and a named probe's random initialisation with
        ``probe_weights=None``), example subsampling, Monte Carlo labels and the variational
        perturbations. Results are deterministic on CPU for a fixed value.
    verbose : int, default=0
        Above 0, show progress bars over tasks and batches.

    Attributes
    ----------
    probe_ : torch.nn.Module
        The frozen probe (a copy; eval mode, BatchNorm statistics fixed).
    trivial_embedding_ : ndarray of shape (n_filters,)
        The paper's trivial embedding: the precision of a per-layer isotropic Gaussian prior
        matched to the scale of the layer's weights, ``1 / mean(w_l^2)``, one value per layer
        repeated over its filters. The row of a task with a single class.
    n_features_in_ : int
        Features of ``X`` when fitted on one array.
    feature_names_in_ : ndarray of str
        Column names of ``X`` when fitted on a DataFrame with string columns.
    classes_ : ndarray
        The classes of ``y`` when fitted on one array.
    head_ : torch.nn.Linear
        The head trained on ``(X, y)`` when fitted on one array.
    method_ : str
        The Fisher estimator used for ``(X, y)`` when fitted on one array.
    prior_embedding_ : ndarray of shape (n_filters,)
        The row that ``normalize="trivial"`` divides ``embedding_`` by, when fitted on one
        array: ``trivial_embedding_``, or with ``method="variational"`` the task's trained
        prior term ``(beta / N) lambda^2``.
    embedding_ : ndarray of shape (n_filters,)
        The embedding of the task ``(X, y)`` when fitted on one array.
    errors_ : dict of int to Exception
        After ``transform`` of a sequence of tasks: the tasks that failed (their index in the
        sequence) and their errors, with ``on_error="warn"``; empty when none did.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_task2vec import FisherTaskEmbedder
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(200, 4))
    >>> tasks = [(X, X[:, 0] > 0), (X, X[:, 1] > 0), (X, X[:, 0] + X[:, 2] > 0)]
    >>> embedder = FisherTaskEmbedder(random_state=0)
    >>> embedder.fit_transform(tasks).shape
    (3, 64)
    """

    def __init__(
        self,
        probe="auto",
        probe_weights="imagenet",
        method="auto",
        normalize=None,
        skip_layers=None,
        max_samples=None,
        batch_size=64,
        head_epochs=100,
        head_learning_rate=1.0,
        head_weight_decay=5e-4,
        variational_beta=1e-3,
        variational_steps=300,
        variational_learning_rate=1e-2,
        device="auto",
        autocast=None,
        n_jobs=None,
        memory=None,
        on_error="raise",
        random_state=None,
        verbose=0,
    ):
        self.probe = probe
        self.probe_weights = probe_weights
        self.method = method
        self.normalize = normalize
        self.skip_layers = skip_layers
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.head_epochs = head_epochs
        self.head_learning_rate = head_learning_rate
        self.head_weight_decay = head_weight_decay
        self.variational_beta = variational_beta
        self.variational_steps = variational_steps
        self.variational_learning_rate = variational_learning_rate
        self.device = device
        self.autocast = autocast
        self.n_jobs = n_jobs
        self.memory = memory
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # An array X is one task and its labels are needed to train the head.
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Prepare the probe; on one array task, also train its head and embed it.

        Parameters
        ----------
        X : sequence of tasks, or array-like of shape (n_samples, n_features)
            Tasks (see the class docstring), or the inputs of one task.
        y : array-like of shape (n_samples,) or None
            Ignored for a sequence of tasks; the labels of the one task otherwise.

        Returns
        -------
        self : FisherTaskEmbedder
        """
        self._check_params()
        probe_seed, seeds = _seeds(self.random_state)
        if is_task_sequence(X):
            self.probe_ = self._make_probe(example_shape(X[0], 0), probe_seed)
            self._finish_probe()
            return self
        X, y = validate_data(self, X, y, allow_nd=True, dtype=(np.float64, np.float32))
        self.probe_ = self._make_probe(X.shape[1:], probe_seed)
        self._finish_probe()
        task = self._array_task(X, y)
        self.classes_, codes = encode_labels(task.labels, "y")
        self.method_ = fisher.resolve_method(self.method, len(self.classes_))
        self.prior_embedding_ = self.trivial_embedding_
        if len(self.classes_) == 1:
            _warn_trivial("The task (X, y)")
            self.head_ = None
            self.embedding_ = self._normalised(self.trivial_embedding_)
            return self
        device = self._device()
        probe = self._runnable_probe(device)
        features, _, task = self._cache_features(probe, task, device)
        self.head_ = self._train_head(features, codes, len(self.classes_)).cpu()
        head = _on_device(self.head_, device)
        if self.method_ == "variational":
            embedding, self.prior_embedding_ = self._variational(probe, head, task, self.classes_, len(features), seeds, device)
            self.embedding_ = self._normalised(embedding, self.prior_embedding_)
            return self
        rows = self._fisher(probe, head, task, self.method_, seeds, keep_rows=True)
        self.embedding_ = self._normalised(rows).mean(axis=0)
        return self

    def _check_params(self):
        probe = self.probe
        if not (isinstance(probe, (str, torch.nn.Module))):
            raise TypeError(
                f"probe must be 'auto', a torchvision model name or a torch.nn.Module, got "
                f"{type(probe).__name__}."
            )
        if self.method not in _METHODS:
            raise ValueError(f"Unknown method {self.method!r}; expected one of {_METHODS}.")
        if self.skip_layers is not None and not isinstance(self.skip_layers, str):
            raise TypeError(
                f"skip_layers must be None or the path of a probe layer (str), got "
                f"{type(self.skip_layers).__name__}."
            )
        if self.autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"autocast must be None, 'bfloat16' or 'float16', got {self.autocast!r}.")
        if self.on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', got {self.on_error!r}.")
        cache_folder(self.memory)
        if self.normalize not in (None, "trivial"):
            raise ValueError(f"normalize must be None or 'trivial', got {self.normalize!r}.")
        _check_int("batch_size", self.batch_size, 1)
        _check_int("head_epochs", self.head_epochs, 0)
        _check_int("variational_steps", self.variational_steps, 1)
        _check_int("verbose", self.verbose, 0)
        if self.max_samples is not None:
            _check_int("max_samples", self.max_samples, 1)
        numbers_checked = (
            ("head_learning_rate", True),
            ("head_weight_decay", False),
            ("variational_beta", True),
            ("variational_learning_rate", True),
        )
        for name, positive in numbers_checked:
            value = getattr(self, name)
            valid = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not valid or not np.isfinite(value) or not (value > 0 if positive else value >= 0):
                kind = "positive" if positive else "non-negative"
                raise ValueError(f"{name} must be a {kind} number, got {value!r}.")
        self._device()

    def _device(self):
        if isinstance(self.device, str) and self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            return torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be 'auto' or a torch device, got {self.device!r}.") from exc

    def _make_probe(self, input_shape, seed):
        """A frozen probe for examples of shape ``input_shape`` (without the batch axis)."""
        probe = self.probe
        if isinstance(probe, torch.nn.Module):
            return probes.frozen_copy(probe)
        if probe == "auto":
            if len(input_shape) == 1:
                return probes.frozen_copy(probes.RandomReLUProbe(input_shape[0], seed=seed))
            if len(input_shape) == 3:
                probe = "resnet34"
            else:
                raise ValueError(
                    f"probe='auto' takes 2-D features (n, n_features) or images (n, C, H, W); "
                    f"got examples of shape {tuple(input_shape)}. Pass a probe module that takes them."
                )
        return probes.frozen_copy(probes.build_named_probe(probe, self.probe_weights, seed))

    def _finish_probe(self):
        filters = probes.embedded_filters(self.probe_, self.skip_layers)
        self.trivial_embedding_ = probes.trivial_embedding(filters)
        # Names this fitted probe for the workers that prepare it once (_prepared_probe).
        self._probe_token = uuid.uuid4().hex

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Embed tasks, or give each example's Fisher contribution for the fitted task.

        Parameters
        ----------
        X : sequence of tasks, or array-like of shape (n_samples, n_features)
            Tasks to embed, or examples of the task seen in ``fit``.

        Returns
        -------
        ndarray of shape (n_tasks, n_filters) or (n_samples, n_filters), float64
        """
        check_is_fitted(self)
        if is_task_sequence(X):
            return self._embed_tasks(X)
        if not hasattr(self, "classes_"):
            raise ValueError(
                "This FisherTaskEmbedder was fitted on a sequence of tasks; transform takes a "
                "sequence of tasks too (an array X is one task, fitted with its labels y)."
            )
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=(np.float64, np.float32))
        if self.method_ == "variational":
            raise ValueError(
                "method='variational' estimates the Fisher of the task as a whole (embedding_); "
                "it has no per-example rows. Embed tasks as a sequence of tasks, or use "
                "method='exact' or 'montecarlo' for per-example rows."
            )
        if self.head_ is None:
            return self._normalised(np.tile(self.trivial_embedding_, (X.shape[0], 1)))
        device = self._device()
        task = self._array_task(X, np.zeros(X.shape[0]))
        _, seeds = _seeds(self.random_state)
        probe = self._runnable_probe(device)
        if probe.stem is not None:
            task = self._cache_features(probe, task, device)[2]
        rows = self._fisher(probe, _on_device(self.head_, device), task, self.method_, seeds, keep_rows=True)
        return self._normalised(rows)

    def get_feature_names_out(self, input_features=None):
        """Names of the embedding's coordinates, ``"<module path>:<filter index>"``.

        Parameters
        ----------
        input_features : array-like of str or None
            Only checked against the features seen in ``fit``.

        Returns
        -------
        ndarray of str objects, shape (n_filters,)
        """
        check_is_fitted(self)
        if hasattr(self, "n_features_in_"):
            _check_feature_names_in(self, input_features)
        return probes.filter_names(probes.embedded_filters(self.probe_, self.skip_layers))

    # -------------------------------------------------------------- helpers
    def _normalised(self, embeddings, priors=None):
        """``embeddings`` divided by their prior rows (default ``trivial_embedding_``) when
        ``normalize="trivial"``."""
        if self.normalize == "trivial":
            return embeddings / (self.trivial_embedding_ if priors is None else priors)
        return embeddings

    def _array_task(self, X, y):
        dtype = probes.probe_dtype(self.probe_)
        return ArrayTask(check_inputs(X, "X", dtype), np.asarray(y), "X")

    def _runnable_probe(self, device):
        """The fitted probe on ``device``, BatchNorm folded (:func:`probes.folded_filters`)."""
        probe = probes.folded_filters(_on_device(self.probe_, device), self.skip_layers)
        if device.type in _CHANNELS_LAST_DEVICES:
            for module in (probe.stem, probe.module):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        return probe

    def _autocast(self, device):
        """The reduced-precision context of ``autocast`` on ``device`` (or none)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=getattr(torch, self.autocast))

    def _cache_features(self, probe, task, device):
        """The probe's features of every example of ``task`` (one no-grad pass), the labels,
        and the task the Fisher pass runs on: ``task``, or with ``skip_layers`` its examples'
        activations before the first embedded layer, kept on the host."""
        features, labels, activations = [], [], []
        for inputs, batch_labels in task.batches(self.batch_size):
            inputs = _to_device(inputs, device)
            with self._autocast(device):
                if probe.stem is not None:
                    inputs = run_without_gradient(probe.stem, inputs, task.where)
                    activations.append(inputs.cpu())
                features.append(probe_features(probe.module, inputs, task.where))
            labels.append(batch_labels)
        labels = np.concatenate(labels)
        if probe.stem is not None:
            task = ArrayTask(torch.cat(activations), labels, task.where)
        # The head is trained in the probe's precision whatever autocast computed the features in.
        return torch.cat(features).to(probes.probe_dtype(probe.module)), labels, task

    def _train_head(self, features, codes, n_classes):
        return train_head(
            features,
            codes,
            n_classes,
            max_iter=self.head_epochs,
            learning_rate=self.head_learning_rate,
            weight_decay=self.head_weight_decay,
        )

    def _fisher(self, probe, head, task, method, seeds, keep_rows, progress=None):
        """Fisher rows of ``task`` (``keep_rows``) or their sum, as float64 numpy."""
        device = next(iter(head.parameters())).device
        generator = torch.Generator(device=device).manual_seed(int(seeds[1]))
        total = torch.zeros(len(self.trivial_embedding_), dtype=torch.float64, device=device)
        rows = []
        with fisher.FilterFisherRecorder(probe.filters, probe.scales) as recorder:
            for inputs, _ in task.batches(self.batch_size):
                with self._autocast(device):
                    batch_rows = fisher.per_example_fisher(
                        probe.module, head, _to_device(inputs, device), method, generator, recorder
                    )
                if keep_rows:
                    rows.append(batch_rows)
                else:
                    total += batch_rows.sum(0)
                if progress is not None:
                    progress.update(len(inputs))
        if keep_rows:
            return torch.cat(rows).cpu().numpy()
        return total.cpu().numpy()

    def _embed_tasks(self, tasks):
        _, seeds = _seeds(self.random_state)
        device = self._device()
        folder = cache_folder(self.memory)
        cache = None if folder is None else EmbeddingCache(folder, settings_key(self, seeds, device))
        # In-process, every task shares one prepared probe; joblib workers prepare their own.
        probe = self._runnable_probe(device) if effective_n_jobs(self.n_jobs) == 1 else None
        jobs = (
            delayed(self._embed_task_or_error)(task, index, seeds, probe, cache)
            for index, task in enumerate(tasks)
        )
        results = Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs)
        if self.verbose > 0:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(tasks), desc="tasks")
        rows, priors, self.errors_ = [], [], {}
        missing = np.full(len(self.trivial_embedding_), np.nan)
        for index, (row, prior, single_class, error) in enumerate(results):
            # Warned here rather than in _embed_task, which may run in a joblib worker.
            if error is not None:
                warnings.warn(
                    f"Task {index} failed and its row is NaN (on_error='warn'): "
                    f"{type(error).__name__}: {error}",
                    UserWarning,
                    stacklevel=3,
                )
                self.errors_[index] = error
                row = prior = missing
            elif single_class:
                _warn_trivial(f"Task {index}")
            rows.append(row)
            priors.append(prior)
        return self._normalised(np.vstack(rows), np.vstack(priors))

    def _embed_task_or_error(self, task, index, seeds, probe, cache):
        """``_embed_task``'s result and None, or with ``on_error="warn"`` its error instead."""
        try:
            return (*self._embed_task(task, index, seeds, probe, cache), None)
        except Exception as error:
            if self.on_error == "raise":
                raise
            return None, None, False, error

    def _embed_task(self, task, index, seeds, probe=None, cache=None):
        """One task's embedding (cache features, train a head, take the Fisher), its prior row
        (what ``normalize="trivial"`` divides it by) and whether it has one class; read from
        and written to ``cache`` when given."""
        device = self._device()
        if probe is None:
            probe = _prepared_probe(self, device)
        dtype = probes.probe_dtype(probe.module)
        task = coerce_task(
            task,
            index,
            dtype=dtype,
            batch_size=self.batch_size,
            max_samples=self.max_samples,
            rng=np.random.RandomState(seeds[0]),
        )
        if cache is None:
            return self._computed_task(task, seeds, probe, device)
        key = task_key(task, self.batch_size)
        stored = cache.load(key)
        if stored is not None:
            row, prior = stored
            return row, prior, bool(np.array_equal(row, self.trivial_embedding_))
        row, prior, single_class = self._computed_task(task, seeds, probe, device)
        cache.save(key, row, prior)
        return row, prior, single_class

    def _computed_task(self, task, seeds, probe, device):
        features, labels, task = self._cache_features(probe, task, device)
        classes, codes = encode_labels(labels, task.where)
        if len(classes) == 1:
            return self.trivial_embedding_.copy(), self.trivial_embedding_, True
        head = self._train_head(features, codes, len(classes))
        method = fisher.resolve_method(self.method, len(classes))
        if method == "variational":
            return (*self._variational(probe, head, task, classes, len(features), seeds, device), False)
        progress = None
        if self.verbose > 0:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(features), desc=f"{task.where} Fisher", unit="ex", leave=False)
        total = self._fisher(probe, head, task, method, seeds, keep_rows=False, progress=progress)
        if progress is not None:
            progress.close()
        return total / len(features), self.trivial_embedding_, False

    def _variational(self, probe, head, task, classes, n_examples, seeds, device):
        """``method="variational"`` on ``task``: its row and its prior term (fisher.variational_fisher)."""
        code_of = {label: code for code, label in enumerate(classes)}
        order = np.random.RandomState(seeds[1])

        def batches():
            for inputs, labels in task.batches(self.batch_size, order):
                codes = torch.tensor([code_of[label] for label in labels], dtype=torch.long, device=device)
                yield _to_device(inputs, device), codes

        # Start from the second-order optimum of the point estimate (see variational_fisher).
        point_method = fisher.resolve_method("auto", len(classes))
        point = self._fisher(probe, head, task, point_method, seeds, keep_rows=False) / n_examples
        generator = torch.Generator(device=device).manual_seed(int(seeds[1]))
        with self._autocast(device):
            return fisher.variational_fisher(
                probe,
                head,
                batches,
                n_examples,
                prior=self.trivial_embedding_,
                initial_precision=self.trivial_embedding_ + n_examples / self.variational_beta * point,
                beta=self.variational_beta,
                n_steps=self.variational_steps,
                learning_rate=self.variational_learning_rate,
                generator=generator,
            )


# The probe a joblib worker prepared last, by (probe token, device, skip_layers): its next tasks
# reuse it instead of folding and moving the probe once per task. Per thread, since the Fisher
# pass hooks the probe's modules (a threading backend runs tasks side by side in one process).
_PREPARED = threading.local()


def _prepared_probe(embedder, device):
    key = (embedder._probe_token, str(device), embedder.skip_layers)
    if getattr(_PREPARED, "key", None) != key:
        _PREPARED.probe = embedder._runnable_probe(device)  # one probe per worker: the last one
        _PREPARED.key = key
    return _PREPARED.probe


def _on_device(module, device):
    """``module`` itself on CPU, a copy on another device: fitted attributes stay on CPU."""
    if device.type == "cpu":
        return module
    return copy.deepcopy(module).to(device)


# Devices where convolutional probes run in channels-last memory format (the layout tensor
# cores want); on CPU the default layout is as fast for these passes.
_CHANNELS_LAST_DEVICES = ("cuda",)


def _to_device(inputs, device):
    if device.type == "cuda":
        inputs = inputs.pin_memory().to(device, non_blocking=True)
    else:
        inputs = inputs.to(device)
    if inputs.dim() == 4 and device.type in _CHANNELS_LAST_DEVICES:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _seeds(random_state):
    """The random probe's seed, and the seeds of (example subsampling, Monte Carlo labels).

    Every task gets the same seeds, so a task's embedding depends on the task and
    ``random_state`` only, not on its position in the sequence or on the other tasks.
    """
    rng = check_random_state(random_state)
    probe_seed, root = rng.randint(np.iinfo(np.int32).max, size=2)
    return int(probe_seed), np.random.SeedSequence(int(root)).generate_state(2)


def _warn_trivial(what):
    warnings.warn(
        f"{what} has a single class: nothing to discriminate, so its embedding is the "
        f"trivial embedding (trivial_embedding_).",
        UserWarning,
        stacklevel=3,
    )


def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
