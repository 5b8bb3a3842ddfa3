"""How long a TASK2VEC embedding takes through the public API, relative to one plain forward+backward pass.

The reference ("plain fwd+bwd") is the cheapest honest way to touch every weight gradient of
the probe once: the same torchvision body (``weights=None``) with its ``fc`` replaced by a
fresh ``Linear(d, n_classes)``, in eval mode, and for every batch a forward, a cross-entropy
on the labels and ``loss.backward()`` computing all parameter gradients (zeroed between
batches). Its inputs start on the CPU and go to the device batch by batch, as ours do.

"Ours" is the public API end to end, timed in the same run:

* one task: ``FisherTaskEmbedder(...).fit_transform([task])`` (building the probe, preparing
  it, feature caching, head training and the Fisher pass);
* a sequence: ``fit_transform(tasks)`` on ``--n-tasks`` tasks of the same images with other
  labels, divided by the number of tasks (the per-task cost once the probe is built).

The breakdown times the stages of one task through the pipeline's own functions
(``sklearn_task2vec._pipeline``: building the probe, preparing it, the features pass, the
head, the Fisher pass), the way :func:`embed_task` chains them: the features pass keeps its
forwards (with their graphs) for the Fisher pass where they fit in memory, so that the
Fisher pass is its backward passes only.

Every figure is the median of ``--repeats`` runs after one warm-up run.

    python benchmarks/bench_fisher_speed.py                      # resnet18, 1024 x 3x32x32, CPU
    python benchmarks/bench_fisher_speed.py --probe resnet34 --image-size 224 --n-examples 128
    python benchmarks/bench_fisher_speed.py --device cuda
    python benchmarks/bench_fisher_speed.py --profile 25         # + top ops of the Fisher pass
    python benchmarks/bench_fisher_speed.py --cases montecarlo-2 --skip-sequence --skip-others  # README case
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # silence the profiler's start/stop chatter
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sklearn_task2vec import FisherTaskEmbedder  # noqa: E402
from sklearn_task2vec._fisher import RetainedForwards, resolve_method, task_fisher  # noqa: E402
from sklearn_task2vec._heads import Readout, task_features, train_head  # noqa: E402
from sklearn_task2vec._pipeline import embedding_seeds, fisher_generator  # noqa: E402
from sklearn_task2vec._probes import build_named_probe, frozen_copy, prepare_probe  # noqa: E402
from sklearn_task2vec._utils import to_device  # noqa: E402
from sklearn_task2vec.tasks import coerce_task, encode_labels  # noqa: E402

# (label, method, n_classes): the cases of the table; the first is the README's.
CASES = (
    ("montecarlo", "montecarlo", 2),
    ("exact", "exact", 2),
    ("montecarlo", "montecarlo", 10),
    ("auto", "auto", 10),
)


def case_name(case):
    label, _, n_classes = case
    return f"{label}-{n_classes}"


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
    parser.add_argument("--n-tasks", type=int, default=4, help="tasks in the sequence case (default: 4)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per figure, median kept (default: 3)"
    )
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help="default: auto")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random images and labels")
    parser.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "process"),
        help="wall: elapsed seconds (default); process: this process's CPU seconds, for a CPU run "
        "with --threads 1 on a busy machine, where other processes' load inflates elapsed time",
    )
    parser.add_argument(
        "--variational-steps",
        type=int,
        default=300,
        help="variational_steps (most steps) of the variational case (default: 300, the estimator's default)",
    )
    parser.add_argument("--skip-others", action="store_true", help="skip the other settings")
    parser.add_argument(
        "--cases",
        default=",".join(case_name(case) for case in CASES),
        help="comma-separated cases of the table, as METHOD-CLASSES (default: all, "
        + ", ".join(case_name(case) for case in CASES)
        + "); --cases montecarlo-2 --skip-others --skip-sequence times the README's case alone",
    )
    parser.add_argument(
        "--skip-sequence", action="store_true", help="skip the 'per task of --n-tasks' column"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile one Fisher pass (torch.profiler) and print its top N ops by self time",
    )
    args = parser.parse_args(argv)
    names = {case_name(case): case for case in CASES}
    unknown = [name for name in args.cases.split(",") if name not in names]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; the cases are {', '.join(names)}")
    args.cases = [names[name] for name in args.cases.split(",")]
    for name in ("image_size", "n_examples", "batch_size", "n_tasks", "repeats", "variational_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if args.clock == "process" and args.device != "cpu":
        parser.error("--clock process counts CPU seconds: it takes --device cpu")
    return args


# ------------------------------------------------------------------ timing
def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: How seconds are counted (--clock): elapsed, or this process's CPU time.
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
clock = CLOCKS["wall"]


def timed(function, device):
    """(seconds, result) of ``function()``, the device synchronised on both sides."""
    synchronize(device)
    start = clock()
    result = function()
    synchronize(device)
    return clock() - start, result


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
            batch = to_device(inputs[start : start + batch_size], device)
            target = labels[start : start + batch_size].to(device)
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(batch), target)
            loss.backward()

    return run


def plain_forward(model, inputs, batch_size, device):
    def run():
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                model(to_device(inputs[start : start + batch_size], device))

    return run


# ---------------------------------------------------------------- ours
def end_to_end(args, device, tasks, **params):
    """``FisherTaskEmbedder(...).fit_transform(tasks)``: the public API, from the probe's name to the rows."""
    embedder = FisherTaskEmbedder(
        probe=args.probe,
        probe_weights=None,
        batch_size=args.batch_size,
        random_state=0,
        device=device,
        **params,
    )
    return embedder.fit_transform(tasks)


def breakdown(args, method, task, device):
    """Seconds of each stage of one task, through the pipeline's functions, chained as
    ``embed_task`` chains them (the features pass keeping its forwards for the Fisher pass,
    which then runs its backward passes only); and a Fisher pass to profile (with its own
    forwards: the kept ones serve once)."""
    seeds = embedding_seeds(0)
    times = {}
    times["probe"], probe = timed(
        lambda: frozen_copy(build_named_probe(args.probe, None, seeds.probe)), device
    )
    times["prepare"], runnable = timed(lambda: prepare_probe(probe, None, device), device)
    coerced = coerce_task(
        task, 0, dtype=torch.float32, batch_size=args.batch_size, max_samples=None, rng=None
    )
    retained = RetainedForwards(runnable, len(coerced))
    times["features"], features = timed(
        lambda: task_features(
            runnable.module, coerced, batch_size=args.batch_size, device=device, run=retained.run
        ),
        device,
    )
    classes, codes = encode_labels(features.labels, coerced.where)
    times["head"], linear = timed(
        lambda: train_head(
            features.features, codes, len(classes), max_iter=100, learning_rate=1.0, weight_decay=5e-4
        ),
        device,
    )
    head = Readout(linear, features.kind)
    used = resolve_method(method, len(classes))

    def fisher_pass(retained=None):
        return task_fisher(
            runnable,
            head,
            coerced,
            method=used,
            batch_size=args.batch_size,
            generator=fisher_generator(seeds, device),
            retained=retained,
        )

    times["fisher"], _ = timed(lambda: fisher_pass(retained), device)
    return times, fisher_pass


def profile_fisher(fisher_pass, device, top):
    """torch.profiler of one Fisher pass: the ops with the most self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fisher_pass()  # warm-up
    with profile(activities=activities) as prof:
        fisher_pass()
        synchronize(device)
    key = "self_cpu_time_total"
    if device.type == "cuda":
        averages = prof.key_averages()
        key = (
            "self_device_time_total"
            if hasattr(averages[0], "self_device_time_total")
            else "self_cuda_time_total"
        )
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
    global clock
    args = parse_args(argv)
    clock = CLOCKS[args.clock]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.n_examples, 3, args.image_size, args.image_size)
    inputs = torch.randn(shape, generator=generator, dtype=torch.float32)
    others = () if args.skip_others else OTHER_CASES
    labels = {
        c: [torch.randint(c, (args.n_examples,), generator=generator).numpy() for _ in range(args.n_tasks)]
        for c in sorted({c for _, _, c in args.cases} | {c for _, c, _ in others})
    }

    print(
        f"# Fisher embedding speed through the public API: probe {args.probe} (probe_weights=None), "
        f"{args.n_examples} images 3x{args.image_size}x{args.image_size}, batch {args.batch_size}, "
        f"device {device}, median of {args.repeats} after 1 warm-up, {args.clock} clock"
    )
    for line in machine_info(device):
        print("# " + line)

    torch.manual_seed(args.seed)
    baseline, forward_only = {}, {}
    for n_classes in sorted(labels):
        model = plain_model(args.probe, n_classes, device)
        baseline[n_classes] = median_time(
            plain_forward_backward(model, inputs, labels[n_classes][0], args.batch_size, device),
            device,
            args.repeats,
        )
        forward_only[n_classes] = median_time(
            plain_forward(model, inputs, args.batch_size, device), device, args.repeats
        )
        del model
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
        f"{'method':<11} {'(used)':<11} {'classes':>7} {'one task':>15} {'per task of ' + str(args.n_tasks):>17} | "
        f"{'probe':>11} {'prepare':>11} {'features':>11} {'head':>11} {'fisher':>11}"
    )
    print(header)
    print("-" * len(header))
    profiled = None
    for name, method, n_classes in args.cases:
        one_task = [(inputs, labels[n_classes][0])]
        tasks = [(inputs, task_labels) for task_labels in labels[n_classes]]
        single = median_time(
            functools.partial(end_to_end, args, device, one_task, method=method), device, args.repeats
        )
        sequence = float("nan")
        if not args.skip_sequence:
            sequence = median_time(
                functools.partial(end_to_end, args, device, tasks, method=method), device, args.repeats
            )
        state = {}

        def stages(method=method, task=one_task[0], state=state):
            times, state["fisher_pass"] = breakdown(args, method, task, device)
            return times

        parts = median_dict(stages, args.repeats)
        ref = baseline[n_classes]
        per_task = sequence / args.n_tasks
        sequence_cell = "-" if args.skip_sequence else f"{per_task:9.2f}s {per_task / ref:5.2f}x"
        cells = " ".join(f"{parts[key]:5.2f}s/{parts[key] / ref:4.2f}x".rjust(11) for key in parts)
        print(
            f"{name:<11} {resolve_method(method, n_classes):<11} {n_classes:>7} "
            f"{single:7.2f}s {single / ref:5.2f}x {sequence_cell:>17} | {cells}"
        )
        if profiled is None:
            profiled = (name, n_classes, state["fisher_pass"])
    print()
    print("ratio: seconds / plain fwd+bwd with the same number of classes. one task = fit_transform([task])")
    print("end to end; per task = fit_transform(tasks) / n_tasks. Stages (seconds/ratio, medians of separate")
    print("runs, so they need not add up): probe = building the named probe; prepare = BatchNorm folding;")
    print("features = forward caching the features (keeping its graphs for the Fisher pass where they fit")
    print("in memory); head = head training; fisher = Fisher pass (backward passes only on kept forwards).")

    if not args.skip_others:
        print()
        print("# other settings: fit_transform([task]) seconds (ratio to plain fwd+bwd with as many classes)")
        for name, n_classes, params in OTHER_CASES:
            if params["method"] == "variational":
                params = {**params, "variational_steps": args.variational_steps}
            one_task = [(inputs, labels[n_classes][0])]
            total = median_time(
                functools.partial(end_to_end, args, device, one_task, **params), device, args.repeats
            )
            print(f"  {name:<32} {n_classes:>3} classes {total:8.3f} s {total / baseline[n_classes]:6.2f}x")
        print(
            "  variational: the defaults (variational_curvature='gauss_newton', variational_noise="
            "'per_example', variational_tol=0.05): one point-estimate pass (its start) + steps of one batch"
            " with the weight noise until the row's relative standard error is at most variational_tol,"
            f" at most variational_steps={args.variational_steps}"
        )

    if args.profile:
        name, n_classes, fisher_pass = profiled
        print()
        print(
            f"# torch.profiler, one Fisher pass ({name}, {n_classes} classes), top {args.profile} ops by self time"
        )
        profile_fisher(fisher_pass, device, args.profile)


if __name__ == "__main__":
    main()
