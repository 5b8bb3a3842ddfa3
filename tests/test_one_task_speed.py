"""What makes one task cheap, and that it changes no number and lets no refused probe through.

* The probe checks (:func:`~sklearn_task2vec._probe_layers.inspect_probe` and
  :func:`~sklearn_task2vec._fisher.check_per_example_gradients`) run once per probe: their
  verdicts are kept by the probe's structure fingerprint, its weights and the inputs' shape
  (:data:`~sklearn_task2vec._probe_layers.PROBE_VERDICTS`). Every change that can change a
  verdict must check again; a refused probe is never kept.
* The features pass keeps its forwards for the Fisher pass
  (:class:`~sklearn_task2vec._fisher.RetainedForwards`) where memory allows: the rows are the
  same, bit for bit, and each batch runs forward once.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from sklearn_task2vec import FisherTaskEmbedder, _fisher, _probe_layers
from sklearn_task2vec._fisher import RetainedForwards, fisher_backward
from sklearn_task2vec._heads import Readout
from sklearn_task2vec._probe_layers import PROBE_VERDICTS, probe_fingerprint
from sklearn_task2vec._probes import RunnableProbe

N_EXAMPLES, BATCH = 48, 16


class Net(nn.Module):
    """A small probe whose ``functional`` flag makes it read its output layer's weight outside
    that layer's call: a probe the checks must refuse."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 3)
        self.functional = False

    def forward(self, x):
        h = torch.tanh(self.hidden(x))
        if self.functional:
            return torch.tanh(F.linear(h, self.out.weight, self.out.bias))
        return torch.tanh(self.out(h))


class OutsideReader(nn.Module):
    """A replacement of ``Net.out`` that applies its inner layer's weight itself."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(8, 3)

    def forward(self, x):
        return F.linear(x, self.inner.weight, self.inner.bias)


class Doubled(nn.Module):
    def forward(self, weight):
        return 2 * weight


def task(seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(N_EXAMPLES, 4))
    return X, (X[:, 0] + 0.5 * rng.normal(size=N_EXAMPLES) > 0).astype(int)


def fit_rows(probe, method="exact", **params):
    return FisherTaskEmbedder(
        probe=probe, method=method, batch_size=BATCH, random_state=0, **params
    ).fit_transform([task()])


@pytest.fixture
def checks(monkeypatch):
    """How many times each probe check ran its work, with no verdict kept before the test."""
    PROBE_VERDICTS.clear()
    counts = {"inspection": 0, "gradients": 0}
    inspect, compare = _probe_layers._inspect_probe, _fisher._compare_per_example_gradients

    def counted_inspection(*args, **kwargs):
        counts["inspection"] += 1
        return inspect(*args, **kwargs)

    def counted_comparison(*args, **kwargs):
        counts["gradients"] += 1
        return compare(*args, **kwargs)

    monkeypatch.setattr(_probe_layers, "_inspect_probe", counted_inspection)
    monkeypatch.setattr(_fisher, "_compare_per_example_gradients", counted_comparison)
    yield counts
    PROBE_VERDICTS.clear()


# ------------------------------------------------------------------------- the verdicts' cache
def test_a_probe_is_checked_once_across_fits_and_copies(checks, one_thread):
    probe = Net()
    first = fit_rows(probe)
    assert checks == {"inspection": 1, "gradients": 1}
    np.testing.assert_array_equal(fit_rows(probe), first)
    np.testing.assert_array_equal(fit_rows(copy.deepcopy(probe)), first)  # a named probe rebuilt: a copy
    assert checks == {"inspection": 1, "gradients": 1}


def test_other_inputs_shape_is_checked_again(checks, one_thread):
    probe = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    X, y = task()
    FisherTaskEmbedder(probe=probe, batch_size=BATCH).fit_transform([(X, y)])
    FisherTaskEmbedder(probe=probe, batch_size=BATCH).fit_transform([(X.reshape(-1, 2, 2), y)])
    assert checks == {"inspection": 2, "gradients": 2}


def replace_output_layer(probe):
    probe.out = OutsideReader()


def read_weight_functionally(probe):
    probe.functional = True


def replace_forward_on_the_class(probe):
    def forward(self, x):
        return torch.tanh(F.linear(torch.tanh(self.hidden(x)), self.out.weight, self.out.bias))

    type(probe).forward = forward


def register_forward_hook(probe):
    probe.out.register_forward_hook(lambda module, inputs, output: 2 * output)


def register_pre_hook(probe):
    probe.hidden.register_forward_pre_hook(lambda module, inputs: (inputs[0] * 2,))


def parametrize_weight(probe):
    parametrize.register_parametrization(probe.out, "weight", Doubled())


def change_weights_in_place(probe):
    with torch.no_grad():
        probe.hidden.weight.mul_(-1.5)


def zero_a_filter(probe):
    with torch.no_grad():
        probe.hidden.weight[0].zero_()


def add_an_attribute(probe):
    probe.temperature = 2.0


def add_a_layer(probe):
    probe.hidden = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8))


# Each change to a probe accepted once, and what the checks must then do: refuse it (whichever
# check sees it first), or run again (how many times each has run in all).
REFUSED = "refused"
MUTATIONS = {
    "submodule replaced by one that reads its weight functionally": (replace_output_layer, REFUSED),
    "flag switching the forward to a functional read": (read_weight_functionally, REFUSED),
    "forward replaced on the class": (replace_forward_on_the_class, REFUSED),
    "forward hook registered": (register_forward_hook, (2, 2)),
    "forward pre-hook registered": (register_pre_hook, (2, 2)),
    "parametrization added": (parametrize_weight, (2, 2)),
    "weights changed in place": (change_weights_in_place, (2, 2)),
    "a filter zeroed": (zero_a_filter, (2, 2)),
    "layer added": (add_a_layer, (2, 2)),
    # The gradient check runs the probe as traced by torch.fx, whose code does not read it.
    "attribute added": (add_an_attribute, (2, 1)),
}
REFUSAL = "(reads the weight of layer|differ from those of the probe run on one example)"


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_changed_probe_is_checked_again(name, checks, one_thread):
    mutate, outcome = MUTATIONS[name]
    kind = type("Net", (Net,), {})  # its own class: a mutation may patch it
    probe = kind()
    fit_rows(probe)
    fit_rows(probe)
    assert checks == {"inspection": 1, "gradients": 1}
    mutate(probe)
    if outcome == REFUSED:
        with pytest.raises(ValueError, match=REFUSAL):
            fit_rows(probe)
        with pytest.raises(ValueError, match=REFUSAL):  # a refusal is not kept: it says why again
            fit_rows(probe)
        return
    expected = dict(zip(["inspection", "gradients"], outcome))
    fit_rows(probe)
    assert checks == expected
    fit_rows(probe)
    assert checks == expected


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_every_change_changes_the_fingerprint_or_the_weights(name):
    mutate, _ = MUTATIONS[name]
    probe = type("Net", (Net,), {})()
    before, weights = probe_fingerprint(probe), copy.deepcopy(probe.state_dict())
    assert before is not None and probe_fingerprint(copy.deepcopy(probe)) == before
    mutate(probe)
    after = probe_fingerprint(probe)
    same_weights = probe.state_dict().keys() == weights.keys() and all(
        torch.equal(probe.state_dict()[key], value) for key, value in weights.items()
    )
    assert after != before or not same_weights


class Untraceable(Net):
    """Control flow torch.fx cannot trace: the probe runs as it is, attributes and all."""

    def forward(self, x):
        if bool(x.detach().sum() > -1e9):
            return super().forward(x)
        return x


def test_an_attribute_of_unknown_kind_disables_the_cache_not_the_check(checks, one_thread):
    probe = Untraceable()
    probe.settings = object()  # whatever it is, the forward could read it
    assert probe_fingerprint(probe) is None
    fit_rows(probe)
    fit_rows(probe)
    assert checks == {"inspection": 2, "gradients": 2}


# ----------------------------------------------------------- the features pass's kept forwards
def counted_net():
    """A :class:`Net` and the count of its output layer's calls on whole batches (the checks
    run one or two examples)."""
    probe, calls = Net(), []

    def count(module, inputs):
        if len(inputs[0]) == BATCH:
            calls.append(1)

    probe.out.register_forward_pre_hook(count)
    return probe, calls


@pytest.mark.filterwarnings("ignore:skip_layers='out' leaves")
@pytest.mark.parametrize("method", ["exact", "montecarlo", "auto"])
@pytest.mark.parametrize("skip_layers", [None, "out"])
def test_kept_forwards_give_the_same_rows_with_one_forward_per_batch(
    method, skip_layers, monkeypatch, one_thread
):
    probe, calls = counted_net()
    kept = fit_rows(probe, method, skip_layers=skip_layers)
    n_batches = N_EXAMPLES // BATCH
    assert len(calls) == n_batches  # the features pass's forwards served the Fisher pass
    monkeypatch.setattr(_fisher, "RETAINED_FORWARD_BYTES", 0)
    calls.clear()
    np.testing.assert_array_equal(fit_rows(probe, method, skip_layers=skip_layers), kept)
    assert len(calls) == 2 * n_batches


def test_kept_forwards_in_fit_give_the_rows_transform_computes_again(one_thread):
    """``fit(X, y)`` keeps its forwards; ``transform(X)`` (no head to train) runs its own."""
    X, y = task()
    embedder = FisherTaskEmbedder(probe=Net(), method="exact", batch_size=BATCH, random_state=0).fit(X, y)
    np.testing.assert_array_equal(embedder.embedding_, embedder.transform(X).mean(axis=0))


def test_past_the_memory_limit_the_forwards_are_dropped_and_the_rows_unchanged(monkeypatch, one_thread):
    probe, calls = counted_net()
    expected = fit_rows(probe, "montecarlo")
    monkeypatch.setattr(_fisher, "RETAINED_FORWARD_BYTES", 1)
    calls.clear()
    np.testing.assert_array_equal(fit_rows(probe, "montecarlo"), expected)
    assert len(calls) == 2 * N_EXAMPLES // BATCH


def kept_batches(n_examples, limit):
    """How many of three batches :class:`RetainedForwards` keeps (None: it dropped them), and
    the bytes their graphs' tensors took."""
    torch.manual_seed(0)
    probe = Net()
    retained = RetainedForwards(
        RunnableProbe(probe, [("hidden", probe.hidden), ("out", probe.out)], [None, None]), n_examples, limit
    )
    for _ in range(3):
        retained.run(probe, torch.randn(BATCH, 4), "X")
    kept = retained.take()
    return (None if kept is None else len(kept)), retained.saved_bytes


@pytest.mark.parametrize("room", [0.5, 1.5, 2.5, 3.5])
@pytest.mark.parametrize("known", [True, False])
def test_the_memory_rule_keeps_all_batches_or_none(room, known, one_thread):
    n_kept, three_batches = kept_batches(3 * BATCH, 1 << 40)
    assert n_kept == 3
    one_batch = three_batches / 3
    n_kept, _ = kept_batches(3 * BATCH if known else None, int(room * one_batch))
    # A known number of examples is judged at the first batch; an unknown one as it grows.
    assert n_kept == (3 if room > 3 else None)


def exact_binary_fisher(probe, head, inputs):
    """Brute force: eq. 1 with the expectation over both labels, per example, each filter's
    squared gradient averaged over its weights (sec. 3.1)."""
    rows = []
    for example in inputs:
        logits = head.linear(probe(example[None]))[0]
        probs = torch.softmax(logits.detach(), 0)
        row = 0
        for label in range(2):
            gradients = torch.autograd.grad(
                torch.log_softmax(head.linear(probe(example[None]))[0], 0)[label],
                [
                    probe.hidden.weight,
                    probe.out.weight,
                ],
            )
            row = row + probs[label] * torch.cat([g.square().mean(1) for g in gradients])
        rows.append(row)
    return torch.stack(rows)


def test_a_kept_forward_gives_the_brute_force_fisher(one_thread):
    torch.manual_seed(0)
    probe = Net().double().requires_grad_(False)
    for parameter in probe.parameters():
        parameter.requires_grad_(True)
    runnable = RunnableProbe(probe, [("hidden", probe.hidden), ("out", probe.out)], [None, None])
    head = Readout(nn.Linear(3, 2, dtype=torch.float64))
    inputs = torch.randn(BATCH, 4, dtype=torch.float64)
    retained = RetainedForwards(runnable, BATCH)
    outputs = retained.run(probe, inputs, "X")
    rows = retained.run_backward(head, outputs, inputs, "exact", None)
    torch.testing.assert_close(rows, exact_binary_fisher(probe, head, inputs).double(), rtol=1e-10, atol=0)


class SavedThenModified(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        activation = torch.sigmoid(self.fc(x))
        output = activation * activation  # saves ``activation`` for its backward
        activation.add_(1.0)  # then changes it
        return output


def test_a_saved_tensor_modified_in_place_is_an_error_not_a_wrong_row(one_thread):
    probe = SavedThenModified()
    runnable = RunnableProbe(probe, [("fc", probe.fc)], [None])
    retained = RetainedForwards(runnable, BATCH)
    inputs = torch.randn(BATCH, 4)
    outputs = retained.run(probe, inputs, "X")
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        fisher_backward(Readout(nn.Linear(3, 2)), outputs, inputs, "exact", None, retained.recorder)
