#!/usr/bin/env bash
# What a session lent a GPU runs, in one device call of about eight minutes:
#     run(command="bash benchmarks/gpu_check.sh", timeout_s=560)
# First the CUDA path against the CPU (gpu_check.py), then the GPU figures for the README:
# the embedding's cost against a plain forward+backward (images; the variational estimator's
# default run, its seed agreement and a long run; the per-sequence Fisher of a GPT-2-small-shaped
# text probe, which needs transformers: carry its wheel if the image lacks it), and the
# task-discovery search one candidate at a time against batched (the search needs nevergrad, which the device image
# lacks: carry its wheels, or only taskness_score is timed). The log goes to
# $OUT/gpu_check.txt ($OUT: the device tool's output folder; the current folder without it).
set -u
out=${OUT:-.}
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$python" -c "import torch, sklearn; print('torch', torch.__version__, 'scikit-learn', sklearn.__version__)"
    timeout 90 "$python" -W ignore benchmarks/gpu_check.py
    timeout 110 "$python" benchmarks/bench_fisher_speed.py --device cuda --repeats 3
    timeout 110 "$python" benchmarks/bench_variational.py --device cuda --long-steps 64 --hessian-steps 100
    timeout 80 "$python" benchmarks/bench_text_fisher.py --device cuda --n-layer 12 --n-embd 768 --n-head 12 --lengths 128 512 --repeats 3
    timeout 130 "$python" benchmarks/bench_discovery.py --device cuda --n-candidates 256 --budget-one 24 --budget-batched 1024
} 2>&1 | tee "$out/gpu_check.txt"
