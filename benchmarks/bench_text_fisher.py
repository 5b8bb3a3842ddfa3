"""The per-sequence Fisher of a language-modelling task against one plain forward+backward pass.

The probe is GPT-2-shaped (``transformers.GPT2LMHeadModel``, random initialisation: the
shapes set the cost, not the weights), the task a batch of random token sequences of
``--lengths`` tokens, given pre-tokenized. Timed in one run, on the same batch:

* **plain fwd+bwd**: the model in eval mode with every parameter requiring a gradient, its
  language-modelling loss on the batch and ``loss.backward()``: every weight gradient once,
  summed over the batch (what the reference diversity code squares);
* **Fisher pass**: our Monte Carlo per-sequence Fisher of the same batch under the task's
  head (``sklearn_task2vec._fisher.task_fisher``: the body's forward, the head's logits over
  the vocabulary, one backward from a sampled next token at every position, and the squared
  gradient of each sequence's log-likelihood per filter);
* **public API**: ``FisherTaskEmbedder(model).fit_transform([(tokens, None)])`` end to end
  (the probe's frozen copy and inspection, the hidden states cached once, the head fitted
  from the model's own output layer by L-BFGS for ``--head-epochs`` iterations, the Fisher
  pass).

Every figure is the median of ``--repeats`` runs after one warm-up; the ratios are to the
plain pass of the same run.

    python benchmarks/bench_text_fisher.py                        # 4 layers x 256, CPU
    python benchmarks/bench_text_fisher.py --n-layer 12 --n-embd 768 --device cuda   # GPT-2 small
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec._fisher import task_fisher
from sklearn_task2vec._pipeline import EmbeddingSettings, embedding_seeds, fisher_generator, task_head
from sklearn_task2vec._probes import prepare_probe
from sklearn_task2vec.tasks import coerce_task


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n-layer", type=int, default=4, help="transformer blocks (default: 4; GPT-2 small: 12)"
    )
    parser.add_argument(
        "--n-embd", type=int, default=256, help="hidden size (default: 256; GPT-2 small: 768)"
    )
    parser.add_argument("--n-head", type=int, default=4, help="attention heads (default: 4)")
    parser.add_argument("--vocab-size", type=int, default=50257, help="vocabulary (default: GPT-2's 50257)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256], help="tokens per sequence")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="sequences per batch (default: 8, the paper's)"
    )
    parser.add_argument(
        "--head-epochs", type=int, default=10, help="L-BFGS iterations of the head (default: 10)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure, median kept")
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return parser.parse_args(argv)


def median_time(function, repeats, device):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = parse_args(argv)
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    config = transformers.GPT2Config(
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        vocab_size=args.vocab_size,
        n_positions=max(args.lengths),
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).to(device).eval()
    print(
        f"GPT-2-shaped probe: {args.n_layer} layers x {args.n_embd}, vocabulary {args.vocab_size}; "
        f"batches of {args.batch_size} sequences; {device.type} "
        f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads); torch {torch.__version__}, transformers {transformers.__version__}"
    )
    print(
        f"{'tokens':>6}  {'plain fwd+bwd':>13}  {'Fisher pass':>11}  {'ratio':>5}  {'public API':>10}  {'ratio':>5}"
    )
    rng = np.random.RandomState(0)
    for length in args.lengths:
        ids = rng.randint(0, args.vocab_size, size=(args.batch_size, length))
        plain_time, fisher_time, api_time = time_length(model, ids, args, device)
        print(
            f"{length:>6}  {plain_time:>12.3f}s  {fisher_time:>10.3f}s  {fisher_time / plain_time:>5.2f}  "
            f"{api_time:>9.3f}s  {api_time / plain_time:>5.2f}"
        )


def time_length(model, ids, args, device):
    """``(plain, Fisher pass, public API)`` seconds on one batch of token ids."""
    batch = torch.as_tensor(ids, device=device)

    def plain():
        model.zero_grad(set_to_none=True)
        model(input_ids=batch, labels=batch).loss.backward()

    plain_time = median_time(plain, args.repeats, device)
    model.zero_grad(set_to_none=True)
    embedder = FisherTaskEmbedder(
        model,
        method="montecarlo",
        batch_size=args.batch_size,
        head_epochs=args.head_epochs,
        device=device,
        random_state=0,
    )
    task = [({"input_ids": ids}, None)]
    api_time = median_time(lambda: embedder.fit_transform(task), args.repeats, device)

    # The Fisher pass alone, under the head the pipeline fits, on the same batch.
    settings = EmbeddingSettings(
        method="montecarlo",
        batch_size=args.batch_size,
        max_samples=None,
        head_epochs=args.head_epochs,
        head_learning_rate=embedder.head_learning_rate,
        head_weight_decay=embedder.head_weight_decay,
        variational_beta=embedder.variational_beta,
        variational_steps=embedder.variational_steps,
        variational_tol=embedder.variational_tol,
        variational_noise=embedder.variational_noise,
        skip_layers=None,
        autocast=None,
    )
    probe = prepare_probe(embedder.probe_, None, device, embedder.probe_layers_)
    coerced = coerce_task(
        task[0],
        0,
        dtype=torch.int64,
        batch_size=args.batch_size,
        max_samples=None,
        rng=np.random.RandomState(0),
    )
    fitted = task_head(probe, coerced, settings, device)
    seeds = embedding_seeds(0)

    def fisher():
        task_fisher(
            probe,
            fitted.head,
            coerced,
            method="montecarlo",
            batch_size=args.batch_size,
            generator=fisher_generator(seeds, device),
        )

    return plain_time, median_time(fisher, args.repeats, device), api_time


if __name__ == "__main__":
    main()
