"""Peak memory of a TASK2VEC embedding as the task grows: is it flat in the number of examples?

For each method and task size ``n``, one fresh process builds a task of ``n`` images and runs
``FisherTaskEmbedder(probe=..., probe_weights=None, method=..., random_state=0,
batch_size=...).fit_transform([task])`` once. ``"exact"`` runs on a 2-class task, ``"montecarlo"``
and ``"auto"`` on a 10-class one.

The task is a torch ``Dataset`` that generates each image (standard normal, 3 x size x size)
and its label from a ``torch.Generator`` seeded by the example's index: it holds no data, so
what grows with ``n`` is the embedder's memory, not the task's. The embedder reads it
through a ``DataLoader``, batch by batch.

Measured in the child process:

* RSS before: resident memory right before ``fit_transform`` (after the imports, the dataset
  and the estimator are built; ``/proc/self/statm``);
* peak: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after ``fit_transform`` (KiB on Linux),
  the high-water mark having been reset right before the fit (``echo 5 > /proc/self/clear_refs``,
  Linux >= 4.0) so that a peak during the imports cannot hide the fit's; the output says
  whether the reset worked;
* peak extra: peak minus RSS before, what the fit itself needed at most; "ratio" divides it
  by the extra of the smallest size of the same method;
* features: the size of the probe features the package caches for head training,
  ``n x d`` floats (``d = 512`` for resnet18), the one buffer expected to grow with ``n``.

The parent process never imports torch: a child's ``ru_maxrss`` starts at its parent's RSS
(Linux carries the pre-``exec`` high-water mark over), which would otherwise floor every peak.

About 3 minutes with the defaults on 2 CPU cores.

    python benchmarks/bench_fisher_memory.py                    # resnet18, 1k/4k/16k x 3x32x32
    python benchmarks/bench_fisher_memory.py --sizes 1000 4000 --methods exact
    python benchmarks/bench_fisher_memory.py --probe resnet34 --image-size 64 --sizes 256 1024
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import importlib.metadata
import multiprocessing
import os
import platform
import resource
import time

# Classes of the task each method is measured on (exact costs C - 1 backward passes: binary).
N_CLASSES = {"exact": 2, "montecarlo": 10, "auto": 10}
MIB = 2**20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1000, 4000, 16000],
        help="examples per task, one fresh process each (default: 1000 4000 16000)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["montecarlo", "exact"],
        choices=sorted(N_CLASSES),
        help="Fisher estimators (default: montecarlo exact)",
    )
    parser.add_argument("--probe", default="resnet18", help="torchvision model name (default: resnet18)")
    parser.add_argument(
        "--image-size", type=int, default=32, help="height = width of the images (default: 32)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    for name in ("image_size", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.sizes) < 1:
        parser.error("--sizes must be >= 1")
    return args


# ------------------------------------------------------------ child process
def generated_images(n_examples, image_size, n_classes):
    """A ``Dataset`` of ``n_examples`` (image, label) pairs computed from their index.

    The class is defined here, not at module level, because subclassing ``Dataset`` imports
    torch, which the parent process must not do (module docstring).
    """
    import torch

    class GeneratedImages(torch.utils.data.Dataset):
        def __len__(self):
            return n_examples

        def __getitem__(self, index):
            if not 0 <= index < n_examples:
                raise IndexError(index)
            generator = torch.Generator().manual_seed(index)
            image = torch.randn(3, image_size, image_size, generator=generator)
            label = int(torch.randint(n_classes, (), generator=generator))
            return image, label

    return GeneratedImages()


def resident_bytes():
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes():
    """``ru_maxrss`` of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak():
    """Reset this process's RSS high-water mark to its current RSS; whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def measure(method, n_examples, probe, image_size, batch_size, threads):
    """Run in a fresh process: memory and seconds of one ``fit_transform`` of a generated task."""
    import torch

    from sklearn_task2vec import FisherTaskEmbedder

    if threads is not None:
        torch.set_num_threads(threads)
    dataset = generated_images(n_examples, image_size, N_CLASSES[method])
    embedder = FisherTaskEmbedder(
        probe=probe, probe_weights=None, method=method, random_state=0, batch_size=batch_size, device="cpu"
    )
    gc.collect()
    before = resident_bytes()
    import_peak = peak_bytes()
    was_reset = reset_peak()
    start = time.perf_counter()
    embedder.fit_transform([dataset])
    seconds = time.perf_counter() - start
    peak = peak_bytes()
    with torch.no_grad():
        feature_bytes = embedder.probe_(dataset[0][0][None]).numel() * n_examples * 4
    return {
        "before": before,
        "import_peak": import_peak,
        "peak": peak,
        "reset": was_reset,
        "seconds": seconds,
        "features": feature_bytes,
        "threads": torch.get_num_threads(),
    }


def in_fresh_process(function, *args):
    """``function(*args)`` in a new spawned interpreter, which exits afterwards."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(function, *args).result()


# ------------------------------------------------------------------ report
def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv=None):
    args = parse_args(argv)
    sizes = sorted(set(args.sizes))
    print(
        f"# Fisher embedding peak memory: probe {args.probe} (probe_weights=None), generated images "
        f"3x{args.image_size}x{args.image_size}, batch {args.batch_size}, one fresh process per row"
    )
    print(
        f"# CPU: {cpu_model()}; nproc: {os.cpu_count()}; torch {importlib.metadata.version('torch')}; "
        f"parent RSS {resident_bytes() / MIB:.0f} MiB (floor of every child's ru_maxrss)"
    )
    rows = []
    for method in args.methods:
        for n_examples in sizes:
            result = in_fresh_process(
                measure, method, n_examples, args.probe, args.image_size, args.batch_size, args.threads
            )
            rows.append((method, n_examples, result))
            print(
                f"  done: {method} n={n_examples} in {result['seconds']:.1f} s "
                f"(import peak {result['import_peak'] / MIB:.0f} MiB, {result['threads']} threads)",
                flush=True,
            )

    print()
    print(f"high-water mark reset before each fit: {'yes' if all(r['reset'] for *_, r in rows) else 'NO'}")
    header = (
        f"{'method':<11} {'classes':>7} {'n_examples':>10} {'RSS before':>11} {'peak':>9} "
        f"{'peak extra':>11} {'ratio':>6} {'features':>9} {'extra-feat':>11} {'seconds':>8}"
    )
    print(header)
    print("-" * len(header))
    first_extra = {}
    for method, n_examples, result in rows:
        extra = result["peak"] - result["before"]
        first_extra.setdefault(method, extra)
        print(
            f"{method:<11} {N_CLASSES[method]:>7} {n_examples:>10} {result['before'] / MIB:>7.0f} MiB "
            f"{result['peak'] / MIB:>5.0f} MiB {extra / MIB:>7.1f} MiB {extra / first_extra[method]:>5.2f}x "
            f"{result['features'] / MIB:>5.1f} MiB {(extra - result['features']) / MIB:>7.1f} MiB "
            f"{result['seconds']:>8.1f}"
        )
    print()
    print("RSS before: resident memory right before fit_transform; peak: ru_maxrss after it; peak extra:")
    print("peak - RSS before; ratio: peak extra / that of the smallest size; features: the cached probe")
    print("features (n x d float32) used for head training; extra-feat: peak extra minus those.")


if __name__ == "__main__":
    main()
