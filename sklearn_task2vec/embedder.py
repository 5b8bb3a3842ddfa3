"""FisherTaskEmbedder: TASK2VEC as a scikit-learn transformer."""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import joblib
import numpy as np
import torch
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data
from torch.utils.data import DataLoader

from ._cache import EmbeddingCache, cache_folder, settings_key, task_key
from ._fisher import METHODS, VARIATIONAL_CURVATURES, VARIATIONAL_NOISES, task_fisher
from ._heads import POOLINGS, Readout, channel_fix
from ._onnx import OnnxProbe, is_onnx_file
from ._pipeline import (
    EmbeddingSettings,
    Seeds,
    TaskEmbedding,
    check_fisher_row,
    embed_task,
    embedding_seeds,
    fisher_generator,
    fisher_method,
    language_model_output,
    single_class_embedding,
    stem_task,
    task_head,
    variational_embedding,
)
from ._probe_layers import ProbeRefused, inspect_probe, uncompiled
from ._probes import (
    RandomReLUProbe,
    TransformersBody,
    build_named_probe,
    copy_probe,
    embedded_filters,
    filter_names,
    frozen_copy,
    prepare_probe,
    trivial_embedding,
)
from ._text import (
    HF_PREFIX,
    TextEncoding,
    is_text,
    load_pretrained,
    load_tokenizer,
    text_encoding,
    tokenizer_record,
)
from ._utils import (
    VERBOSE_CONSTRAINT,
    StrictInterval,
    module_digest,
    module_dtype,
    on_device,
    progress_bar,
    progress_enabled,
    resolve_device,
    validates_parameters,
    with_context,
)
from .provenance import embedding_provenance
from .tasks import (
    ArrayTask,
    check_fit_labels,
    check_inputs,
    check_labels,
    coerce_task,
    encode_labels,
    first_example,
    is_task_sequence,
    loader_order,
)


def _check_image_channels(probe, probe_name, input_shape, where):
    """Images against a named probe's first convolution, which would otherwise fail deep in the
    first pass with torch's "expected input to have 3 channels"."""
    if len(input_shape) != 3:
        return
    first = next((module for module in probe.modules() if isinstance(module, torch.nn.Conv2d)), None)
    if first is None or first.in_channels == input_shape[0]:
        return
    channels = input_shape[0]
    raise ValueError(
        f"{where}: probe {probe_name!r} takes {first.in_channels}-channel images, but the examples have "
        f"{channels} channel{'s' if channels > 1 else ''} (shape {tuple(input_shape)}): "
        f"{channel_fix(channels, first.in_channels)}."
    )


#: Dtypes an array ``X`` keeps (others become float64): integers stay integers for probes that
#: take them (token ids), see :func:`~sklearn_task2vec._probe_layers.inspect_probe`.
_ARRAY_DTYPES = (
    np.float64,
    np.float32,
    np.int64,
    np.int32,
    np.int16,
    np.int8,
    np.uint8,
    np.uint16,
    np.uint32,
)


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
    probe : "auto", str, path-like or torch.nn.Module, default="auto"
        The probe network. A torchvision classification model name (``"resnet18"``,
        ``"resnet34"`` (the paper's), ``"resnet50"``, ``"densenet121"``, ``"vgg13_bn"``, ...),
        whose final Linear classifier is dropped; the path of an ONNX file (``"model.onnx"``,
        ``pip install 'sklearn-task2vec[onnx]'``), its graph whole as
        :func:`~sklearn_task2vec.probes.onnx_probe` converts it (which can cut it before its
        classifier); ``"hf:<name or folder>"``, a Hugging Face
        ``transformers`` model (``pip install 'sklearn-task2vec[text]'``) loaded with
        ``from_pretrained`` (a causal language model with its output layer), with its tokenizer,
        probed through its body (:class:`~sklearn_task2vec.probes.TransformersBody`, as is a
        ``transformers`` model instance); or any module mapping a batch of inputs to a
        ``(batch, d)`` feature matrix (or a ``(batch, length, d)`` sequence of hidden states),
        used as given (it is copied, never modified).
        ``"auto"``: images (N x C x H x W) go to ``"resnet34"``; 2-D features go to a
        :class:`~sklearn_task2vec.probes.RandomReLUProbe` seeded by ``random_state``.
    probe_weights : "imagenet", None or path-like, default="imagenet"
        Weights of a named probe: torchvision's ImageNet weights (downloaded and cached by
        torch.hub), ``None`` for random initialisation, or a local ``state_dict`` file
        (loaded with ``weights_only=True``). Ignored for module probes, ONNX files (their
        weights are the file's) and the random probe.
    method : {"auto", "montecarlo", "exact", "variational"}, default="auto"
        Fisher estimator. ``"montecarlo"``: one label sampled from the model per example
        (unbiased, one backward pass). ``"exact"``: the expectation over labels in closed form
        (``n_classes - 1`` backward passes, one for binary tasks). ``"auto"``: ``"exact"`` for
        tasks with at most 3 classes, ``"montecarlo"`` above. ``"variational"``: the paper's
        robust estimator (sec. 3.1): the per-filter precision ``Lambda`` of the largest
        Gaussian perturbation of the probe's weights the task's loss tolerates, the stationary
        point of its variational objective, found by a stochastic fixed-point iteration with
        the head trained jointly (``variational_*`` parameters); the row is
        ``(beta / N) Lambda = F + (beta / N) lambda^2`` (``F`` the Fisher averaged over the
        weight noise the task tolerates), which tends to the prior term (the trivial
        embedding) when the task has few examples. It costs one point-estimate pass plus the
        steps to convergence (by default about an epoch, each step a forward pass with the
        noise and the point estimate's backward pass on one batch, at most
        ``variational_steps``), has no per-example rows, and its rows are best compared with
        ``normalize="trivial"``, which divides each by its own prior term.
    label_draws : int, default=1
        Labels drawn per example by ``"montecarlo"`` (and by ``"auto"`` where it resolves to
        it; ignored by ``"exact"``): the squared gradients of that many independent draws are
        averaged, one backward pass each over the same forward pass, so the row's Monte Carlo
        variance falls as ``1 / label_draws``. Worth raising where one draw per example is
        noisy against what the rows are compared for: a language-modelling task's sequence
        has one sampled token per position, and with one draw two rows of the same batch of
        8 texts of 124 words (a tiny GPT-2) are about as far apart as batches of different
        corpora (the text page of the documentation, "The synthetic checks"). The diversity
        functions take 8.
    tokenizer : None, str or tokenizer, default=None
        What turns a text task's strings into tokens: a Hugging Face tokenizer, or its name or
        folder (``AutoTokenizer.from_pretrained``). ``None``: the tokenizer loaded with an
        ``"hf:"`` probe; without one, text tasks are refused (pre-tokenized ones, a mapping
        with ``input_ids``, need none).
    max_length : int or None, default=None
        Most tokens kept per text (longer ones are truncated). ``None``: the tokenizer's
        ``model_max_length``. Either way at most the positions the probe's model has.
    pooling : {"mean", "first", "last"}, default="mean"
        How a probe's hidden states (a text probe's ``(batch, length, d)`` output) become the
        features of a classification task's head: their mean over the text's tokens (padding
        excluded), the first token's (BERT's ``[CLS]``), or the last token's (the one a causal
        language model computes after reading the whole text). Language-modelling tasks read
        every token's hidden state instead.
    normalize : {None, "trivial"}, default=None
        ``None``: rows are the Fisher estimate itself. ``"trivial"``: rows are divided by their
        prior, ``trivial_embedding_`` (``lambda^2``) for the point estimates and the row's own
        prior term ``(beta / N) lambda^2`` for ``method="variational"``: the trivial-normalised
        space, where the per-layer scales of the probe's weights are gone and a single-class
        task's row is all zeros (point estimates) or all ones (variational), the smallest
        row either way. The symmetric distance is the same in both spaces; in this one, the
        asymmetric distance and :class:`Model2VecSelector` need no trivial embedding passed
        to them.
    skip_layers : str or None, default=None
        Embed only the filters from this layer of the probe on (a module path the probe's
        forward calls, at a block boundary, e.g. ``"layer3"`` of a ResNet), as the reference
        implementation's ``skip_layers``. The probe is cut there (``torch.fx``); the layers
        before it run once per task, and their output activations are kept (in host memory,
        one tensor per example) for the Fisher pass, which then covers only the rest. Saves
        the early layers' forward (and, with ``method="variational"``, every step's), at the
        cost of memory that grows with the task. ``None``: every filter.
    max_samples : int or None, default=None
        Use at most this many examples per task, drawn at random (from a DataLoader or an
        IterableDataset, whose size is unknown, by reservoir sampling over each pass).
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
        Most optimisation steps (batches of ``batch_size``) of ``method="variational"``, cycling
        over the task (about the reference implementation's two epochs of 10,000 samples).
        ``0``: no step, the start: the optimum of the objective's second-order model,
        ``F + (beta / N) lambda^2`` with ``F`` the point estimate of ``method="auto"``, at the
        cost of that point estimate, without the noise's effect. The default cap only binds
        where the steps' estimates are noisy (small batches of very varied examples, or
        ``variational_curvature="hessian"``), and then warns.
    variational_tol : float, default=0.05
        Stopping rule of ``method="variational"``: the run stops, at the earliest after one
        epoch, once the row's standard error (estimated from the spread of the steps'
        estimates) is at most ``variational_tol`` of the row (L2 norms), else after
        ``variational_steps`` steps with a ``ConvergenceWarning`` that names the task and
        gives that standard error (not repeated for a row read back from ``memory``). ``0``
        runs ``variational_steps`` steps. Two runs that each stop at a standard error of
        0.05 differ by about ``sqrt(2) * 0.05``, 7%: the default keeps two random states (and
        a run and a much longer one) within 10%. With the default
        ``variational_curvature="gauss_newton"`` one epoch of a thousand examples or more
        usually meets it (resnet18, 1,024 images: 16 steps at a standard error of 3-4%); with
        ``"hessian"``, hundreds of steps or more on deep ReLU networks, whose kinks make each
        step's estimate noisy (see the performance notes, docs/performance.md).
    variational_noise : {"per_example", "per_position"}, default="per_example"
        How ``method="variational"`` perturbs a layer that applies its weights at several
        positions (a convolution). ``"per_example"``: one weight perturbation per example,
        shared across its positions (Flipout sign decorrelation across the batch), whose
        optimum is ``F + (beta / N) lambda^2``. ``"per_position"``: the paper's local
        reparametrisation, independent at every output position: cheaper per step, but its
        optimum is the position-diagonal part of the Fisher, below ``F`` where the probe pools
        over positions (14-27x on a convolution followed by average pooling). Its
        ``"gauss_newton"`` curvature is that position-diagonal part at the perturbed weights.
    variational_curvature : {"gauss_newton", "hessian"}, default="gauss_newton"
        How ``method="variational"`` estimates the loss's response to the weight noise, ``g_k =
        d E[H / N] / d sigma_k^2``, which by Price's theorem is half the loss's Hessian summed
        over the filter's weights, averaged over the noise. ``"gauss_newton"``: the Hessian
        replaced by its Gauss-Newton part, the Fisher, so ``g_k = (n_k / 2) E[F_k(w + delta)]``:
        each step is the point estimate's pass on one batch with the weight noise in the
        forward pass, a mean of squares whose noise is that of the batch's examples and sampled
        labels. Its optimum is the paper's wherever the logits are linear in the filters'
        weights over the noise's reach, and otherwise differs by the logits' own curvature
        (the ReLU kinks), which it drops. ``"hessian"``: the unbiased reparametrisation
        estimate of ``g`` with the full Hessian, the gradient of the paper's exact objective,
        on antithetic pairs with a second-order control variate; on deep ReLU networks each
        step's estimate has a relative standard deviation of about 9, so it takes hundreds to
        thousands of steps of twice a batch each (35x a plain pass at 300 steps for resnet18
        on 1,024 images, rows still about 50% noisy).
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
        the seeds and the versions (:mod:`sklearn_task2vec._cache`). A rerun after a crash or
        an interruption loads the finished tasks and computes only the missing ones; several
        processes may share the folder; a damaged file is detected by its checksum, reported
        and recomputed; a file copied from another settings folder fails the same check. A
        row whose file cannot be written is kept, with a warning; a ``memory`` that is a file
        is refused before any work. Needs an integer ``random_state`` to be reused (``None``
        draws new seeds each time). Streamed tasks (Datasets, DataLoaders) are read once more
        to hash their content: in order, as the row depends on it, except for a DataLoader that
        shuffles at every pass, keyed by its examples in any order (its row is a draw over
        orders; a rerun reuses the one drawn first). A DataLoader that reads other examples at
        every pass (drawing with replacement, ``drop_last`` on a shuffled pass) is not cached,
        with a warning. A module probe is keyed by its class, ``repr`` and
        ``state_dict`` (parameters and buffers), not by its code or by plain attributes its
        ``forward`` reads: after changing those, use a new folder.
    on_error : {"raise", "warn"}, default="raise"
        What a task that fails (bad data, a probe error, running out of memory in any pass) does
        to a sequence of tasks: ``"raise"`` stops with its error; ``"warn"`` warns, makes its row
        NaN, keeps the error in ``errors_`` and goes on with the other tasks. Either way the
        error keeps its type (a ``torch.OutOfMemoryError`` stays one) and its message starts
        with the task's index (``"task 3: ..."``); raised, it also says what became of the rows
        of the tasks before it (kept in ``memory``, where one is given: a rerun computes only
        the others).
    random_state : int, RandomState instance or None, default=None
        Seeds the random probe (and a named probe's random initialisation with
        ``probe_weights=None``), example subsampling, Monte Carlo labels and the variational
        perturbations. Results are deterministic on CPU for a fixed value.
    verbose : "auto" or int, default="auto"
        Progress bars on standard error, over the tasks (with the time left) and, within a
        task, over its phases (features and head, then the Fisher pass's examples). ``"auto"``:
        shown when standard error is a terminal, not in logs or pipes; 0: never; above 0:
        always.

    Attributes
    ----------
    probe_ : torch.nn.Module
        The frozen probe (a copy; eval mode, BatchNorm statistics fixed).
    tokenizer_ : tokenizer or None
        What tokenizes text tasks: ``tokenizer`` (loaded, if given by name), else the
        tokenizer of an ``"hf:"`` probe, else None.
    embedded_layers_ : list of str
        The probe's filter layers that the embedding covers, in module order (a filter layer is
        found by what its weight does: see the user guide's probe contract).
    left_out_layers_ : dict of str to str
        Every other layer of the probe with a weight of two or more dimensions, and why it is
        not embedded: never called by the forward, not applied as a filter (an embedding
        table), or before ``skip_layers``.
    probe_layers_ : ProbeLayers
        What the inspection of the probe on the first example found, the input dtype included
        (``torch.int64`` for a probe that takes integer token ids).
    trivial_embedding_ : ndarray of shape (n_filters,)
        The prior precision ``lambda^2`` of the paper's trivial embedding: a per-layer
        isotropic Gaussian prior matched to the scale of the layer's weights, ``1 /
        mean(w_l^2)``, one value per layer repeated over its filters. It is the ``t_0`` of the
        asymmetric distance (:func:`~sklearn_task2vec.distances.asymmetric_distance`). The row
        of a task with a single class is this prior's term in the method's estimate, on the
        scale of the method's rows: ``(beta / N) * trivial_embedding_`` with
        ``method="variational"`` (the prior term of ``F + (beta / N) lambda^2``), and 0 with
        the point estimates, whose rows are the Fisher itself (a one-class model's Fisher is
        0). The paper's single "trivial embedding" is the variational one.
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
        array: ``trivial_embedding_``, or with ``method="variational"`` the task's (trained)
        prior term ``(beta / N) lambda^2``.
    embedding_ : ndarray of shape (n_filters,)
        The embedding of the task ``(X, y)`` when fitted on one array.
    errors_ : dict of int to Exception
        After ``transform`` of a sequence of tasks: the tasks that failed (their index in the
        sequence) and their errors, with ``on_error="warn"``; empty when none did.
    provenance_ : EmbeddingProvenance
        How ``transform`` makes rows: the fitted probe (name and digest of its weights) and
        the settings as they are now (:mod:`sklearn_task2vec.provenance`). Pass it with the
        rows to a :class:`~sklearn_task2vec.Model2VecSelector` (``provenance=``), which then
        refuses rows made otherwise.

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

    _parameter_constraints: dict = {
        "probe": [str, os.PathLike, torch.nn.Module],
        "probe_weights": [str, os.PathLike, None],
        "tokenizer": [None, str, os.PathLike, callable],
        "max_length": [StrictInterval(Integral, 2, None, closed="left"), None],
        "pooling": [StrOptions(set(POOLINGS))],
        "method": [StrOptions({"auto", *METHODS})],
        "label_draws": [StrictInterval(Integral, 1, None, closed="left")],
        "normalize": [StrOptions({"trivial"}), None],
        "skip_layers": [str, None],
        "max_samples": [StrictInterval(Integral, 1, None, closed="left"), None],
        "batch_size": [StrictInterval(Integral, 1, None, closed="left")],
        "head_epochs": [StrictInterval(Integral, 0, None, closed="left")],
        "head_learning_rate": [StrictInterval(Real, 0, None, closed="neither")],
        "head_weight_decay": [StrictInterval(Real, 0, None, closed="left")],
        "variational_beta": [StrictInterval(Real, 0, None, closed="neither")],
        "variational_steps": [StrictInterval(Integral, 0, None, closed="left")],
        "variational_tol": [StrictInterval(Real, 0, None, closed="left")],
        "variational_noise": [StrOptions(set(VARIATIONAL_NOISES))],
        "variational_curvature": [StrOptions(set(VARIATIONAL_CURVATURES))],
        "device": [str, torch.device],
        "autocast": [StrOptions({"bfloat16", "float16"}), None],
        "n_jobs": [Integral, None],
        "memory": [str, os.PathLike, joblib.Memory, None],
        "on_error": [StrOptions({"raise", "warn"})],
        "random_state": ["random_state"],
        "verbose": VERBOSE_CONSTRAINT,
    }

    def __init__(
        self,
        probe="auto",
        *,
        probe_weights="imagenet",
        tokenizer=None,
        max_length=None,
        pooling="mean",
        method="auto",
        label_draws=1,
        normalize=None,
        skip_layers=None,
        max_samples=None,
        batch_size=64,
        head_epochs=100,
        head_learning_rate=1.0,
        head_weight_decay=5e-4,
        variational_beta=1e-3,
        variational_steps=300,
        variational_tol=0.05,
        variational_noise="per_example",
        variational_curvature="gauss_newton",
        device="auto",
        autocast=None,
        n_jobs=None,
        memory=None,
        on_error="raise",
        random_state=None,
        verbose="auto",
    ):
        self.probe = probe
        self.probe_weights = probe_weights
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pooling = pooling
        self.method = method
        self.label_draws = label_draws
        self.normalize = normalize
        self.skip_layers = skip_layers
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.head_epochs = head_epochs
        self.head_learning_rate = head_learning_rate
        self.head_weight_decay = head_weight_decay
        self.variational_beta = variational_beta
        self.variational_steps = variational_steps
        self.variational_tol = variational_tol
        self.variational_noise = variational_noise
        self.variational_curvature = variational_curvature
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
    @_fit_context(prefer_skip_nested_validation=True)
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
        # What the constraints cannot tell: a folder that is no folder, a device torch rejects.
        cache_folder(self.memory)
        device = resolve_device(self.device)
        seeds = embedding_seeds(self.random_state)
        pretrained = self._fit_tokenizer()
        if is_task_sequence(X):
            self._fit_probe_on_tasks(X, seeds, pretrained)
            return self
        if is_text(X):
            raise TypeError(
                "X is text: a text task goes in a sequence of tasks, fit([(texts, labels)]) or "
                "fit_transform([(texts, labels), ...]), one row per task."
            )
        check_fit_labels(X, y)
        X, y = validate_data(self, X, y, allow_nd=True, dtype=_ARRAY_DTYPES)
        self._fit_probe(X[:1], "X", seeds, pretrained)
        task = self._array_task(X, check_labels(y, "y"))
        self.classes_, _ = encode_labels(task.labels, "y")
        self.method_ = fisher_method(self.method, len(self.classes_), self.batch_size, "y")
        self.prior_embedding_ = self.trivial_embedding_
        if len(self.classes_) == 1:
            _warn_trivial("The task (X, y)")
            self.head_ = None
            trivial = single_class_embedding(self._settings(), self.trivial_embedding_, len(task.labels))
            self.prior_embedding_ = trivial.prior
            self.embedding_ = self._normalised(trivial.row, trivial.prior)
            return self
        probe = prepare_probe(self.probe_, self.skip_layers, device, self.probe_layers_, self._probe_digest)
        settings = self._settings()
        fitted = task_head(probe, task, settings, device, retain=True)
        if self.method_ == "variational":
            embedding, self.prior_embedding_, unconverged_error = variational_embedding(
                probe, fitted, settings, seeds, device=device, trivial=self.trivial_embedding_
            )
            if unconverged_error is not None:
                self._warn_unconverged("The task (X, y)", unconverged_error)
            self.embedding_ = self._normalised(embedding, self.prior_embedding_)
        else:
            rows = self._example_rows(
                probe, fitted.head, fitted.fisher_task, seeds, device, retained=fitted.retained
            )
            check_fisher_row(rows.mean(axis=0), "X")
            self.embedding_ = self._normalised(rows).mean(axis=0)
        self._readout = fitted.head.cpu()
        self.head_ = self._readout.linear
        return self

    def _fit_tokenizer(self):
        """Set ``tokenizer_``; return the model of an ``"hf:"`` probe (loaded with its tokenizer,
        once per fit), else None."""
        model, tokenizer = None, self.tokenizer
        if isinstance(self.probe, str) and self.probe.startswith(HF_PREFIX):
            model, loaded = load_pretrained(self.probe[len(HF_PREFIX) :])
            tokenizer = loaded if tokenizer is None else tokenizer
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_tokenizer(os.fspath(tokenizer))
        self.tokenizer_ = tokenizer
        self._tokenizer_record = tokenizer_record(tokenizer)
        return model

    def _text_encoding(self, probe):
        """How this embedder tokenizes texts for ``probe`` (whose positions cap their length)."""
        return text_encoding(self.tokenizer_, self.max_length, probe)

    def _fit_probe_on_tasks(self, tasks, seeds, pretrained):
        """``probe_`` fitted on task 0's first example; with ``on_error="warn"``, on that of the
        first task whose example can be read and taken by the probe (the others fail again in
        transform, into ``errors_``). A probe refused for its own structure fails at once."""
        first_error = None
        encoding = self._text_encoding(pretrained if pretrained is not None else self._module_probe())
        for index, task in enumerate(tasks):
            try:
                return self._fit_probe(
                    first_example(task, index, encoding), f"task {index}", seeds, pretrained
                )
            except ProbeRefused:
                raise
            except Exception as error:
                if self.on_error == "raise":
                    raise
                first_error = first_error or error
        raise first_error

    def _module_probe(self):
        return self.probe if isinstance(self.probe, torch.nn.Module) else None

    def _fit_probe(self, example, where, seeds, pretrained=None):
        """``probe_`` for examples like ``example`` (one, with its batch axis, read from
        ``where``), and what depends on it alone: which of its layers are embedded.
        ``pretrained``: the model of an ``"hf:"`` probe."""
        input_shape = tuple(example.shape[1:])
        self._probe_name, self.probe_ = self._make_probe(input_shape, seeds.probe, pretrained)
        # Hashed once: the frozen probe does not change after fit, and a ResNet has millions of weights.
        self._probe_digest = module_digest(self.probe_)
        if isinstance(self.probe, (str, os.PathLike)) and pretrained is None:
            _check_image_channels(
                self.probe_, "resnet34" if self.probe == "auto" else os.fspath(self.probe), input_shape, where
            )
        try:
            self.probe_layers_ = inspect_probe(
                self.probe_, example, module_dtype(self.probe_), digest=self._probe_digest
            )
        except Exception as exc:  # named whatever it is, keeping its type (ProbeRefused, out of memory)
            raise with_context(exc, where)  # noqa: B904 (chained by with_context)
        filters = embedded_filters(self.probe_, self.skip_layers, self.probe_layers_)
        self.embedded_layers_ = [path for path, _ in filters]
        self.left_out_layers_ = dict(self.probe_layers_.left_out)
        if isinstance(self.probe_, TransformersBody) and self.probe_.output_layer is not None:
            self.left_out_layers_["output_layer"] = (
                "the language model's output layer: where a language-modelling task's head starts, "
                "not a layer of the probe"
            )
        skipped = [path for path in self.probe_layers_.embedded if path not in self.embedded_layers_]
        if skipped:
            self.left_out_layers_.update(
                {path: f"before skip_layers={self.skip_layers!r}" for path in skipped}
            )
            warnings.warn(
                f"skip_layers={self.skip_layers!r} leaves {len(skipped)} filter layers out of the "
                f"embedding ({', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''}); "
                f"left_out_layers_ lists them.",
                UserWarning,
                stacklevel=3,
            )
        self.trivial_embedding_ = trivial_embedding(filters)
        # Names this fitted probe for the workers that copy it once (_worker_probe).
        self._probe_token = uuid.uuid4().hex

    def _make_probe(self, input_shape, seed, pretrained=None):
        """``(name, frozen probe)``: a named probe's name, or a module probe's class."""
        probe = self.probe
        if pretrained is not None:
            return probe, frozen_copy(pretrained)
        if isinstance(probe, torch.jit.ScriptModule):
            raise TypeError(
                f"probe is a TorchScript module ({type(probe).__name__}): the Fisher pass hooks the "
                f"probe's layers, which a compiled module does not expose. Pass the original "
                f"torch.nn.Module, before torch.jit.script or torch.jit.trace."
            )
        if isinstance(probe, torch.nn.Module):
            return _class_name(probe), frozen_copy(probe)
        if probe == "auto":
            if len(input_shape) == 1:
                random_probe = RandomReLUProbe(input_shape[0], seed=seed)
                return _class_name(random_probe), frozen_copy(random_probe)
            if len(input_shape) == 3:
                probe = "resnet34"
            else:
                raise ValueError(
                    f"probe='auto' takes 2-D features (n, n_features) or images (n, C, H, W); "
                    f"got examples of shape {tuple(input_shape)}. Pass a probe module that takes them."
                )
        module = build_named_probe(probe, self.probe_weights, seed)
        return (_class_name(module) if is_onnx_file(probe) else probe), frozen_copy(module)

    @property
    def provenance_(self):
        # A property, not a value stored at fit: transform reads the settings when it runs, so
        # the record must describe them as they are then (after a set_params too).
        check_is_fitted(self)
        return embedding_provenance(
            self._probe_name,
            self._probe_digest,
            self._settings(),
            normalize=self.normalize,
            random_state=self.random_state,
            tokenizer=self._tokenizer_record,
        )

    def _settings(self):
        return EmbeddingSettings(
            method=self.method,
            batch_size=self.batch_size,
            max_samples=self.max_samples,
            head_epochs=self.head_epochs,
            head_learning_rate=self.head_learning_rate,
            head_weight_decay=self.head_weight_decay,
            variational_beta=self.variational_beta,
            variational_steps=self.variational_steps,
            variational_tol=self.variational_tol,
            variational_noise=self.variational_noise,
            variational_curvature=self.variational_curvature,
            skip_layers=self.skip_layers,
            autocast=self.autocast,
            pooling=self.pooling,
            max_length=self.max_length,
            label_draws=self.label_draws,
        )

    # ------------------------------------------------------------ transform
    @validates_parameters
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
        X = validate_data(self, X, reset=False, allow_nd=True, dtype=_ARRAY_DTYPES)
        if self.method_ == "variational":
            raise ValueError(
                "method='variational' estimates the Fisher of the task as a whole (embedding_); "
                "it has no per-example rows. Embed tasks as a sequence of tasks, or use "
                "method='exact' or 'montecarlo' for per-example rows."
            )
        if self.head_ is None:
            # A one-class model's Fisher is 0 at every example (single_class_embedding).
            return np.zeros((X.shape[0], len(self.trivial_embedding_)))
        device = resolve_device(self.device)
        task = self._array_task(X, np.zeros(X.shape[0]))
        probe = prepare_probe(self.probe_, self.skip_layers, device, self.probe_layers_, self._probe_digest)
        task = stem_task(probe, task, self._settings(), device)
        # The head_ the user sees is the readout's linear layer, which may have been replaced.
        head = Readout(self.head_, self._readout.kind, pooling=self.pooling)
        rows = self._example_rows(
            probe, on_device(head, device), task, embedding_seeds(self.random_state), device
        )
        return self._normalised(rows)

    @validates_parameters
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
        return filter_names(embedded_filters(self.probe_, self.skip_layers, self.probe_layers_))

    # -------------------------------------------------------------- helpers
    def _warn_unconverged(self, what, relative_error):
        warnings.warn(
            f"{what} ended its run of method='variational' at variational_steps={self.variational_steps} "
            f"with the row's estimated relative standard error at {relative_error:.4g}, above "
            f"variational_tol={self.variational_tol:g}. Raise variational_steps, or set "
            f"variational_steps=0 (no step: F + (beta / N) lambda^2 from a point estimate of F, "
            f"at about the cost of one plain forward and backward pass), or use "
            f"method='montecarlo' or 'exact' (that point estimate alone).",
            ConvergenceWarning,
            stacklevel=3,
        )

    def _finished_rows(self, n_finished, folder):
        """What became of the rows of the ``n_finished`` tasks done before a task failed, for its
        error (none done: nothing to say). ``folder``: the cache's, or None."""
        if n_finished == 0:
            return ""
        done = f"{n_finished} task{'s' if n_finished > 1 else ''} had finished"
        if folder is not None:
            return f" ({done}: their rows are kept in the cache, {folder}: a rerun computes only the others)"
        return (
            f" ({done}: their rows are not returned; pass memory=<a folder> to keep finished rows for a "
            f"rerun, or on_error='warn' to get them with NaN for the failed tasks)"
        )

    def _normalised(self, embeddings, priors=None):
        """``embeddings`` divided by their prior rows (default ``trivial_embedding_``) when
        ``normalize="trivial"``."""
        if self.normalize == "trivial":
            return embeddings / (self.trivial_embedding_ if priors is None else priors)
        return embeddings

    def _array_task(self, X, y):
        return ArrayTask(check_inputs(X, "X", self.probe_layers_.input_dtype), np.asarray(y), "X")

    def _example_rows(self, probe, head, task, seeds, device, retained=None):
        """Each example's Fisher row under ``head`` (the array task's per-example rows);
        ``retained``: the features pass's kept forwards (see :func:`task_fisher`)."""
        return task_fisher(
            probe,
            head,
            task,
            method=self.method_,
            batch_size=self.batch_size,
            generator=fisher_generator(seeds, device),
            label_draws=self.label_draws,
            autocast=self.autocast,
            per_example=True,
            retained=retained,
        )

    def _refuse_language_modelling(self, tasks):
        """Refuse language-modelling tasks before any work when the probe cannot embed them
        (no output layer to start their head), rather than when their turn comes."""
        for index, task in enumerate(tasks):
            if isinstance(task, (tuple, list)) and len(task) == 2 and task[1] is None and is_text(task[0]):
                language_model_output(self.probe_, f"task {index}")

    def _embed_tasks(self, tasks):
        seeds = embedding_seeds(self.random_state)
        device = resolve_device(self.device)
        settings = self._settings()
        folder = cache_folder(self.memory)
        cache = None
        if folder is not None:
            cache = EmbeddingCache(
                folder, settings_key(settings, seeds, self.probe_, device), self.provenance_
            )
            for index, task in enumerate(tasks):
                # Warned here, in the calling process: task_key then leaves the task uncached.
                if isinstance(task, DataLoader) and loader_order(task) == "random":
                    warnings.warn(
                        f"Task {index} is a DataLoader that reads other examples at every pass "
                        f"(a sampler drawing with replacement or a number of its own, or drop_last "
                        f"on a shuffled pass): the cache could never find its row again, so it is "
                        f"computed and not cached.",
                        UserWarning,
                        stacklevel=3,
                    )
        if self.on_error == "raise":
            self._refuse_language_modelling(tasks)
        job = _TaskJob(
            settings=settings,
            seeds=seeds,
            device=device,
            trivial=self.trivial_embedding_,
            cache=cache,
            progress=progress_enabled(self.verbose),
            probe_token=self._probe_token,
            input_dtype=self.probe_layers_.input_dtype,
            text=self._text_encoding(self.probe_),
        )
        # The probe is traced here, in the calling thread, once: in-process every task shares
        # it; joblib workers copy it once each (see copy_probe).
        if effective_n_jobs(self.n_jobs) == 1:
            probe, template = (
                prepare_probe(self.probe_, self.skip_layers, device, self.probe_layers_, self._probe_digest),
                None,
            )
        else:
            cpu = torch.device("cpu")
            probe, template = (
                None,
                prepare_probe(self.probe_, self.skip_layers, cpu, self.probe_layers_, self._probe_digest),
            )
        jobs = (
            delayed(_embed_task_or_error)(task, index, job, probe, template)
            for index, task in enumerate(tasks)
        )
        outputs = Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs)
        bar = progress_bar(job.progress and len(tasks) > 1, total=len(tasks), desc="tasks", unit="task")
        rows, priors, self.errors_ = [], [], {}
        missing = np.full(len(self.trivial_embedding_), np.nan)
        try:
            for index, (embedding, error) in enumerate(outputs):
                if bar is not None:
                    bar.update()
                # Raised or warned here, in task order, rather than in the task's job, which may run in
                # a joblib worker: the tasks before it are known to have finished.
                if error is not None and self.on_error == "raise":
                    _cancel_quietly(outputs)
                    raise with_context(error, after=self._finished_rows(index, folder))
                if error is not None:
                    warnings.warn(
                        f"Task {index} failed and its row is NaN (on_error='warn'): "
                        f"{type(error).__name__}: {error}",
                        UserWarning,
                        stacklevel=3,
                    )
                    self.errors_[index] = error
                    rows.append(missing)
                    priors.append(missing)
                    continue
                if embedding.n_classes == 1:
                    _warn_trivial(f"Task {index}")
                if embedding.unconverged_error is not None:
                    self._warn_unconverged(f"Task {index}", embedding.unconverged_error)
                rows.append(embedding.row)
                priors.append(embedding.prior)
        finally:
            if bar is not None:
                bar.close()
        return self._normalised(np.vstack(rows), np.vstack(priors))


class _TaskJob(NamedTuple):
    """What a worker needs to embed one task of a sequence (the estimator itself stays home)."""

    settings: EmbeddingSettings
    seeds: Seeds
    device: torch.device
    trivial: np.ndarray
    cache: EmbeddingCache | None
    progress: bool
    probe_token: str
    input_dtype: torch.dtype
    text: TextEncoding


def _embed_task_or_error(task, index, job, probe, template):
    """``(embedding, None)`` of the task at ``index``, or ``(None, error)`` when it fails, for the
    caller to raise or keep (``on_error``). ``probe``: the prepared probe, or None to use this
    worker's copy of ``template``.

    The one place where the error of every pass (reading, features, head, Fisher,
    variational, cache) gets its task's name, keeping its type (:func:`with_context`).
    """
    try:
        if probe is None:
            probe = _worker_probe(job, template)
        return _embed_task(task, index, job, probe), None
    except Exception as error:
        return None, with_context(error, f"task {index}")


def _cancel_quietly(outputs):
    """Stop joblib's generator ``outputs``, cancelling the tasks not yet started, without its
    warning that finished tasks' results were not read: that is the point here (their rows are
    in the cache, where there is one). Tasks still running in threads finish in the background
    (joblib may say so from its own thread)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(successfully executed|have been cancelled)", category=UserWarning
        )
        outputs.close()


def _embed_task(task, index, job, probe):
    """One task's :class:`TaskEmbedding`, read from and written to ``job.cache`` when given."""
    settings = job.settings
    task = coerce_task(
        task,
        index,
        dtype=job.input_dtype,
        batch_size=settings.batch_size,
        max_samples=settings.max_samples,
        rng=np.random.RandomState(job.seeds.sampling),
        text=job.text,
    )
    key = None if job.cache is None else task_key(task, settings.batch_size)
    if key is not None:
        stored = job.cache.load(key)
        if stored is not None:
            return TaskEmbedding(*stored)
    embedding = embed_task(
        probe, task, settings, job.seeds, device=job.device, trivial=job.trivial, progress=job.progress
    )
    if key is not None:
        job.cache.save(key, embedding)
    return embedding


# The probe a joblib worker copied last, by (probe token, device): its next tasks reuse it. Per
# thread, since the Fisher pass hooks the probe's modules (a threading backend runs tasks side
# by side in one process).
_WORKER_PROBE = threading.local()


def _worker_probe(job, template):
    key = (job.probe_token, str(job.device))
    if getattr(_WORKER_PROBE, "key", None) != key:
        _WORKER_PROBE.probe = copy_probe(template, job.device)  # one probe per worker: the last one
        _WORKER_PROBE.key = key
    return _WORKER_PROBE.probe


def _class_name(module):
    """A module probe as the record names it: the compiled module's own class; for an ONNX probe
    (:func:`~sklearn_task2vec._onnx.onnx_probe`), its file's name, cut and SHA-256."""
    module = uncompiled(module)
    if isinstance(module, OnnxProbe):
        return module.onnx_source.record
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _warn_trivial(what):
    warnings.warn(
        f"{what} has a single class: nothing to discriminate, so its embedding is the "
        f"trivial embedding (0 for the point estimates, the prior term (beta / N) * "
        f"trivial_embedding_ for method='variational').",
        UserWarning,
        stacklevel=3,
    )
