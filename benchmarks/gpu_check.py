"""The CUDA path against the CPU, through the public API: what a session with a GPU checks first.

Each line compares the rows (or scores) computed with ``device="cuda"`` with those of
``device="cpu"`` on the same task and ``random_state``:

* ``method="exact"`` on a 2-class task: deterministic, so the rows differ only by float
  rounding (and the head's L-BFGS path, which rounding can bend): relative L2 error;
* ``method="montecarlo"`` on a 10-class task: the labels are sampled from a generator on each
  device, so the rows differ by Monte Carlo noise as well: the symmetric TASK2VEC distance;
* ``autocast="bfloat16"`` against float32 on CUDA (exact, 2 classes): relative L2 error;
* ``skip_layers="layer3"`` on CUDA against the full network's rows of the same filters;
* ``method="variational"`` (a few steps): finite, positive rows;
* ``taskness_score`` of 64 labellings of 50 digit images: the largest difference of scores.

    python benchmarks/gpu_check.py              # resnet18, 256 random 3x32x32 images
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import load_digits_images
from sklearn_task2vec.discovery import taskness_score
from sklearn_task2vec.distances import symmetric_distance


def relative_l2(ours, reference):
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def rows(task, device, **params):
    embedder = FisherTaskEmbedder(
        probe="resnet18", probe_weights=None, device=device, random_state=0, **params
    )
    start = time.perf_counter()
    embedded = embedder.fit_transform([task])[0]
    return embedded, time.perf_counter() - start, embedder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-examples", type=int, default=256)
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (default: cuda)")
    args = parser.parse_args()
    device = args.device
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check.py: CUDA is not available here.")
        print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((args.n_examples, 3, 32, 32), generator=generator)
    binary = (images, torch.randint(2, (args.n_examples,), generator=generator).numpy())
    ten = (images, torch.randint(10, (args.n_examples,), generator=generator).numpy())

    cpu_exact, cpu_seconds, _ = rows(binary, "cpu", method="exact")
    cuda_exact, cuda_seconds, fitted = rows(binary, device, method="exact")
    print(
        f"exact, 2 classes: {device} vs cpu relative L2 {relative_l2(cuda_exact, cpu_exact):.2e} "
        f"(cpu {cpu_seconds:.1f} s, {device} {cuda_seconds:.1f} s, first call included)"
    )
    cpu_mc, _, _ = rows(ten, "cpu", method="montecarlo")
    cuda_mc, _, _ = rows(ten, device, method="montecarlo")
    print(
        f"montecarlo, 10 classes: {device} vs cpu d_sym {symmetric_distance(cuda_mc, cpu_mc):.4f} (Monte Carlo noise)"
    )
    bf16, _, _ = rows(binary, device, method="exact", autocast="bfloat16")
    print(f"exact, autocast bfloat16 vs float32 on {device}: relative L2 {relative_l2(bf16, cuda_exact):.2e}")
    skipped, _, skipping = rows(binary, device, method="exact", skip_layers="layer3")
    names = list(fitted.get_feature_names_out())
    kept = [names.index(name) for name in skipping.get_feature_names_out()]
    print(
        f"skip_layers='layer3' on {device} vs the full network's same filters: relative L2 "
        f"{relative_l2(skipped, cuda_exact[kept]):.2e}"
    )
    variational, seconds, _ = rows(ten, device, method="variational", variational_steps=20)
    print(
        f"variational (20 steps) on {device}: finite {bool(np.all(np.isfinite(variational)))}, "
        f"positive {bool(np.all(variational > 0))}, {seconds:.1f} s"
    )

    X = load_digits_images().images[:50]
    rng = np.random.RandomState(0)
    stack = np.stack([rng.permutation(np.arange(50) < 10) for _ in range(64)])
    on_cpu = taskness_score(X, stack, device="cpu", random_state=0)
    on_cuda = taskness_score(X, stack, device=device, random_state=0)
    print(
        f"taskness_score, 64 labellings: largest {device} vs cpu difference {np.max(np.abs(on_cuda - on_cpu)):.1e}"
    )


if __name__ == "__main__":
    main()
