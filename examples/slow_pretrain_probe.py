"""
Pretrain the project's small probe on Fashion-MNIST
===================================================

The paper's probe is an ImageNet ResNet-34; at laptop scale, and with no download, the
slow_* examples use a small CNN (three conv+BN+ReLU blocks and a Linear: 28x28 grey images
-> 64 features, 176 filters) pretrained here for a couple of epochs with Adam on the
Fashion-MNIST ``t10k`` split, which the task libraries (drawn from the ``train`` split) never
use. The state_dict goes to ``<output-dir>/fashion_cnn_probe.pt``; the other scripts load it,
or run this training themselves when it is missing.

Run: ``python examples/slow_pretrain_probe.py [--epochs 2] [--n-examples 9000]``.

Not run by the documentation build (the file name starts with ``slow_``): the figure below is
the one stored in ``docs/images/``, from an earlier run of the script; the script writes its
own into ``<output-dir>``.

Run time: 12 s on a shared 2-core CPU machine, one thread (docs/paper.md, "Reproducing the
paper").

.. image:: /images/pretrain_probe.png
   :alt: The probe's training loss and held-out accuracy per epoch, and its first-layer filters
"""

# sphinx_gallery_thumbnail_path = "images/pretrain_probe.png"

import time

import _common
import numpy as np
import torch


def plot(plt, history, probe):
    figure, (curve, filters) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1, 1.4]})
    epochs = np.arange(1, len(history) + 1)
    curve.plot(epochs, [loss for loss, _ in history], "o-", label="training loss")
    curve.plot(epochs, [accuracy for _, accuracy in history], "s-", label="held-out accuracy")
    curve.set_xlabel("epoch")
    curve.set_xticks(epochs)
    curve.set_title("Pretraining on Fashion-MNIST t10k")
    curve.legend()
    weights = probe.features[0][0].weight.detach().numpy()[:, 0]  # 16 first-layer 3x3 filters
    grid = np.full((2 * 4 - 1, 8 * 4 - 1), np.nan)
    for index, kernel in enumerate(weights):
        row, column = divmod(index, 8)
        grid[row * 4 : row * 4 + 3, column * 4 : column * 4 + 3] = kernel
    filters.imshow(grid, cmap="RdBu_r")
    filters.set_axis_off()
    filters.set_title("First-layer filters (16 of 3x3)")
    figure.tight_layout()
    return figure


def main(argv=None):
    parser = _common.base_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of Adam (default 2)")
    parser.add_argument("--n-examples", type=int, default=9000, help="t10k images to train on (default 9000)")
    args = parser.parse_args(argv)
    folder = _common.output_dir(args)
    start = time.perf_counter()
    print("Pretraining the small CNN probe on Fashion-MNIST t10k (disjoint from the task libraries)")
    probe, history = _common.pretrain_probe(n_examples=args.n_examples, epochs=args.epochs, seed=args.seed)
    path = folder / _common.PROBE_FILE
    torch.save(probe.state_dict(), path)
    n_parameters = sum(parameter.numel() for parameter in probe.parameters())
    print(f"Saved {path} ({n_parameters} parameters) in {time.perf_counter() - start:.0f} s")
    print(f"Final held-out 10-class accuracy: {history[-1][1]:.3f}")
    _common.savefig(plot, folder / "pretrain_probe.png", history=history, probe=probe)


if __name__ == "__main__":
    main()
