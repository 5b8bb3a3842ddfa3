"""How long a TASK2VEC embedding takes, relative to one plain forward+backward pass.

The reference ("plain fwd+bwd") is the cheapest honest way to touch every weight gradient of
the probe once: the same torchvision body (``weights=None``) with its ``fc`` replaced by a
fresh ``Linear(d, n_classes)``, in eval mode, and for every batch a forward, a cross-entropy
on the labels and ``loss.backward()`` computing all parameter gradients (zeroed between
batches). Its inputs start on the CPU and go to the device batch by batch, as ours do.

"Ours" is ``FisherTaskEmbedder(...).fit(tasks).transform(tasks)`` with one task, timing only
``transform``: feature caching (one no-grad forward), head training on the cached features,
and the Fisher pass (forward with hooks, backward for input gradients, per-example squared
filter gradients in the hooks). The breakdown times these pieces through the package's own
functions, the way ``FisherTaskEmbedder._embed_task`` chains them, and splits the Fisher pass
into its forward, its backward (autograd) and the hooks' per-example products.

Every figure is the median of ``--repeats`` runs after one warm-up run.

    python benchmarks/bench_fisher_speed.py                      # resnet18, 1024 x 3x32x32, CPU
    python benchmarks/bench_fisher_speed.py --probe resnet34 --image-size 224 --n-examples 128
    python benchmarks/bench_fisher_speed.py --device cuda
    python benchmarks/bench_fisher_speed.py --profile 25         # + top ops of the Fisher pass
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import platform
import statistics
import time

import numpy as np

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # silence the profiler's start/stop chatter
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sklearn_task2vec import FisherTaskEmbedder, fisher  # noqa: E402
from sklearn_task2vec.embedder import _seeds, _to_device
from sklearn_task2vec.tasks import coerce_task, encode_labels  # noqa: E402

# (label, method, n_classes): the cases of the table.
CASES = (("exact", "exact", 2), ("montecarlo", "montecarlo", 10), ("auto", "auto", 10))

# (label, n_classes, FisherTaskEmbedder parameters): further settings, timed as totals only.
OTHER_CASES = (
    ("variational", 10, {"method": "variational"}),
    ("exact, skip_layers=layer3", 2, {"method": "exact", "skip_layers": "layer3"}),
    ("montecarlo, skip_layers=layer3", 10, {"method": "montecarlo", "skip_layers": "layer3"}),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", default="resnet18", help="torchvision model name (default: resnet18)")
    parser.add_argument(
        "--image-size", type=int, default=32, help="height = width of the images (default: 32)"
    )
    parser.add_argument("--n-examples", type=int, default=1024, help="examples in the task (default: 1024)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per figure, median kept (default: 3)"
    )
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help="default: auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random images and labels")
    parser.add_argument(
        "--variational-steps",
        type=int,
        default=300,
        help="variational_steps of the variational case (default: 300, the estimator's default)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile one Fisher pass (torch.profiler) and print its top N ops by self time",
    )
    args = parser.parse_args(argv)
    for name in ("image_size", "n_examples", "batch_size", "repeats", "variational_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    return args


# ------------------------------------------------------------------ timing
def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device):
    """(seconds, result) of ``function()``, the device synchronised on both sides."""
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def median_time(function, device, repeats):
    """Median seconds of ``repeats`` calls of ``function`` after one warm-up call."""
    function()
    return statistics.median(timed(function, device)[0] for _ in range(repeats))


def median_dict(function, repeats):
    """Per-key medians of the dicts of seconds returned by ``repeats`` calls, after a warm-up."""
    function()
    runs = [function() for _ in range(repeats)]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# ---------------------------------------------------------------- baseline
def plain_model(probe_name, n_classes, device):
    """The probe's torchvision body, random weights, with a fresh classifier; eval mode."""
    import torchvision

    model = torchvision.models.get_model(probe_name, weights=None)
    if not isinstance(getattr(model, "fc", None), torch.nn.Linear):
        raise SystemExit(
            f"--probe {probe_name}: the baseline needs a model with an `fc` Linear classifier (a ResNet)"
        )
    model.fc = torch.nn.Linear(model.fc.in_features, n_classes)
    return model.to(device).eval()


def plain_forward_backward(model, inputs, labels, batch_size, device):
    """One forward, cross-entropy and full backward per batch: the reference time."""
    labels = torch.as_tensor(labels, dtype=torch.long)

    def run():
        for start in range(0, len(inputs), batch_size):
            batch = _to_device(inputs[start : start + batch_size], device)
            target = labels[start : start + batch_size].to(device)
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(batch), target)
            loss.backward()

    return run


def plain_forward(model, inputs, batch_size, device):
    def run():
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                model(_to_device(inputs[start : start + batch_size], device))

    return run


# ---------------------------------------------------------------- ours
class HookTimer:
    """Wraps ``fisher.squared_filter_gradients`` (called by the recorder's hooks) to time it."""

    def __init__(self, device):
        self.device = device
        self.seconds = 0.0
        self.by_module = collections.Counter()

    @contextlib.contextmanager
    def installed(self):
        original = fisher.squared_filter_gradients

        def wrapper(module, activation, output_grad):
            synchronize(self.device)
            start = time.perf_counter()
            result = original(module, activation, output_grad)
            synchronize(self.device)
            elapsed = time.perf_counter() - start
            self.seconds += elapsed
            self.by_module[module] += elapsed
            return result

        fisher.squared_filter_gradients = wrapper
        try:
            yield self
        finally:
            fisher.squared_filter_gradients = original


def fisher_forward_only(embedder, probe, head, task, device):
    """The Fisher pass's forward alone: hooks on, graph built, no backward."""
    with fisher.FilterFisherRecorder(probe.filters, probe.scales) as recorder, torch.enable_grad():
        for inputs, _ in task.batches(embedder.batch_size):
            recorder.start_batch(inputs.shape[0], device)
            head(probe.module(_to_device(inputs, device))).sum()  # built, then dropped


def breakdown(embedder, raw_task, device):
    """Seconds of each piece of ``_embed_task`` on ``raw_task``, chained the same way."""
    _, seeds = _seeds(embedder.random_state)
    times = {}
    start = time.perf_counter()
    probe = embedder._runnable_probe(device)
    task = coerce_task(
        raw_task,
        0,
        dtype=torch.float32,
        batch_size=embedder.batch_size,
        max_samples=embedder.max_samples,
        rng=np.random.RandomState(seeds[0]),
    )
    times["prepare"] = time.perf_counter() - start

    times["cache"], (features, labels, _) = timed(lambda: embedder._cache_features(probe, task, device), device)
    classes, codes = encode_labels(labels, task.where)
    times["head"], head = timed(lambda: embedder._train_head(features, codes, len(classes)), device)
    method = fisher.resolve_method(embedder.method, len(classes))

    def fisher_pass():
        return embedder._fisher(probe, head, task, method, seeds, keep_rows=False)

    hooks = HookTimer(device)
    if device.type == "cuda":
        # The hook timer synchronises inside the pass: time the pass without it, then the hooks.
        times["fisher"], _ = timed(fisher_pass, device)
        with hooks.installed():
            fisher_pass()
    else:
        with hooks.installed():
            times["fisher"], _ = timed(fisher_pass, device)
    times["fisher_hooks"] = hooks.seconds
    names = {module: path for path, module in probe.filters}
    for module, seconds in hooks.by_module.items():
        times[f"hook {names.get(module, type(module).__name__)}"] = seconds
    times["fisher_fwd"], _ = timed(lambda: fisher_forward_only(embedder, probe, head, task, device), device)
    times["fisher_bwd"] = max(times["fisher"] - times["fisher_hooks"] - times["fisher_fwd"], 0.0)
    return times, (probe, head, task, method, seeds)


def profile_fisher(embedder, state, device, top):
    """torch.profiler of one Fisher pass: the ops with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    probe, head, task, method, seeds = state
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    embedder._fisher(probe, head, task, method, seeds, keep_rows=False)  # warm-up
    with profile(activities=activities) as prof:
        embedder._fisher(probe, head, task, method, seeds, keep_rows=False)
        synchronize(device)
    if device.type == "cuda":
        averages = prof.key_averages()
        key = (
            "self_device_time_total"
            if hasattr(averages[0], "self_device_time_total")
            else "self_cuda_time_total"
        )
    else:
        key = "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=48))


# ---------------------------------------------------------------- report
def machine_info(device):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [
        f"CPU: {cpu}; nproc: {os.cpu_count()} (usable: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'})",
        f"torch {torch.__version__}, threads: {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}), "
        f"mkldnn: {torch.backends.mkldnn.is_available()}",
    ]
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return lines


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.n_examples, 3, args.image_size, args.image_size)
    inputs = torch.randn(shape, generator=generator, dtype=torch.float32)
    labels = {
        c: torch.randint(c, (args.n_examples,), generator=generator).numpy()
        for c in {c for _, _, c in CASES} | {c for _, c, _ in OTHER_CASES}
    }

    print(
        f"# Fisher embedding speed: probe {args.probe} (probe_weights=None), {args.n_examples} images "
        f"3x{args.image_size}x{args.image_size}, batch {args.batch_size}, device {device}, "
        f"median of {args.repeats} after 1 warm-up"
    )
    for line in machine_info(device):
        print("# " + line)

    torch.manual_seed(args.seed)
    baseline, forward_only = {}, {}
    for n_classes in sorted(labels):
        model = plain_model(args.probe, n_classes, device)
        baseline[n_classes] = median_time(
            plain_forward_backward(model, inputs, labels[n_classes], args.batch_size, device),
            device,
            args.repeats,
        )
        forward_only[n_classes] = median_time(
            plain_forward(model, inputs, args.batch_size, device), device, args.repeats
        )
        del model

    rows, profiled = [], None
    for name, method, n_classes in CASES:
        tasks = [(inputs, labels[n_classes])]
        embedder = FisherTaskEmbedder(
            probe=args.probe,
            probe_weights=None,
            method=method,
            batch_size=args.batch_size,
            random_state=0,
            device=device,
        ).fit(tasks)
        total = median_time(lambda: embedder.transform(tasks), device, args.repeats)
        state = {}

        def pieces():
            times, state["fisher"] = breakdown(embedder, tasks[0], device)
            return times

        parts = median_dict(pieces, args.repeats)
        rows.append((name, fisher.resolve_method(method, n_classes), n_classes, total, parts))
        if profiled is None:
            profiled = (name, n_classes, embedder, state["fisher"])

    ref = baseline
    print()
    print(
        "plain fwd+bwd (reference): "
        + ", ".join(f"{c} classes {baseline[c]:.3f} s" for c in sorted(baseline))
        + "; plain no-grad fwd: "
        + ", ".join(
            f"{c} classes {forward_only[c]:.3f} s ({forward_only[c] / baseline[c]:.2f}x)"
            for c in sorted(forward_only)
        )
    )
    print()
    header = (
        f"{'method':<11} {'(used)':<11} {'classes':>7} {'seconds':>8} {'ratio':>6} | "
        f"{'cache':>12} {'head':>12} {'fisher':>12} = {'fwd':>11} {'bwd':>11} {'hooks':>11}"
    )
    print(header)
    print("-" * len(header))

    def cell(seconds, n_classes, width=12):
        return f"{seconds:5.2f}s/{seconds / ref[n_classes]:4.2f}x".rjust(width)

    for name, used, n_classes, total, parts in rows:
        print(
            f"{name:<11} {used:<11} {n_classes:>7} {total:8.3f} {total / ref[n_classes]:5.2f}x | "
            f"{cell(parts['cache'], n_classes)} {cell(parts['head'], n_classes)} "
            f"{cell(parts['fisher'], n_classes)} = {cell(parts['fisher_fwd'], n_classes, 11)} "
            f"{cell(parts['fisher_bwd'], n_classes, 11)} {cell(parts['fisher_hooks'], n_classes, 11)}"
        )
    print()
    print(
        "ratio: seconds / plain fwd+bwd with the same number of classes. Breakdown (seconds/ratio), medians"
    )
    print(
        "of separate runs, so they need not add up to the total exactly: cache = no-grad forward caching the"
    )
    print("features; head = head training on them; fisher = Fisher pass, split into fwd (forward with hooks,")
    print("graph built), hooks (per-example squared filter gradients) and bwd (the rest: autograd backward).")

    print()
    print("# other settings: total seconds of transform (ratio to plain fwd+bwd with as many classes)")
    for name, n_classes, params in OTHER_CASES:
        if params["method"] == "variational":
            params = {**params, "variational_steps": args.variational_steps}
        tasks = [(inputs, labels[n_classes])]
        embedder = FisherTaskEmbedder(
            probe=args.probe, probe_weights=None, batch_size=args.batch_size, random_state=0, device=device, **params
        ).fit(tasks)
        total = median_time(lambda: embedder.transform(tasks), device, args.repeats)
        print(f"  {name:<32} {n_classes:>3} classes {total:8.3f} s {total / ref[n_classes]:6.2f}x")
    print(
        f"  variational: one point-estimate pass (its start) + variational_steps={args.variational_steps} steps"
        " of a batch, whatever the task's size"
    )

    if args.profile:
        name, n_classes, embedder, state = profiled
        parts = rows[0][4]
        hook_times = sorted(
            ((key[5:], value) for key, value in parts.items() if key.startswith("hook ")),
            key=lambda item: -item[1],
        )
        print()
        print(
            f"# hook time by layer ({name}, {n_classes} classes), top {min(args.profile, len(hook_times))} of "
            f"{len(hook_times)}: seconds over the task (ratio to plain fwd+bwd)"
        )
        for path, seconds in hook_times[: args.profile]:
            print(f"  {path:<28} {seconds:6.3f}s ({seconds / ref[n_classes]:.3f}x)")
        print()
        print(
            f"# torch.profiler, one Fisher pass ({name}, {n_classes} classes), top {args.profile} ops by self time"
        )
        profile_fisher(embedder, state, device, args.profile)


if __name__ == "__main__":
    main()
