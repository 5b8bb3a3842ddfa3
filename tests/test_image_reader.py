"""The one reader of image files (``datasets.read_image``) and the folders read through it.

Images of every PIL mode and bit depth are written here with PIL, in formats that keep the
mode; hidden and system entries of several kinds are planted in image folders. Every image that
the package reads from a file goes through ``read_image``: ``load_image_folder`` and the command
line are checked to use it.
"""

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis.extra import numpy as hnp
from PIL import Image

from sklearn_task2vec import FisherTaskEmbedder
from sklearn_task2vec.datasets import BACKGROUND, ImageTree, is_system_name, load_image_folder, read_image

RNG = np.random.RandomState(0)
RGB_PIXELS = RNG.randint(0, 256, size=(5, 6, 3), dtype=np.uint8)


def saved(image, path):
    image.save(path)
    return path


def scaled_to_eight_bits(values):
    """The documented scaling of 16-bit values: round(value * 255 / 65535)."""
    return np.floor(np.asarray(values, dtype=np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------- 8-bit modes
# Each mode in a format that keeps it (PIL reads HSV from no file format).
EIGHT_BIT = [("1", "png"), ("L", "png"), ("P", "png"), ("RGB", "png"), ("CMYK", "tiff"), ("CMYK", "jpg")]
EIGHT_BIT += [("YCbCr", "tiff"), ("LAB", "tiff"), ("L", "jpg"), ("RGB", "bmp"), ("P", "gif")]


@pytest.mark.parametrize("mode, suffix", EIGHT_BIT)
def test_eight_bit_modes_are_converted_with_pils_formula(tmp_path, mode, suffix):
    path = saved(Image.fromarray(RGB_PIXELS).convert(mode), tmp_path / f"image.{suffix}")
    with Image.open(path) as stored:
        assert stored.mode == mode  # the file keeps the mode under test
        expected = np.asarray(stored.convert("RGB"))
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (6, 5)
    np.testing.assert_array_equal(np.asarray(image), expected)


def test_rgb_files_are_read_unchanged(tmp_path):
    path = saved(Image.fromarray(RGB_PIXELS), tmp_path / "rgb.png")
    np.testing.assert_array_equal(np.asarray(read_image(path)), RGB_PIXELS)


# ------------------------------------------------------------------- transparency
# Three pixels of colour (200, 40, 10): transparent, half transparent, opaque.
COLOUR, ALPHAS = np.array([200, 40, 10]), np.array([0, 128, 255])


def with_alpha(mode):
    pixels = np.concatenate([np.tile(COLOUR, (1, 3, 1)), ALPHAS[None, :, None]], axis=2).astype(np.uint8)
    image = Image.fromarray(pixels, mode="RGBA")
    return image.convert("LA") if mode == "LA" else image.convert(mode) if mode == "PA" else image


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_is_composited_onto_white(tmp_path, mode):
    path = saved(with_alpha(mode), tmp_path / f"{mode}.{'tiff' if mode == 'PA' else 'png'}")
    with Image.open(path) as stored:
        assert stored.mode == mode
        colours = np.asarray(stored.convert("RGBA"))[0, :, :3].astype(float)
    read = np.asarray(read_image(path))[0].astype(float)
    alpha = ALPHAS[:, None] / 255
    np.testing.assert_allclose(read, alpha * colours + (1 - alpha) * np.array(BACKGROUND), atol=1)
    np.testing.assert_array_equal(read[0], BACKGROUND)  # not the colour stored under it


@pytest.mark.parametrize("mode", ["P", "L", "RGB"])
def test_a_transparent_colour_is_composited_onto_white(tmp_path, mode):
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # opaque white; the other pixels are the transparent colour
    image = Image.fromarray(pixels).convert(mode)
    transparent = {"P": image.getpixel((1, 1)), "L": 0, "RGB": (0, 0, 0)}[mode]
    image.save(tmp_path / "key.png", transparency=transparent)
    with Image.open(tmp_path / "key.png") as stored:
        assert stored.mode == mode and "transparency" in stored.info
    read = np.asarray(read_image(tmp_path / "key.png"))
    np.testing.assert_array_equal(read.reshape(-1, 3), np.full((4, 3), 255))  # black would be wrong


# ------------------------------------------------------------------- 16 bits
SIXTEEN_BIT_VALUES = np.array([[0, 1, 128, 255, 256, 1000], [4095, 30000, 32768, 60000, 65534, 65535]])


def sixteen_bit_file(values, path, mode):
    """``values`` saved as a 16-bit (or 32-bit) integer image of PIL ``mode``."""
    if mode == "I;16":
        image = Image.fromarray(np.asarray(values, dtype=np.uint16))
    elif mode == "I;16B":
        image = Image.fromarray(np.asarray(values, dtype=">u2"))
    else:
        image = Image.fromarray(np.asarray(values, dtype=np.int32), mode="I")
    image.save(path)
    with Image.open(path) as stored:
        assert stored.mode == mode, stored.mode
    return path


@pytest.mark.parametrize(
    "mode, suffix", [("I;16", "png"), ("I;16", "tiff"), ("I;16B", "tiff"), ("I", "tiff")]
)
def test_sixteen_bit_images_are_scaled_never_clipped(tmp_path, mode, suffix):
    path = sixteen_bit_file(SIXTEEN_BIT_VALUES, tmp_path / f"deep.{suffix}", mode)
    with Image.open(path) as stored:  # what PIL alone does: most pixels white
        assert (np.asarray(stored.convert("RGB")) == 255).mean() > 0.7
    read = np.asarray(read_image(path))
    assert read.shape == (2, 6, 3)
    for channel in range(3):
        np.testing.assert_array_equal(read[..., channel], scaled_to_eight_bits(SIXTEEN_BIT_VALUES))
    assert (read == 255).all(axis=2).sum() == 2  # only 65534 and 65535 are white, not 10 of 12
    np.testing.assert_array_equal(read[1, 2], [128, 128, 128])  # mid-range is mid-gray


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=8)))
def test_any_sixteen_bit_png_reads_back_as_its_scaled_values(tmp_path, values):
    path = tmp_path / "any.png"
    Image.fromarray(values).save(path)
    if values.max() <= 255:
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*would be black"):
            read_image(path)
        return
    read = np.asarray(read_image(path)).astype(np.float64) / 255
    assert np.all(np.abs(read - (values / 65535.0)[..., None]) <= 0.5 / 255 + 1e-12)
    np.testing.assert_array_equal(read[..., 0] * 255, scaled_to_eight_bits(values))


@pytest.mark.parametrize("mode, suffix", [("I;16", "png"), ("I;16B", "tiff"), ("I", "tiff")])
@pytest.mark.parametrize("high", [0, 1, 200, 255])
def test_a_sixteen_bit_image_within_eight_bit_values_is_refused_with_the_fix(tmp_path, mode, suffix, high):
    values = np.array([[0, high], [high // 2, high]])
    path = sixteen_bit_file(values, tmp_path / f"dark.{suffix}", mode)
    with pytest.raises(ValueError, match=re.escape(str(path))) as error:
        read_image(path)
    assert f"0-{high}" in str(error.value) and "save it as an 8-bit image" in str(error.value)


@pytest.mark.parametrize("values", [[[-1, 300]], [[0, 65536]], [[0, 2**31 - 1]]])
def test_integer_values_beyond_sixteen_bits_are_refused(tmp_path, values):
    path = sixteen_bit_file(values, tmp_path / "wide.tiff", "I")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*outside the 16-bit range"):
        read_image(path)


@pytest.mark.parametrize("values", [[[0.0, 0.5], [1.0, 0.25]], [[0.0, 200.0], [255.0, 17.5]]])
def test_floating_point_images_are_refused(tmp_path, values):
    path = saved(Image.fromarray(np.asarray(values, dtype=np.float32), mode="F"), tmp_path / "float.tiff")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*floating-point pixels"):
        read_image(path)


# ------------------------------------------------------------------- unreadable files
@pytest.mark.parametrize("pixels_over_limit", [1.5, 3.0])  # PIL warns below twice the limit, errs above
def test_decompression_bombs_are_refused_naming_the_file_and_the_limit(
    tmp_path, monkeypatch, pixels_over_limit
):
    path = saved(Image.fromarray(RGB_PIXELS), tmp_path / "bomb.png")
    limit = int(RGB_PIXELS.shape[0] * RGB_PIXELS.shape[1] / pixels_over_limit)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning of PIL's escapes
        with pytest.raises(ValueError, match=re.escape(str(path)) + ".*decompression bomb") as error:
            read_image(path)
    assert f"MAX_IMAGE_PIXELS = {limit}" in str(error.value) and "If you trust the file" in str(error.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the fix the message gives
    assert read_image(path).size == (6, 5)


@pytest.mark.parametrize(
    "damage",
    [
        lambda content: content[: len(content) // 2],  # truncated
        lambda content: content[:40],  # the header only
        lambda content: b"not an image at all",
        lambda content: b"",
        lambda content: content[:8] + bytes(len(content) - 8),  # a PNG signature, then zeros
    ],
    ids=["truncated", "header-only", "text", "empty", "zeros"],
)
@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_corrupt_files_are_refused_naming_the_file(tmp_path, damage, suffix):
    path = saved(
        Image.fromarray(RNG.randint(0, 256, size=(32, 32, 3), dtype=np.uint8)), tmp_path / f"x.{suffix}"
    )
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match="^" + re.escape(str(path)) + ": not a readable image"):
        read_image(path)


def test_a_missing_file_stays_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


# ------------------------------------------------------------------- folders
def class_folders(root, classes=("cats", "dogs"), per_class=2):
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            saved(Image.fromarray(RGB_PIXELS), root / label / f"{index}.png")
    return root


# Entries of operating systems and NAS boxes: (relative path, is a folder). Folders hold images,
# which must not be read either.
SYSTEM_ENTRIES = [
    (".thumbnails", True),
    ("@eaDir", True),
    ("__MACOSX", True),
    (".hidden_class", True),
    ("@Recycle", True),
    ("cats/@eaDir", True),
    ("cats/.thumbnails", True),
    ("dogs/sub/__MACOSX", True),
    (".DS_Store", False),
    ("Thumbs.db", False),
    ("cats/.DS_Store", False),
    ("cats/._0.png", False),  # a macOS resource fork with an image's name
    ("dogs/Thumbs.db", False),
    ("dogs/desktop.ini", False),
]


@pytest.mark.parametrize("entry, is_folder", SYSTEM_ENTRIES, ids=[entry for entry, _ in SYSTEM_ENTRIES])
def test_hidden_and_system_entries_are_skipped_and_named(tmp_path, entry, is_folder):
    root = class_folders(tmp_path / "task")
    target = root / entry
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_folder:
        class_folders(target, classes=("thumbs",))
    else:
        saved(Image.fromarray(RGB_PIXELS), target) if target.suffix == ".png" else target.write_bytes(b"\0")
    with pytest.warns(UserWarning, match=re.escape(f"{root}: skipped 1 hidden or system entry")) as caught:
        dataset = load_image_folder(root)
    assert entry in str(caught[0].message)
    assert dataset.classes == ["cats", "dogs"] and len(dataset) == 4
    assert dataset.skipped == [entry]
    assert not any(is_system_name(part) for path, _ in dataset.samples for part in path.split("/"))


def test_system_entries_at_every_level_are_listed_once(tmp_path):
    root = class_folders(tmp_path / "task")
    for entry, is_folder in SYSTEM_ENTRIES:
        if is_folder:
            class_folders(root / entry, classes=("a", "b"))
        else:
            (root / entry).parent.mkdir(parents=True, exist_ok=True)
            (root / entry).write_bytes(b"\0")
    with pytest.warns(UserWarning, match=f"skipped {len(SYSTEM_ENTRIES)} hidden or system entries"):
        dataset = load_image_folder(root)
    assert dataset.skipped == sorted(entry for entry, _ in SYSTEM_ENTRIES)
    assert dataset.classes == ["cats", "dogs"] and len(dataset) == 4


def test_a_clean_folder_gives_no_warning_and_reads_through_read_image(tmp_path):
    root = class_folders(tmp_path / "task")
    (root / "notes.txt").write_text("not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = load_image_folder(root)
    assert isinstance(dataset, ImageTree) and dataset.skipped == [] and dataset.unread == ["notes.txt"]
    assert ImageTree(root).loader is read_image  # the reader every folder uses


def test_an_embedded_folder_names_the_file_the_reader_refuses(tmp_path, monkeypatch):
    root = class_folders(tmp_path / "task")
    bomb = saved(Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)), root / "dogs" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    from torchvision import transforms

    dataset = load_image_folder(
        root, transform=transforms.Compose([transforms.Resize((8, 8)), transforms.ToTensor()])
    )
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten())
    embedder = FisherTaskEmbedder(probe=tiny, on_error="warn", batch_size=2, random_state=0)
    with pytest.warns(UserWarning, match="Task 0 failed"):
        embedder.fit_transform([dataset])
    message = str(embedder.errors_[0])
    assert (
        message.startswith("task 0: could not read example")
        and f"{bomb}: refused as a possible decompression bomb" in message
    )
