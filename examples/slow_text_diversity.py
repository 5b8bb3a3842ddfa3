"""
The diversity coefficient of synthetic text corpora
===================================================

The GINC experiment of Miranda et al. (2023, "Beyond Scale: the Diversity Coefficient as a
Data Quality Metric", Fig. 4) at laptop scale: corpora drawn from a uniform mixture of random
Markov chains over words (:func:`~sklearn_task2vec.datasets.markov_text_corpus`, one chain per
latent "concept", each concept with its own word usage, ``topic_concentration=0.1``), and
their diversity coefficient (:func:`~sklearn_task2vec.diversity.diversity_coefficient`: the
expected TASK2VEC distance between two random batches, each batch a language-modelling task)
measured with a tiny GPT-2 probe. The paper expects it to rise with the number of concepts (1,
2, 4, 8 at 200 words) and with the vocabulary (50, 200, 800 words at 4 concepts), and the
cross-diversity of two corpora over disjoint vocabularies (4 concepts over 200 words each,
``w0 w1 ...`` and ``a0 a1 ...``,
:func:`~sklearn_task2vec.diversity.cross_diversity_coefficient`) to exceed the diversity of
each. Every corpus is drawn afresh for each of ``--n-seeds`` seeds (its chains and texts),
with a probe of its own.

The probe: a word-level tokenizer of all the corpora
(:func:`~sklearn_task2vec.datasets.word_level_tokenizer`) and a 2-layer GPT-2 (64 features, 2
heads), trained here for 300 steps of 8 texts on texts of the same corpora that are never
measured, so that it is not a random network. Each batch is 8 texts of 124 words; its head is
the diversity functions' default (10 L-BFGS iterations from the model's own output layer,
``sklearn_task2vec.diversity.HEAD_EPOCHS``), and its Fisher averages 8 draws of the next token
at every position (``label_draws``, the functions' default ``diversity.LABEL_DRAWS``).

With ``--no-reference`` left out, the authors' estimator also runs on the first seed's batches,
with the same probe (``benchmarks/reference_diversity.py``, our own implementation of their
recipe, see ``benchmarks/REFERENCE_DIVERSITY_NOTES.md``): a deep copy of the model in train
mode, its output layer (tied to the token embeddings) fine-tuned on the batch for 10 epochs,
the square of the gradient of the **mean** loss of each mini-batch of 8 texts (here the whole
batch: one squared gradient per batch), Task2Vec's normalised cosine (our distance), its
coefficient as the authors report it (mean ± standard deviation of the distances, in
brackets) with our jackknife interval of the same mean. Ours: the per-sequence Fisher in eval
mode, the probe unchanged, mean ± a jackknife 95% interval. The reference's rows come in two
layouts from one pass (``--reference-filters``): ``package``, our filters (one per output
unit of the body's ``Conv1D`` layers), compared with ours batch by batch; and ``reference``,
the authors' (one value per token of the tied ``wte``, per position, per LayerNorm feature,
``Conv1D`` per input unit), also cut into its ``wte`` block and the rest, each measured alone:
whether the per-token coordinates carry the rise with the vocabulary. ``--reference-repeats
k`` averages each of its rows over ``k`` random states (dropout and sampled labels), which
lowers its noise floor. The first run below leaves the reference out (three draws in three
processes); the runs after it are one draw each with the reference.

A batch's row is a Monte Carlo estimate, so the *noise floor* is the distance between two rows
of the **same** batch under two random states (median over two batches per corpus). A
distance between two batches is about the data's part plus the noise floor.

Run: ``python examples/slow_text_diversity.py [--n-seeds 3] [--n-jobs 3] [--no-reference] [--reference-repeats 1]``.

Not run by the documentation build (the file name starts with ``slow_``): the figure below is
the one stored in ``docs/images/``, from the first run below; the script writes its own into
``<output-dir>``.

Run time: 27 minutes on a shared 2-core CPU machine under a load of 15 to 20 (other jobs), one
thread per process, three seeds in three processes, without the reference (the first run
below); on a quiet machine a few minutes. One draw with the reference (both layouts): 4 minutes
on a quiet machine (seed 1 below), 13 to 14 minutes under a load of 3 to 5 (seeds 0 and 2).

What the run below shows. **The diversity rises with the number of concepts** in all three
draws of the corpora (0.088, 0.102, 0.141, 0.155; 0.127, 0.151, 0.162, 0.202; 0.124, 0.152,
0.167, 0.191 at 1, 2, 4, 8 concepts); 1 and 8 concepts' intervals are apart in two draws and
overlap slightly in the third (0.156 against 0.151), neighbouring ones overlap (the step from 4 to 8 concepts adds little by
construction: batches' concept proportions differ as ``1 - 1/K``). **The cross-diversity
check holds**: 0.42 to 0.48 between the two vocabularies, against at most 0.17 within either.
**The rise with the vocabulary does not appear**: 0.125, 0.141, 0.120; 0.150, 0.162, 0.144;
0.183, 0.167, 0.147 at 50, 200, 800 words, within each other's intervals. The noise floors are
0.03 to 0.06. What made the difference from the earlier settings (31 words, batches of
32, one draw per token, where nothing rose): docs/text.md, "The synthetic checks".

What the runs with the reference show (seeds 0, 1, 2). In our filters' layout its rows sit at
their noise floor (one squared gradient per batch of 8 texts): its coefficients (0.37 to 0.47)
rise with nothing, and agree with ours through the cross-diversity only (Spearman 0.02, 0.26,
0.33 over the 8 coefficients). In the authors' layout they rise with the concepts (the 1- and
8-concept intervals apart in all three draws) and, in their means, with the vocabulary (800
words above 50 in all three, the intervals apart in one); that rise is its ``wte`` block's
(one value per token) alone, the rest flat, and the block's own floor rises with it (0.10-0.11
to 0.33-0.34). What it means: docs/text.md, "The synthetic checks".

.. image:: /images/text_diversity.png
   :alt: Diversity coefficient against the number of concepts and the vocabulary size, and
         the cross-diversity of two disjoint-vocabulary corpora, for three draws of the corpora,
         with their noise floors

Output of a run (``python examples/slow_text_diversity.py --no-reference --n-seeds 3 --n-jobs 3``)::

    7 corpora of 512 texts of 124 words (topic_concentration=0.1) per seed
    Seed 1: 888 tokens; probe trained 300 steps of 8 texts on 3584 other texts of the corpora: loss 6.28 -> 3.49 nats (uniform: 6.79) in 518 s
    Seed 2: 898 tokens; probe trained 300 steps of 8 texts on 3584 other texts of the corpora: loss 6.22 -> 3.50 nats (uniform: 6.80) in 524 s
    Seed 0: 889 tokens; probe trained 300 steps of 8 texts on 3584 other texts of the corpora: loss 6.32 -> 3.78 nats (uniform: 6.79) in 540 s

    Diversity coefficient, 12 batches of 8 texts of 124 words per corpus
      ours: mean distance between batches ± jackknife 95% half-width (per-sequence Fisher, eval mode, 8 label draws per token); (floor)
      floor: median distance between two rows of one batch under two random states (2 batches)
    corpus                    ours, seed 0              ours, seed 1              ours, seed 2
    ------------------------------------------------------------------------------------------
    1 concept     0.0880 ± 0.0227 (0.0287)  0.1266 ± 0.0244 (0.0325)  0.1238 ± 0.0322 (0.0344)
    2 concepts    0.1017 ± 0.0366 (0.0364)  0.1505 ± 0.0564 (0.0335)  0.1518 ± 0.0504 (0.0443)
    4 concepts    0.1409 ± 0.0333 (0.0506)  0.1622 ± 0.0437 (0.0318)  0.1674 ± 0.0377 (0.0404)
    8 concepts    0.1547 ± 0.0249 (0.0325)  0.2022 ± 0.0256 (0.0496)  0.1907 ± 0.0398 (0.0575)
    50 words      0.1251 ± 0.0413 (0.0354)  0.1495 ± 0.0341 (0.0383)  0.1830 ± 0.0411 (0.0393)
    800 words     0.1197 ± 0.0192 (0.0346)  0.1436 ± 0.0511 (0.0318)  0.1471 ± 0.0370 (0.0389)
    a-words       0.1175 ± 0.0232 (0.0286)  0.1480 ± 0.0359 (0.0360)  0.1305 ± 0.0295 (0.0493)
    cross(w, a)   0.4234 ± 0.0166           0.4801 ± 0.0200           0.4364 ± 0.0236

    Time per batch: ours 8.70 s (head: 10 L-BFGS iterations; per-sequence Fisher, 8 draws)
    ours, seed 0: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    ours, seed 1: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    ours, seed 2: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    Total 1618 s

Output of a run with the reference, seed 0 (``python examples/slow_text_diversity.py --seed 0 --n-seeds 1``;
the load changed during the run; an earlier run of seed 0 printed the same coefficients, other
timings, and no floors of the wte block and the rest)::

    7 corpora of 512 texts of 124 words (topic_concentration=0.1) per seed
    Seed 0: 889 tokens; probe trained 300 steps of 8 texts on 3584 other texts of the corpora: loss 6.32 -> 3.78 nats (uniform: 6.79) in 25 s

    Diversity coefficient, 12 batches of 8 texts of 124 words per corpus
      ours: mean distance between batches ± jackknife 95% half-width (per-sequence Fisher, eval mode, 8 label draws per token); (floor)
      floor: median distance between two rows of one batch under two random states (2 batches)
    corpus                    ours, seed 0
    --------------------------------------
    1 concept     0.0880 ± 0.0227 (0.0287)
    2 concepts    0.1017 ± 0.0366 (0.0364)
    4 concepts    0.1409 ± 0.0333 (0.0506)
    8 concepts    0.1547 ± 0.0249 (0.0325)
    50 words      0.1251 ± 0.0413 (0.0354)
    800 words     0.1197 ± 0.0192 (0.0346)
    a-words       0.1175 ± 0.0232 (0.0286)
    cross(w, a)   0.4234 ± 0.0166

    Reference estimator (seed 0, the same batches; batch-mean gradient, train mode, head fine-tuned 10 epochs): mean distance ± jackknife 95% half-width [the authors' ± std] (floor)
      layouts: package = our filters (Conv1D per output unit); reference = the authors' (wte per token, wpe, LayerNorms, Conv1D per input unit); blocks of the authors' layout: its wte coordinates alone, the rest alone
      ours-vs-ref: median symmetric distance between our row and the package-layout reference row of a batch
    corpus                                  package                          reference                           wte only                        without wte  ours-vs-ref
    ---------------------------------------------------------------------------------------------------------------------------------------------------------------------
    1 concept     0.4704 ± 0.0186 [0.0389] (0.4783)  0.2853 ± 0.0157 [0.0350] (0.2549)           0.1413 ± 0.0130 (0.1297)           0.3532 ± 0.0193 (0.3270)       0.4395
    2 concepts    0.4068 ± 0.0169 [0.0347] (0.3941)  0.3107 ± 0.0328 [0.0334] (0.2492)           0.2388 ± 0.0525 (0.1335)           0.3348 ± 0.0182 (0.3155)       0.2975
    4 concepts    0.4050 ± 0.0331 [0.0497] (0.3608)  0.3867 ± 0.0381 [0.0595] (0.2614)           0.3483 ± 0.0371 (0.1599)           0.3919 ± 0.0386 (0.3214)       0.2943
    8 concepts    0.3975 ± 0.0184 [0.0338] (0.3906)  0.4044 ± 0.0336 [0.0324] (0.2850)           0.4151 ± 0.0655 (0.1570)           0.3786 ± 0.0196 (0.3569)       0.2937
    50 words      0.3928 ± 0.0243 [0.0391] (0.3656)  0.3425 ± 0.0363 [0.0362] (0.2432)           0.2972 ± 0.0623 (0.1111)           0.3486 ± 0.0189 (0.3203)       0.3358
    800 words     0.4034 ± 0.0247 [0.0398] (0.3826)  0.3933 ± 0.0276 [0.0384] (0.3305)           0.4299 ± 0.0339 (0.3335)           0.3575 ± 0.0243 (0.3152)       0.3344
    a-words       0.3856 ± 0.0173 [0.0295] (0.3851)  0.3695 ± 0.0333 [0.0408] (0.2993)           0.3894 ± 0.0439 (0.2189)           0.3395 ± 0.0247 (0.3425)       0.4374
    cross(w, a)                     0.5477 ± 0.0196                    0.7159 ± 0.0135

    Seed 0, reference (package) against ours, across the 8 coefficients: Pearson 0.810, Spearman 0.024; reference / ours: median 3.21
    Seed 0, reference (reference) against ours, across the 8 coefficients: Pearson 0.985, Spearman 0.881; reference / ours: median 2.90
    Time per batch: ours 3.62 s (head: 10 L-BFGS iterations; per-sequence Fisher, 8 draws), reference 0.61 s (10 epochs of head fine-tuning; its 2 layouts from one pass)
    ours, seed 0: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (package), seed 0: rises with the concepts False (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (reference), seed 0: rises with the concepts True (intervals apart: False), with the vocabulary True (intervals apart: False); cross(w, a) above both diversities True
    reference (wte only), seed 0: rises with the concepts True (intervals apart: False), with the vocabulary True (intervals apart: False)
    reference (without wte), seed 0: rises with the concepts False (intervals apart: False), with the vocabulary False (intervals apart: False)
    Total 448 s

Seed 1 (``--seed 1 --n-seeds 1``, a quiet machine)::

    7 corpora of 512 texts of 124 words (topic_concentration=0.1) per seed
    Seed 1: 888 tokens; probe trained 300 steps of 8 texts on 3584 other texts of the corpora: loss 6.28 -> 3.49 nats (uniform: 6.79) in 24 s

    Diversity coefficient, 12 batches of 8 texts of 124 words per corpus
      ours: mean distance between batches ± jackknife 95% half-width (per-sequence Fisher, eval mode, 8 label draws per token); (floor)
      floor: median distance between two rows of one batch under two random states (2 batches)
    corpus                    ours, seed 1
    --------------------------------------
    1 concept     0.1266 ± 0.0244 (0.0325)
    2 concepts    0.1505 ± 0.0564 (0.0335)
    4 concepts    0.1622 ± 0.0437 (0.0318)
    8 concepts    0.2022 ± 0.0256 (0.0496)
    50 words      0.1495 ± 0.0341 (0.0383)
    800 words     0.1436 ± 0.0511 (0.0318)
    a-words       0.1480 ± 0.0359 (0.0360)
    cross(w, a)   0.4801 ± 0.0200

    Reference estimator (seed 1, the same batches; batch-mean gradient, train mode, head fine-tuned 10 epochs): mean distance ± jackknife 95% half-width [the authors' ± std] (floor)
      layouts: package = our filters (Conv1D per output unit); reference = the authors' (wte per token, wpe, LayerNorms, Conv1D per input unit); blocks of the authors' layout: its wte coordinates alone, the rest alone
      ours-vs-ref: median symmetric distance between our row and the package-layout reference row of a batch
    corpus                                  package                          reference                           wte only                        without wte  ours-vs-ref
    ---------------------------------------------------------------------------------------------------------------------------------------------------------------------
    1 concept     0.4504 ± 0.0303 [0.0549] (0.4722)  0.2902 ± 0.0186 [0.0299] (0.2736)           0.1476 ± 0.0313 (0.1098)           0.3678 ± 0.0226 (0.3651)       0.3448
    2 concepts    0.4406 ± 0.0311 [0.0488] (0.3934)  0.3179 ± 0.0384 [0.0523] (0.2595)           0.2151 ± 0.0541 (0.1249)           0.3699 ± 0.0338 (0.3373)       0.3156
    4 concepts    0.3797 ± 0.0267 [0.0445] (0.3926)  0.3584 ± 0.0439 [0.0478] (0.2749)           0.3303 ± 0.0619 (0.1667)           0.3702 ± 0.0326 (0.3370)       0.2866
    8 concepts    0.4022 ± 0.0247 [0.0430] (0.3270)  0.4118 ± 0.0456 [0.0442] (0.2660)           0.4480 ± 0.0792 (0.2106)           0.3787 ± 0.0264 (0.3000)       0.2918
    50 words      0.3980 ± 0.0181 [0.0362] (0.4085)  0.3228 ± 0.0239 [0.0318] (0.2371)           0.2669 ± 0.0445 (0.1010)           0.3481 ± 0.0141 (0.3128)       0.3015
    800 words     0.3925 ± 0.0179 [0.0359] (0.3766)  0.3910 ± 0.0254 [0.0365] (0.3198)           0.4366 ± 0.0353 (0.3384)           0.3472 ± 0.0221 (0.3072)       0.4177
    a-words       0.3660 ± 0.0318 [0.0412] (0.3545)  0.3692 ± 0.0421 [0.0474] (0.2404)           0.3799 ± 0.0700 (0.1642)           0.3528 ± 0.0256 (0.2865)       0.3901
    cross(w, a)                     0.5610 ± 0.0173                    0.6798 ± 0.0062

    Seed 1, reference (package) against ours, across the 8 coefficients: Pearson 0.848, Spearman 0.262; reference / ours: median 2.57
    Seed 1, reference (reference) against ours, across the 8 coefficients: Pearson 0.972, Spearman 0.595; reference / ours: median 2.18
    Time per batch: ours 1.22 s (head: 10 L-BFGS iterations; per-sequence Fisher, 8 draws), reference 0.66 s (10 epochs of head fine-tuning; its 2 layouts from one pass)
    ours, seed 1: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (package), seed 1: rises with the concepts False (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (reference), seed 1: rises with the concepts True (intervals apart: False), with the vocabulary True (intervals apart: False); cross(w, a) above both diversities True
    reference (wte only), seed 1: rises with the concepts True (intervals apart: False), with the vocabulary True (intervals apart: False)
    reference (without wte), seed 1: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False)
    Total 225 s

Seed 2 (``--seed 2 --n-seeds 1``, under a load of 3 to 5)::

    7 corpora of 512 texts of 124 words (topic_concentration=0.1) per seed
    Seed 2: 898 tokens; probe trained 300 steps of 8 texts on 3584 other texts of the corpora: loss 6.22 -> 3.50 nats (uniform: 6.80) in 25 s

    Diversity coefficient, 12 batches of 8 texts of 124 words per corpus
      ours: mean distance between batches ± jackknife 95% half-width (per-sequence Fisher, eval mode, 8 label draws per token); (floor)
      floor: median distance between two rows of one batch under two random states (2 batches)
    corpus                    ours, seed 2
    --------------------------------------
    1 concept     0.1238 ± 0.0322 (0.0344)
    2 concepts    0.1518 ± 0.0504 (0.0443)
    4 concepts    0.1674 ± 0.0377 (0.0404)
    8 concepts    0.1907 ± 0.0398 (0.0575)
    50 words      0.1830 ± 0.0411 (0.0393)
    800 words     0.1471 ± 0.0370 (0.0389)
    a-words       0.1305 ± 0.0295 (0.0493)
    cross(w, a)   0.4364 ± 0.0236

    Reference estimator (seed 2, the same batches; batch-mean gradient, train mode, head fine-tuned 10 epochs): mean distance ± jackknife 95% half-width [the authors' ± std] (floor)
      layouts: package = our filters (Conv1D per output unit); reference = the authors' (wte per token, wpe, LayerNorms, Conv1D per input unit); blocks of the authors' layout: its wte coordinates alone, the rest alone
      ours-vs-ref: median symmetric distance between our row and the package-layout reference row of a batch
    corpus                                  package                          reference                           wte only                        without wte  ours-vs-ref
    ---------------------------------------------------------------------------------------------------------------------------------------------------------------------
    1 concept     0.4457 ± 0.0342 [0.0501] (0.4484)  0.2339 ± 0.0204 [0.0345] (0.2116)           0.1022 ± 0.0167 (0.0926)           0.3052 ± 0.0248 (0.2749)       0.3854
    2 concepts    0.4249 ± 0.0216 [0.0421] (0.3996)  0.3123 ± 0.0452 [0.0509] (0.2270)           0.2523 ± 0.0769 (0.1232)           0.3394 ± 0.0293 (0.2804)       0.3243
    4 concepts    0.3967 ± 0.0280 [0.0420] (0.3783)  0.3642 ± 0.0453 [0.0434] (0.2645)           0.3626 ± 0.0785 (0.1511)           0.3510 ± 0.0285 (0.3280)       0.2888
    8 concepts    0.4016 ± 0.0358 [0.0481] (0.3700)  0.4309 ± 0.0402 [0.0472] (0.2421)           0.4674 ± 0.0625 (0.1538)           0.3798 ± 0.0276 (0.2960)       0.2844
    50 words      0.4119 ± 0.0287 [0.0364] (0.3484)  0.3701 ± 0.0258 [0.0385] (0.2296)           0.3717 ± 0.0433 (0.1121)           0.3565 ± 0.0191 (0.2969)       0.3482
    800 words     0.3913 ± 0.0365 [0.0513] (0.3367)  0.4256 ± 0.0323 [0.0452] (0.3444)           0.4836 ± 0.0382 (0.3430)           0.3726 ± 0.0331 (0.3210)       0.3245
    a-words       0.3913 ± 0.0282 [0.0429] (0.3400)  0.3579 ± 0.0298 [0.0341] (0.2650)           0.3625 ± 0.0480 (0.1854)           0.3444 ± 0.0211 (0.3098)       0.3574
    cross(w, a)                     0.5380 ± 0.0189                    0.6545 ± 0.0079

    Seed 2, reference (package) against ours, across the 8 coefficients: Pearson 0.873, Spearman 0.333; reference / ours: median 2.52
    Seed 2, reference (reference) against ours, across the 8 coefficients: Pearson 0.911, Spearman 0.810; reference / ours: median 2.12
    Time per batch: ours 2.64 s (head: 10 L-BFGS iterations; per-sequence Fisher, 8 draws), reference 4.78 s (10 epochs of head fine-tuning; its 2 layouts from one pass)
    ours, seed 2: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (package), seed 2: rises with the concepts False (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (reference), seed 2: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False); cross(w, a) above both diversities True
    reference (wte only), seed 2: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False)
    reference (without wte), seed 2: rises with the concepts True (intervals apart: False), with the vocabulary False (intervals apart: False)
    Total 764 s
"""

# sphinx_gallery_thumbnail_path = "images/text_diversity.png"

import sys
import tempfile
import time
from pathlib import Path

import _common
import joblib
import numpy as np
import torch
from scipy import stats

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import markov_text_corpus, word_level_tokenizer
from sklearn_task2vec.distances import pairwise_task_distances
from sklearn_task2vec.diversity import (
    HEAD_EPOCHS,
    coefficient_from_embeddings,
    cross_diversity_coefficient,
    diversity_coefficient,
)

# The authors' recipe lives with the benchmarks, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reference_diversity import (  # noqa: E402
    FILTER_LAYOUTS,
    filter_layout,
    reference_batch_embedding,
    reference_distances,
    reference_stats,
)

CONCEPTS = (1, 2, 4, 8)
VOCABULARIES = (50, 200, 800)
BASE_VOCABULARY, BASE_CONCEPTS = 200, 4
#: Each concept's word usage (see markov_text_corpus): what a probe that has not learned the
#: chains' word order can tell the concepts apart by.
TOPIC_CONCENTRATION = 0.1
#: Batches of each corpus embedded a second time, under another random state: the noise floor.
FLOOR_BATCHES = 2


def concepts_corpus(n_concepts):
    return f"{n_concepts} concept{'s' * (n_concepts > 1)}"


def vocabulary_corpus(vocab_size):
    """The vocabulary sweep's corpus of ``vocab_size`` words (its base one is a concept one)."""
    return concepts_corpus(BASE_CONCEPTS) if vocab_size == BASE_VOCABULARY else f"{vocab_size} words"


#: The two corpora over disjoint vocabularies whose cross-diversity is measured.
CROSS = (concepts_corpus(BASE_CONCEPTS), "a-words")


def corpus_specs():
    """name -> markov_text_corpus arguments. The "w" corpora of one vocabulary share their
    chains (one random_state): adding concepts adds chains to the same ones."""
    specs = {concepts_corpus(k): {"n_concepts": k, "vocab_size": BASE_VOCABULARY} for k in CONCEPTS}
    for v in VOCABULARIES:
        specs.setdefault(vocabulary_corpus(v), {"n_concepts": BASE_CONCEPTS, "vocab_size": v})
    # The base corpus's sizes over other words, with chains of its own.
    specs["a-words"] = {"n_concepts": BASE_CONCEPTS, "vocab_size": BASE_VOCABULARY, "word_prefix": "a"}
    return specs


def make_corpora(n_texts, text_length, seed):
    """``(measured, training)``: per corpus, ``n_texts`` texts to measure and as many others
    (same chains) to train the probe on."""
    measured, training = {}, {}
    for name, spec in corpus_specs().items():
        texts = markov_text_corpus(
            **spec,
            n_texts=2 * n_texts,
            text_length=text_length,
            topic_concentration=TOPIC_CONCENTRATION,
            random_state=2 * seed + ("word_prefix" in spec),
        )
        measured[name], training[name] = texts[:n_texts], texts[n_texts:]
    return measured, training


def train_probe(tokenizer, texts, *, steps, batch_size, learning_rate=3e-3, seed=0):
    """A 2-layer GPT-2 trained for ``steps`` AdamW steps on ``texts`` (next-token loss)."""
    import transformers

    torch.manual_seed(seed)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=ids.shape[1],
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.GPT2LMHeadModel(config)
    labels = ids.masked_fill(mask == 0, -100)  # no loss on padding
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(len(ids), (batch_size,), generator=generator)
        loss = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.eval(), losses


def median_distance(first_rows, second_rows):
    """The median symmetric TASK2VEC distance between paired rows."""
    return float(
        np.median([pairwise_task_distances(np.stack([a, b]))[0, 1] for a, b in zip(first_rows, second_rows)])
    )


def ours_options(probe, tokenizer, args, seed):
    """The diversity functions' arguments for our coefficients of one draw of the corpora
    (``args``: ``batch_size``, ``n_batches``, ``label_draws``)."""
    return {
        "probe": probe,
        "tokenizer": tokenizer,
        "batch_size": args.batch_size,
        "n_batches": args.n_batches,
        "label_draws": args.label_draws,
        "random_state": seed,
        "device": "cpu",
    }


def ours_diversity(texts, options, memory=None):
    """``diversity_coefficient`` of one corpus (``options`` from :func:`ours_options`) and its
    noise floor: its first :data:`FLOOR_BATCHES` batches embedded again under another random
    state, the median distance to their first rows; and the seconds the coefficient took."""
    started = time.perf_counter()
    result = diversity_coefficient(texts, memory=memory, **options)
    seconds = time.perf_counter() - started
    again = FisherTaskEmbedder(
        options["probe"],
        tokenizer=options["tokenizer"],
        label_draws=options["label_draws"],
        random_state=options["random_state"] + 1,
        device=options["device"],
        head_epochs=HEAD_EPOCHS,
    ).fit_transform([([texts[i] for i in batch], None) for batch in result.batches[:FLOOR_BATCHES]])
    return result, median_distance(result.embeddings, again), seconds


def ours_diversities(measured, probe, tokenizer, args, seed):
    """``diversity_coefficient`` of each corpus, the cross-diversity of :data:`CROSS`, the noise
    floors and the seconds per batch (of the coefficients, without the floors).

    The embedder's ``memory`` is a fresh folder: one ``random_state`` gives a corpus the same
    batches, and a batch the same row, in every coefficient, so the cross-diversity reuses the
    rows of the two diversities instead of embedding their batches again.
    """
    options = ours_options(probe, tokenizer, args, seed)
    results, floors, seconds, n_rows = {}, {}, 0.0, 0
    with tempfile.TemporaryDirectory() as cache:
        for name, texts in measured.items():
            results[name], floors[name], took = ours_diversity(texts, options, memory=cache)
            seconds += took
            n_rows += args.n_batches
        cross = cross_diversity_coefficient(*(measured[name] for name in CROSS), memory=cache, **options)
    return results, cross, floors, seconds / n_rows


def reference_diversities(measured, batches, probe, tokenizer, args, seed):
    """The reference's rows of the same batches in each layout of ``args.reference_filters``
    (all from one fine-tuning and Fisher pass per batch), and per layout its coefficients
    (mean ± std, as the authors report them, and our jackknife interval of the same mean),
    cross-diversity, noise floors; the seconds per batch; for the authors' layout, the
    coefficients of its token-embedding block (``wte``, one value per token) alone and of the
    rest alone."""
    rng = np.random.default_rng(seed)
    layouts = list(args.reference_filters)

    def embed(texts, batch):
        # The mean of --reference-repeats rows of the batch, each under its own random state.
        repeats = [
            reference_batch_embedding(
                probe,
                tokenizer,
                [texts[i] for i in batch],
                epochs=args.reference_epochs,
                filters=layouts,
                random_state=int(rng.integers(2**31 - 1)),
            )
            for _ in range(args.reference_repeats)
        ]
        return [np.mean(rows, axis=0) for rows in zip(*repeats)]

    rows = {layout: {} for layout in layouts}
    floors = {layout: {} for layout in layouts}
    repeats = {layout: {} for layout in layouts}  # the floor batches' second rows
    seconds, n_rows = 0.0, 0
    for name, texts in measured.items():
        started = time.perf_counter()
        embedded = [embed(texts, batch) for batch in batches[name]]
        seconds += time.perf_counter() - started
        n_rows += len(batches[name])
        again = [embed(texts, batch) for batch in batches[name][:FLOOR_BATCHES]]
        for index, layout in enumerate(layouts):
            rows[layout][name] = np.array([row[index] for row in embedded])
            repeats[layout][name] = np.array([row[index] for row in again])
            floors[layout][name] = median_distance(rows[layout][name], repeats[layout][name])
    out = {"seconds": seconds / n_rows, "layouts": {}}
    for layout in layouts:
        out["layouts"][layout] = {
            "rows": rows[layout],
            "stats": {name: reference_stats(reference_distances(r)) for name, r in rows[layout].items()},
            "jackknife": {name: coefficient_from_embeddings(r) for name, r in rows[layout].items()},
            "cross": coefficient_from_embeddings(*(rows[layout][name] for name in CROSS)),
            "cross_stats": reference_stats(
                reference_distances(*(rows[layout][name] for name in CROSS)), within=False
            ),
            "floors": floors[layout],
        }
    if "reference" in layouts:
        # The token-embedding block (tied to the head) against the rest of the authors' layout.
        sizes = filter_layout(probe, "reference")
        assert sizes[0][0].endswith("wte"), sizes[0]
        tokens = sizes[0][1]
        columns = {"wte only": slice(None, tokens), "without wte": slice(tokens, None)}
        out["blocks"] = {
            block: {
                name: (
                    coefficient_from_embeddings(r[:, part]),
                    median_distance(r[:, part], repeats["reference"][name][:, part]),
                )
                for name, r in rows["reference"].items()
            }
            for block, part in columns.items()
        }
    return out


def half_width(result):
    low, high = result.confidence_interval
    return (high - low) / 2


def rises(values, intervals=None):
    """Whether ``values`` rise strictly; with ``intervals``, whether each one's interval lies
    wholly above the previous one's."""
    if intervals is None:
        return bool(np.all(np.diff(values) > 0))
    return all(high_before < low for (_, high_before), (low, _) in zip(intervals, intervals[1:]))


def plot(plt, runs, reference):
    """Ours for every corpus seed (one shade each) and the reference for the first, with their
    noise floors (dotted)."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    series = [
        (
            run["ours"],
            run["cross"],
            run["floors"],
            "o-",
            plt.cm.Blues(0.9 - 0.25 * index),
            f"ours, seed {seed}",
        )
        for index, (seed, run) in enumerate(runs.items())
    ]
    if reference is not None:
        for index, (layout, found) in enumerate(reference["layouts"].items()):
            series.append(
                (
                    found["results"],
                    found["cross"],
                    found["floors"],
                    "s--",
                    f"C{index + 1}",
                    f"reference, {layout}",
                )
            )

    def panel(axis, names, x, xlabel):
        for results, _, noise, style, color, label in series:
            values = np.array([results[name][0] for name in names])
            errors = np.array([results[name][1] for name in names])
            axis.errorbar(x, values, yerr=errors, fmt=style, color=color, capsize=3, label=label)
            axis.plot(x, [noise[name] for name in names], ":", color=color)
        axis.set_xscale("log", base=2)
        axis.set_xticks(x, [str(v) for v in x])
        axis.set_xlabel(xlabel)
        axis.set_ylabel("diversity coefficient")
        axis.set_ylim(bottom=0)

    panel(axes[0], [concepts_corpus(k) for k in CONCEPTS], CONCEPTS, "concepts")
    axes[0].set_title(f"{BASE_VOCABULARY} words (dotted: noise floors)")
    axes[0].legend(fontsize="small")
    panel(axes[1], [vocabulary_corpus(v) for v in VOCABULARIES], VOCABULARIES, "vocabulary size (words)")
    axes[1].set_title(f"{BASE_CONCEPTS} concepts")
    first, second = CROSS
    positions = np.arange(3)
    width = 0.8 / len(series)
    for index, (results, cross, _, _, color, label) in enumerate(series):
        values = [results[first][0], results[second][0], cross[0]]
        errors = [results[first][1], results[second][1], cross[1]]
        offset = (index - (len(series) - 1) / 2) * width
        axes[2].bar(positions + offset, values, width, yerr=errors, capsize=2, color=color, label=label)
    axes[2].set_xticks(positions, ["div(w)", "div(a)", "cross(w, a)"])
    axes[2].set_title(f"disjoint vocabularies ({BASE_CONCEPTS} concepts, {BASE_VOCABULARY} words each)")
    axes[2].legend(fontsize="small")
    figure.tight_layout()
    return figure


def run_seed(args, seed, with_reference):
    """One draw of the corpora (``seed``): their probe, our coefficients and floors, and, with
    ``with_reference``, the reference's on the same batches. Runs in a worker process with
    ``--n-jobs``: sets its own thread count."""
    torch.set_num_threads(args.threads)
    measured, training = make_corpora(args.n_texts, args.text_length, seed)
    tokenizer = word_level_tokenizer([text for texts in measured.values() for text in texts])
    started = time.perf_counter()
    mixture = [text for texts in training.values() for text in texts]
    probe, losses = train_probe(
        tokenizer, mixture, steps=args.train_steps, batch_size=args.train_batch_size, seed=seed
    )
    print(
        f"Seed {seed}: {len(tokenizer)} tokens; probe trained {args.train_steps} steps of "
        f"{args.train_batch_size} texts on {len(mixture)} other texts of the corpora: loss "
        f"{np.mean(losses[:10]):.2f} -> {np.mean(losses[-20:]):.2f} nats (uniform: "
        f"{np.log(len(tokenizer)):.2f}) in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    ours, cross, floors, seconds = ours_diversities(measured, probe, tokenizer, args, seed)
    run = {
        "ours": {name: (result.coefficient, half_width(result)) for name, result in ours.items()},
        "intervals": {name: result.confidence_interval for name, result in ours.items()},
        "cross": (cross.coefficient, half_width(cross)),
        "floors": floors,
        "seconds": seconds,
    }
    if not with_reference:
        return run, None
    batches = {name: result.batches for name, result in ours.items()}
    computed = reference_diversities(measured, batches, probe, tokenizer, args, seed)
    reference = {"seconds": computed["seconds"], "layouts": {}, "blocks": {}}
    for layout, found in computed["layouts"].items():
        reference["layouts"][layout] = {
            "results": {name: (r.coefficient, half_width(r)) for name, r in found["jackknife"].items()},
            "intervals": {name: r.confidence_interval for name, r in found["jackknife"].items()},
            "std": {name: std for name, (_, std) in found["stats"].items()},
            "cross": (found["cross"].coefficient, half_width(found["cross"])),
            "floors": found["floors"],
        }
        if layout == "package":  # the same filters as ours: the two estimators' rows compared
            reference["ours_vs_reference"] = {
                name: median_distance(result.embeddings, found["rows"][name]) for name, result in ours.items()
            }
    for block, found in computed.get("blocks", {}).items():
        reference["blocks"][block] = {
            "results": {name: (r.coefficient, half_width(r)) for name, (r, _) in found.items()},
            "intervals": {name: r.confidence_interval for name, (r, _) in found.items()},
            "floors": {name: floor for name, (_, floor) in found.items()},
        }
    return run, reference


def report(args, runs, reference):
    seeds = list(runs)
    names = list(corpus_specs())
    print()
    print(
        f"Diversity coefficient, {args.n_batches} batches of {args.batch_size} texts of "
        f"{args.text_length} words per corpus"
    )
    print(
        f"  ours: mean distance between batches ± jackknife 95% half-width (per-sequence Fisher, eval "
        f"mode, {args.label_draws} label draws per token); (floor)"
    )
    print(
        f"  floor: median distance between two rows of one batch under two random states ({FLOOR_BATCHES} "
        "batches)"
    )
    header = f"{'corpus':<12}" + "".join(f" {'ours, seed ' + str(seed):>25}" for seed in seeds)
    print(header)
    print("-" * len(header))
    for name in [*names, "cross(w, a)"]:
        line = f"{name:<12}"
        for seed in seeds:
            run = runs[seed]
            if name in run["ours"]:
                value, error = run["ours"][name]
                line += f"  {value:.4f} ± {error:.4f} ({run['floors'][name]:.4f})"
            else:
                line += f"  {run['cross'][0]:.4f} ± {run['cross'][1]:.4f}"
        print(line.rstrip())
    print()
    if reference is not None:
        reference_table(args, reference, names, seeds[0])
        for layout, found in reference["layouts"].items():
            agreement(runs[seeds[0]], found, names, seeds[0], layout)
    seconds = np.mean([run["seconds"] for run in runs.values()])
    print(
        f"Time per batch: ours {seconds:.2f} s (head: {HEAD_EPOCHS} L-BFGS iterations; per-sequence Fisher, "
        f"{args.label_draws} draws)"
        + (
            ""
            if reference is None
            else f", reference {reference['seconds']:.2f} s ({args.reference_epochs} epochs of head "
            f"fine-tuning; its {len(reference['layouts'])} layouts from one pass"
            + (f"; {args.reference_repeats} passes" if args.reference_repeats > 1 else "")
            + ")"
        )
    )
    for seed, run in runs.items():
        print(checks(f"ours, seed {seed}", run["ours"], run["intervals"], run["cross"]))
    if reference is None:
        return
    for layout, found in reference["layouts"].items():
        print(
            checks(
                f"reference ({layout}), seed {seeds[0]}", found["results"], found["intervals"], found["cross"]
            )
        )
    for block, found in reference["blocks"].items():
        print(checks(f"reference ({block}), seed {seeds[0]}", found["results"], found["intervals"], None))


def checks(label, results, intervals, cross):
    """One line: the rises with the concepts and the vocabulary (and whether neighbouring
    intervals are apart), and whether the cross-diversity exceeds both diversities."""
    concepts = [concepts_corpus(k) for k in CONCEPTS]
    vocabularies = [vocabulary_corpus(v) for v in VOCABULARIES]
    values = {name: value for name, (value, _) in results.items()}
    line = (
        f"{label}: rises with the concepts {rises([values[n] for n in concepts])} (intervals apart: "
        f"{rises(None, [intervals[n] for n in concepts])}), with the vocabulary "
        f"{rises([values[n] for n in vocabularies])} (intervals apart: "
        f"{rises(None, [intervals[n] for n in vocabularies])})"
    )
    if cross is not None:
        line += f"; cross(w, a) above both diversities {bool(cross[0] > max(values[n] for n in CROSS))}"
    return line


def reference_table(args, reference, names, seed):
    """The reference's coefficients of the first seed's batches, per layout and block."""
    print(
        f"Reference estimator (seed {seed}, the same batches; batch-mean gradient, train mode, head fine-tuned "
        f"{args.reference_epochs} epochs"
        + (
            f"; each row the mean of {args.reference_repeats} under random states of their own"
            if args.reference_repeats > 1
            else ""
        )
        + "): mean distance ± jackknife 95% half-width [the authors' ± std] (floor)"
    )
    print(
        "  layouts: package = our filters (Conv1D per output unit); reference = the authors' (wte per "
        "token, wpe, LayerNorms, Conv1D per input unit); blocks of the authors' layout: its wte "
        "coordinates alone, the rest alone"
    )
    columns = list(reference["layouts"]) + list(reference["blocks"])
    header = f"{'corpus':<12}" + "".join(f" {column:>34}" for column in columns)
    if "ours_vs_reference" in reference:
        print(
            "  ours-vs-ref: median symmetric distance between our row and the package-layout reference row of a batch"
        )
        header += f" {'ours-vs-ref':>12}"
    print(header)
    print("-" * len(header))
    for name in [*names, "cross(w, a)"]:
        line = f"{name:<12}"
        for found in reference["layouts"].values():
            if name in found["results"]:
                value, error = found["results"][name]
                cell = f"{value:.4f} ± {error:.4f} [{found['std'][name]:.4f}] ({found['floors'][name]:.4f})"
            else:
                cell = f"{found['cross'][0]:.4f} ± {found['cross'][1]:.4f}"
            line += f" {cell:>34}"
        for found in reference["blocks"].values():
            cell = (
                f"{found['results'][name][0]:.4f} ± {found['results'][name][1]:.4f} "
                f"({found['floors'][name]:.4f})"
                if name in found["results"]
                else ""
            )
            line += f" {cell:>34}"
        if "ours_vs_reference" in reference and name in reference["ours_vs_reference"]:
            line += f" {reference['ours_vs_reference'][name]:>12.4f}"
        print(line.rstrip())
    print()


def agreement(first, found, names, seed, layout):
    """How the two estimators' coefficients of one draw of the corpora agree."""
    ours_values = [first["ours"][name][0] for name in names] + [first["cross"][0]]
    reference_values = [found["results"][name][0] for name in names] + [found["cross"][0]]
    print(
        f"Seed {seed}, reference ({layout}) against ours, across the {len(ours_values)} coefficients: Pearson "
        f"{stats.pearsonr(ours_values, reference_values)[0]:.3f}, Spearman "
        f"{stats.spearmanr(ours_values, reference_values)[0]:.3f}; reference / ours: median "
        f"{np.median(np.divide(reference_values, ours_values)):.2f}"
    )


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=512, help="texts measured per corpus (default 512)")
    parser.add_argument("--text-length", type=int, default=124, help="words per text (default 124)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts per batch (default 8)")
    parser.add_argument("--n-batches", type=int, default=12, help="batches per corpus (default 12)")
    parser.add_argument("--label-draws", type=int, default=8, help="Monte Carlo labels per token (default 8)")
    parser.add_argument("--n-seeds", type=int, default=3, help="draws of the corpora (default 3)")
    parser.add_argument("--train-steps", type=int, default=300, help="probe training steps (default 300)")
    parser.add_argument(
        "--train-batch-size", type=int, default=8, help="texts per probe training step (default 8)"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference estimator (the slowest part)"
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="draws of the corpora computed in parallel processes (default 1)",
    )
    parser.add_argument(
        "--reference-filters",
        nargs="+",
        choices=FILTER_LAYOUTS,
        default=list(FILTER_LAYOUTS),
        help="the reference's filter layouts, all from one pass (default: both)",
    )
    parser.add_argument(
        "--reference-repeats",
        type=int,
        default=1,
        help="the reference's rows of a batch averaged over this many random states, to lower its "
        "noise floor (default 1, the authors' recipe)",
    )
    parser.add_argument(
        "--reference-epochs",
        type=int,
        default=10,
        help="the reference's head fine-tuning epochs (default 10)",
    )
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    start = time.perf_counter()
    print(
        f"{len(corpus_specs())} corpora of {args.n_texts} texts of {args.text_length} words "
        f"(topic_concentration={TOPIC_CONCENTRATION}) per seed"
    )
    seeds = range(args.seed, args.seed + args.n_seeds)
    # The reference runs on the first draw only.
    done = joblib.Parallel(n_jobs=args.n_jobs)(
        joblib.delayed(run_seed)(args, seed, with_reference=seed == args.seed and not args.no_reference)
        for seed in seeds
    )
    runs = {seed: run for seed, (run, _) in zip(seeds, done)}
    reference = done[0][1]
    report(args, runs, reference)
    _common.savefig(plot, folder / "text_diversity.png", runs=runs, reference=reference)
    print(f"Total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
