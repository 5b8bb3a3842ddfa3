"""Does the reference layout's rise with the vocabulary survive a lower noise floor?

On the vocabulary corpora of ``examples/slow_text_diversity.py`` (4 concepts over 50, 200 and
800 words, ``--n-texts`` texts of 124 words, 512 by default; its tokenizer and its tiny GPT-2,
trained there as there), the reference estimator's rows (``benchmarks/reference_diversity.py``,
the authors' layout) of random batches of ``--batch-texts`` texts (8 by default; one squared
gradient of the mean loss per mini-batch of 8 of them), each row the mean of ``k`` passes under
random states of their own (dropout and sampled labels), for ``k`` = 1 (the authors' recipe)
and ``--repeats``. For the whole layout, its ``wte`` block (one value per token) and the rest:
the coefficient (mean distance between batches, ± the jackknife 95% half-width) and the floor
(median distance between two rows of one batch built from disjoint passes, ``FLOOR_BATCHES``
batches), then the excess (coefficient - floor). If the block's rise with the vocabulary is its
floor's, it shrinks as ``k`` grows. The batches are drawn independently of each other (the
authors' ``random.sample``), unless ``--ours``: then also our ``diversity_coefficient`` and
its floor (the example's ``ours_diversity``, ``--label-draws`` per token) on its own batches,
disjoint (``--n-texts`` must hold ``--n-batches`` x ``--batch-texts`` texts), which the
reference embeds too.

Run: ``python benchmarks/reference_vocabulary_floor.py [--seed 1] [--n-batches 8] [--repeats 4]
[--batch-texts 8] [--n-texts 512] [--ours] [--label-draws 8]``.

Output (``--seed 1``, ``--seed 2`` and ``--seed 0``, the defaults, one thread, a shared 2-core
machine; floors from 2 batches each, so themselves noisy; the seed-0 run was stopped before
its 800-word corpus, at the session's deadline, the machine being busy)::

    Seed 1: reference layout, 8 batches of 8 texts of 124 words per corpus; coefficient ± jackknife 95% half-width (floor), rows the mean of k passes
    corpus        k             whole layout                 wte only              without wte
    ------------------------------------------------------------------------------------------
    50 words      1  0.3203 ± 0.0421 (0.2578)  0.2647 ± 0.0987 (0.1096)  0.3458 ± 0.0308 (0.3356)
    50 words      4  0.2376 ± 0.0605 (0.1485)  0.2920 ± 0.0906 (0.1612)  0.1872 ± 0.0479 (0.1291)
    200 words     1  0.3692 ± 0.0591 (0.2739)  0.3432 ± 0.1108 (0.1493)  0.3714 ± 0.0263 (0.3451)
    200 words     4  0.2752 ± 0.0555 (0.1581)  0.3750 ± 0.0967 (0.1924)  0.1955 ± 0.0256 (0.1327)
    800 words     1  0.3854 ± 0.0357 (0.3257)  0.4346 ± 0.0332 (0.3503)  0.3414 ± 0.0369 (0.3079)
    800 words     4  0.2960 ± 0.0305 (0.2138)  0.4279 ± 0.0283 (0.3413)  0.1778 ± 0.0287 (0.1098)
    Total 98 s

    Seed 2: reference layout, 8 batches of 8 texts of 124 words per corpus; coefficient ± jackknife 95% half-width (floor), rows the mean of k passes
    corpus        k             whole layout                 wte only              without wte
    ------------------------------------------------------------------------------------------
    50 words      1  0.3387 ± 0.0440 (0.2330)  0.3211 ± 0.0685 (0.1059)  0.3408 ± 0.0340 (0.3078)
    50 words      4  0.2584 ± 0.0447 (0.1306)  0.3493 ± 0.0567 (0.1491)  0.1805 ± 0.0388 (0.1160)
    200 words     1  0.3817 ± 0.0454 (0.2475)  0.3706 ± 0.0898 (0.1360)  0.3610 ± 0.0277 (0.3098)
    200 words     4  0.2975 ± 0.0484 (0.1613)  0.3909 ± 0.0711 (0.2014)  0.2059 ± 0.0357 (0.1283)
    800 words     1  0.4047 ± 0.0244 (0.3484)  0.4569 ± 0.0346 (0.3412)  0.3595 ± 0.0217 (0.3450)
    800 words     4  0.2948 ± 0.0302 (0.2181)  0.4363 ± 0.0386 (0.3394)  0.1808 ± 0.0229 (0.1262)
    Total 84 s

    Seed 0: reference layout, 8 batches of 8 texts of 124 words per corpus; coefficient ± jackknife 95% half-width (floor), rows the mean of k passes
    corpus        k             whole layout                 wte only              without wte
    ------------------------------------------------------------------------------------------
    50 words      1  0.3309 ± 0.0446 (0.2545)  0.2992 ± 0.0835 (0.1098)  0.3308 ± 0.0221 (0.3339)
    50 words      4  0.2402 ± 0.0582 (0.1486)  0.3320 ± 0.0778 (0.1900)  0.1605 ± 0.0408 (0.1164)
    200 words     1  0.3436 ± 0.0281 (0.2404)  0.3148 ± 0.0481 (0.1538)  0.3477 ± 0.0259 (0.2913)
    200 words     4  0.2604 ± 0.0386 (0.1518)  0.3245 ± 0.0392 (0.1757)  0.1955 ± 0.0334 (0.1345)
    Terminated

Averaging 4 passes lowers the floor of the rest of the layout (0.29-0.35 to 0.11-0.13) but not
that of the ``wte`` block (0.35 and 0.34 to 0.34 and 0.34 at 800 words, seeds 1 and 2), whose rise with the vocabulary stays
with its floor (presumably because a rare word's coordinate hangs on whether it is read or
sampled at all in a pass, which a few passes do not average away; not measured here).

The paper's batch size (batches of 512 texts, 64 squared gradients per row; ``--seed S
--batch-texts 512 --n-texts 2048 --n-batches 4 --repeats 1 --ours --label-draws 2``, S = 1, 2;
one thread, a shared 2-core machine, niced, 20 minutes per seed). Four disjoint batches per
corpus, the same for both estimators; corpora of 2048 texts, so the tokenizer (about 920
tokens) and the probe (trained on other texts) are not those of the runs above. Ours draws 2
labels per token, not the default 8, to fit the time (one batch of 512 texts: ours 24 s at 1 or
2 draws, 40 s at 8; a reference pass 45 s). Four batches give 6 distances and a loose
jackknife; the floors come from 2 batches::

    Seed 1: reference layout, 4 batches of 512 texts of 124 words per corpus of 2048 (64 squared gradient(s) per reference row; ours: diversity_coefficient's disjoint batches, 2 label draws); coefficient ± jackknife 95% half-width (floor), rows the mean of k passes; floors from 2 batches
    corpus        k             whole layout                 wte only              without wte                     ours
    -------------------------------------------------------------------------------------------------------------------
    50 words      1  0.1505 ± 0.0140 (0.1475)  0.3228 ± 0.0299 (0.3170)  0.0102 ± 0.0019 (0.0100)  0.0053 ± 0.0014 (0.0027)
    200 words     1  0.1262 ± 0.0075 (0.1202)  0.2673 ± 0.0164 (0.2583)  0.0125 ± 0.0030 (0.0112)  0.0076 ± 0.0026 (0.0109)
    800 words     1  0.1214 ± 0.0031 (0.1157)  0.2564 ± 0.0077 (0.2501)  0.0143 ± 0.0023 (0.0105)  0.0050 ± 0.0023 (0.0020)
    Excess over the floor (coefficient - floor)
    corpus        k             whole layout                 wte only              without wte                     ours
    50 words      1                   0.0031                   0.0058                   0.0002                   0.0026
    200 words     1                   0.0060                   0.0090                   0.0013                  -0.0034
    800 words     1                   0.0057                   0.0063                   0.0038                   0.0030
    Time per batch: reference 43.6 s per pass, ours 22.0 s
    Total 1202 s

    Seed 2: reference layout, 4 batches of 512 texts of 124 words per corpus of 2048 (64 squared gradient(s) per reference row; ours: diversity_coefficient's disjoint batches, 2 label draws); coefficient ± jackknife 95% half-width (floor), rows the mean of k passes; floors from 2 batches
    corpus        k             whole layout                 wte only              without wte                     ours
    -------------------------------------------------------------------------------------------------------------------
    50 words      1  0.1173 ± 0.0070 (0.1017)  0.2468 ± 0.0094 (0.2201)  0.0142 ± 0.0036 (0.0099)  0.0060 ± 0.0022 (0.0023)
    200 words     1  0.1881 ± 0.0087 (0.1762)  0.3931 ± 0.0150 (0.3719)  0.0123 ± 0.0036 (0.0102)  0.0048 ± 0.0012 (0.0029)
    800 words     1  0.1079 ± 0.0042 (0.1043)  0.2309 ± 0.0107 (0.2232)  0.0123 ± 0.0017 (0.0123)  0.0074 ± 0.0019 (0.0048)
    Excess over the floor (coefficient - floor)
    corpus        k             whole layout                 wte only              without wte                     ours
    50 words      1                   0.0156                   0.0267                   0.0043                   0.0037
    200 words     1                   0.0119                   0.0212                   0.0021                   0.0018
    800 words     1                   0.0036                   0.0077                   0.0000                   0.0027
    Time per batch: reference 42.6 s per pass, ours 21.6 s
    Total 1174 s

At 512 texts nothing rises with the vocabulary, above the floor or with it. The authors' layout
is lower at 800 words than at 50 in both draws (0.150, 0.126, 0.121; 0.117, 0.188, 0.108) and
sits on its floor
(excess 0.003, 0.006, 0.006; 0.016, 0.012, 0.004), its ``wte`` block too (0.32, 0.27, 0.26;
0.25, 0.39, 0.23; excess at most 0.027, and falling in seed 2). The 64 squared gradients lower
the floor of the rest of the layout some thirty-fold (0.31-0.35 at 8 texts to 0.010-0.012),
not the ``wte`` block's (0.22-0.37), so the whole coefficient is mostly that block's noise. Ours is
about twice its floor (0.005-0.008 against 0.002-0.005, one floor 0.011) and flat (excess
0.003, -0.003, 0.003; 0.004, 0.002, 0.003): batches of 512 texts of one corpus hardly differ.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import slow_text_diversity as example  # noqa: E402
from reference_diversity import (  # noqa: E402
    FINE_TUNING,
    filter_layout,
    reference_batch_embedding,
    sample_batches,
)

from sklearn_task2vec.datasets import word_level_tokenizer  # noqa: E402
from sklearn_task2vec.diversity import coefficient_from_embeddings  # noqa: E402

#: Batches of each corpus embedded a second time: the noise floor (the example's number).
FLOOR_BATCHES = example.FLOOR_BATCHES


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seed", type=int, default=1, help="draw of the corpora (default 1)")
    parser.add_argument("--n-batches", type=int, default=8, help="batches per corpus (default 8)")
    parser.add_argument("--repeats", type=int, default=4, help="passes averaged per row (default 4)")
    parser.add_argument(
        "--batch-texts",
        type=int,
        default=8,
        help="texts per batch (default 8; the paper's 512), the reference summing one squared gradient "
        "per mini-batch of 8 of them",
    )
    parser.add_argument(
        "--n-texts",
        type=int,
        default=512,
        help="texts measured per corpus (default 512; as many others train the probe)",
    )
    parser.add_argument(
        "--ours",
        action="store_true",
        help="also our diversity_coefficient and its floor, on its batches (disjoint: needs "
        "n-texts >= n-batches * batch-texts), which the reference then embeds too",
    )
    parser.add_argument(
        "--label-draws", type=int, default=8, help="our Monte Carlo labels per token (default 8)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.ours and args.n_texts < args.n_batches * args.batch_texts:
        parser.error(
            f"--ours draws disjoint batches: --n-texts {args.n_texts} < --n-batches {args.n_batches} "
            f"x --batch-texts {args.batch_texts}"
        )
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    # The example's corpora, tokenizer and probe for this seed (its run_seed).
    measured, training = example.make_corpora(args.n_texts, 124, args.seed)
    tokenizer = word_level_tokenizer([text for texts in measured.values() for text in texts])
    probe, _ = example.train_probe(
        tokenizer,
        [text for texts in training.values() for text in texts],
        steps=300,
        batch_size=8,
        seed=args.seed,
    )
    tokens = filter_layout(probe, "reference")[0][1]
    parts = {"whole layout": slice(None), "wte only": slice(None, tokens), "without wte": slice(tokens, None)}
    options = example.ours_options(
        probe,
        tokenizer,
        argparse.Namespace(
            batch_size=args.batch_texts, n_batches=args.n_batches, label_draws=args.label_draws
        ),
        args.seed,
    )
    rng = np.random.default_rng(args.seed)
    print(
        f"Seed {args.seed}: reference layout, {args.n_batches} batches of {args.batch_texts} texts of 124 words "
        f"per corpus of {args.n_texts} ({-(-args.batch_texts // FINE_TUNING['batch_size'])} squared gradient(s) per reference row"
        + (
            f"; ours: diversity_coefficient's disjoint batches, {args.label_draws} label draws"
            if args.ours
            else "; batches drawn independently"
        )
        + f"); coefficient ± jackknife 95% half-width (floor), rows the mean of k passes; floors from "
        f"{FLOOR_BATCHES} batches",
        flush=True,
    )
    header = f"{'corpus':<12} {'k':>2}" + "".join(f" {part:>24}" for part in [*parts, *["ours"] * args.ours])
    print(header)
    print("-" * len(header))
    excess, seconds = {}, {"reference": [], "ours": []}
    for vocab_size in example.VOCABULARIES:
        name = example.vocabulary_corpus(vocab_size)
        texts = measured[name]
        if args.ours:
            ours, ours_floor, took = example.ours_diversity(texts, options)
            seconds["ours"].append(took / args.n_batches)
            batches = ours.batches
        else:
            batches = sample_batches(len(texts), args.batch_texts, args.n_batches, rng)
        passes = []
        for index, batch in enumerate(batches):
            repeats = []
            for _ in range(2 * args.repeats if index < FLOOR_BATCHES else args.repeats):
                begun = time.perf_counter()
                repeats.append(
                    reference_batch_embedding(
                        probe,
                        tokenizer,
                        [texts[i] for i in batch],
                        filters="reference",
                        random_state=int(rng.integers(2**31 - 1)),
                    )
                )
                seconds["reference"].append(time.perf_counter() - begun)
            passes.append(np.array(repeats))
        for k in sorted({1, args.repeats}):
            rows = np.array([p[:k].mean(0) for p in passes])
            again = np.array([p[args.repeats : args.repeats + k].mean(0) for p in passes[:FLOOR_BATCHES]])
            line = f"{f'{vocab_size} words':<12} {k:>2}"
            excess[vocab_size, k] = []
            for part in parts.values():
                result = coefficient_from_embeddings(rows[:, part])
                low, high = result.confidence_interval
                floor = example.median_distance(rows[:FLOOR_BATCHES, part], again[:, part])
                line += f"  {result.coefficient:.4f} ± {(high - low) / 2:.4f} ({floor:.4f})"
                excess[vocab_size, k].append(result.coefficient - floor)
            if args.ours:  # one coefficient per corpus, whatever k
                low, high = ours.confidence_interval
                line += f"  {ours.coefficient:.4f} ± {(high - low) / 2:.4f} ({ours_floor:.4f})"
                excess[vocab_size, k].append(ours.coefficient - ours_floor)
            print(line, flush=True)
    print("Excess over the floor (coefficient - floor)")
    print(header)
    for (vocab_size, k), values in excess.items():
        print(f"{f'{vocab_size} words':<12} {k:>2}" + "".join(f" {value:>24.4f}" for value in values))
    print(
        f"Time per batch: reference {np.mean(seconds['reference']):.1f} s per pass"
        + (f", ours {np.mean(seconds['ours']):.1f} s" if args.ours else "")
    )
    print(f"Total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
