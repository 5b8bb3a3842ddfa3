"""The command line end to end: image folders and a table of errors to a saved selector and a
recommendation (`task2vec errors`, `fit-selector`, `recommend`), `task2vec help`, the kind check
of every file argument, unknown probes and --gray-to-rgb."""

import csv
import re
import sys

import joblib
import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn
from torchvision import transforms

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector, cli
from sklearn_task2vec.cli import main
from sklearn_task2vec.probes import build_named_probe
from sklearn_task2vec.zoo import Expert, error_matrix, load_expert, save_expert

pytestmark = pytest.mark.usefixtures("one_thread")

COMMANDS = ["embed", "distances", "recommend", "diversity", "fit-selector", "errors", "help"]


def run(capsys, *argv):
    status = main([str(argument) for argument in argv])
    out, err = capsys.readouterr()
    return status, out, err


def error_line(err):
    """The one error line of stderr (notes about the tasks read come before it)."""
    lines = [line for line in err.strip().splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------------------
# Tasks of 2-D features, their embeddings, and tables of errors
# --------------------------------------------------------------------------------------

TASKS = ["signs", "updown", "diagonal", "far"]
MODELS = ["small", "large", "wide"]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Four .npz tasks of 2-D features (and two more named as models, the tasks the models were
    trained on), embedded by the command line into .npz files and a raw .csv file."""
    root = tmp_path_factory.mktemp("selector")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    labels = {
        "signs": X[:, 0] > 0,
        "updown": X[:, 1] > 0,
        "diagonal": X[:, 0] + X[:, 2] > 0,
        "far": np.abs(X[:, 1]) > 1,
        "small": X[:, 2] > 0,
        "large": X[:, 0] - X[:, 1] > 0,
    }
    for name, y in labels.items():
        np.savez(root / f"{name}.npz", X=X, y=y)
    tasks = [root / f"{name}.npz" for name in TASKS]
    assert main(["embed", *map(str, tasks), "-o", str(root / "tasks.npz")]) == 0
    assert main(["embed", *map(str, tasks), "-o", str(root / "raw.csv")]) == 0
    models = [str(root / "small.npz"), str(root / "large.npz")]
    assert main(["embed", *models, "-o", str(root / "models.npz")]) == 0
    return root


ERRORS = np.array([[0.10, 0.30, 0.20], [0.40, 0.05, 0.20], [0.25, 0.25, 0.10], [0.50, 0.45, 0.60]])


def write_table(path, tasks, models, values, corner="dataset"):
    """A table of errors as a user writes it, with the csv module."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([corner, *models])
        for task, row in zip(tasks, values):
            writer.writerow([task, *row])
    return path


def stored(path):
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def python_selector(embeddings, errors, models, **params):
    """The selector fitted in Python, as fit-selector is documented to fit it."""
    arrays = stored(embeddings)
    selector = Model2VecSelector(
        trivial_embedding=arrays["trivial"],
        experts=models,
        provenance=cli._read_embeddings(embeddings).provenance,
        **params,
    )
    return selector.fit(arrays["embeddings"], np.array(models)[errors.argmin(axis=1)], errors=errors)


def assert_same_selector(saved, expected):
    assert saved.classes_.tolist() == expected.classes_.tolist()
    np.testing.assert_array_equal(saved.model_embeddings_, expected.model_embeddings_)
    assert saved.gamma_ == expected.gamma_ and saved.loss_ == expected.loss_
    assert saved.provenance_ == expected.provenance_


def test_fit_selector_is_the_python_selector_with_tasks_matched_by_name(embedded, tmp_path, capsys):
    order = [2, 0, 3, 1]  # the table's rows in another order than the embeddings'
    table = write_table(tmp_path / "errors.csv", [TASKS[i] for i in order], MODELS, ERRORS[order])
    output = tmp_path / "selector.joblib"
    options = ["--max-iter", 4, "--n-init", 2, "--alpha", 0.2, "--label-temperature", 5, "--random-state", 3]
    status, out, err = run(
        capsys, "fit-selector", embedded / "tasks.npz", "--errors", table, "-o", output, *options
    )
    assert status == 0, err
    expected = python_selector(
        embedded / "tasks.npz",
        ERRORS,
        MODELS,
        max_iter=4,
        n_init=2,
        alpha=0.2,
        label_temperature=5,
        random_state=3,
    )
    saved = joblib.load(output)
    assert_same_selector(saved, expected)
    chosen = [MODELS.index(model) for model in expected.predict(stored(embedded / "tasks.npz")["embeddings"])]
    assert (
        f"{ERRORS[np.arange(4), chosen].mean():.4g}, of the best ones {ERRORS.min(axis=1).mean():.4g}" in out
    )

    status, out, err = run(capsys, "recommend", output, embedded / "tasks.npz")
    assert status == 0, err
    recommended = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert [recommended[task] for task in TASKS] == [MODELS[column] for column in chosen]


def test_fit_selector_starts_from_model_embeddings_matched_by_model_name(embedded, tmp_path, capsys):
    table = write_table(tmp_path / "errors.csv", TASKS, MODELS[:2], ERRORS[:, :2])
    models = stored(embedded / "models.npz")
    argv = [
        "fit-selector",
        embedded / "tasks.npz",
        "--errors",
        table,
        "--model-embeddings",
        embedded / "models.npz",
    ]
    status, _, err = run(capsys, *argv, "--max-iter", 0, "-o", tmp_path / "plain.joblib")
    assert status == 0, err
    # models.npz holds "small" then "large": the selector's rows follow the table's columns.
    start = models["embeddings"][[0, 1]]
    expected = python_selector(
        embedded / "tasks.npz", ERRORS[:, :2], MODELS[:2], max_iter=0, model_embeddings=start
    )
    assert_same_selector(joblib.load(tmp_path / "plain.joblib"), expected)

    # A model without a row starts unknown (zeros) when trained, and is refused without training.
    table = write_table(tmp_path / "three.csv", TASKS, MODELS, ERRORS)
    argv[3] = table
    status, _, err = run(capsys, *argv, "--max-iter", 0, "-o", tmp_path / "refused.joblib")
    assert status == 1 and not (tmp_path / "refused.joblib").exists()
    assert "has no row for wide; --max-iter 0" in error_line(err)
    status, _, err = run(capsys, *argv, "--max-iter", 2, "--n-init", 1, "-o", tmp_path / "trained.joblib")
    assert status == 0 and "no row for wide; it starts as unknown (zeros)" in err
    start = np.vstack([models["embeddings"], np.zeros(models["embeddings"].shape[1])])
    expected = python_selector(
        embedded / "tasks.npz", ERRORS, MODELS, max_iter=2, n_init=1, random_state=0, model_embeddings=start
    )
    assert_same_selector(joblib.load(tmp_path / "trained.joblib"), expected)

    # A row named as no model is a mistake (a typo), refused naming it.
    write_table(tmp_path / "renamed.csv", TASKS, ["small", "big"], ERRORS[:, :2])
    argv[3] = tmp_path / "renamed.csv"
    status, _, err = run(capsys, *argv, "-o", tmp_path / "typo.joblib")
    assert status == 1 and "large is not a model of --errors" in error_line(err)


def test_fit_selector_refuses_tasks_in_one_file_only_naming_them(embedded, tmp_path, capsys):
    short = write_table(tmp_path / "short.csv", TASKS[:3], MODELS, ERRORS[:3])
    status, _, err = run(
        capsys, "fit-selector", embedded / "tasks.npz", "--errors", short, "-o", tmp_path / "s.joblib"
    )
    assert status == 1
    assert f"far of {embedded / 'tasks.npz'} has no row in {short}" in error_line(err)
    extra = write_table(tmp_path / "extra.csv", [*TASKS, "moon"], MODELS, np.vstack([ERRORS, ERRORS[:1]]))
    status, _, err = run(
        capsys, "fit-selector", embedded / "tasks.npz", "--errors", extra, "-o", tmp_path / "s.joblib"
    )
    assert status == 1 and f"moon of {extra} has no row in {embedded / 'tasks.npz'}" in error_line(err)
    assert not (tmp_path / "s.joblib").exists()


def test_fit_selector_usage_and_data_errors(embedded, tmp_path, capsys):
    table = write_table(tmp_path / "errors.csv", TASKS, MODELS, ERRORS)
    argv = ["fit-selector", embedded / "tasks.npz", "--errors", table, "-o"]
    status, _, err = run(capsys, *argv, tmp_path / "s.joblib", "--max-iter", 0)
    assert status == 2 and "--max-iter 0 (the plain asymmetric TASK2VEC selector" in error_line(err)
    status, _, err = run(capsys, *argv, tmp_path / "s.pkl")
    assert status == 2 and "must end in .joblib" in error_line(err)
    for option, value, fragment in [
        ("--alpha", "inf", "must be finite"),
        ("--alpha", "-0.1", "must be >= 0"),
        ("--label-temperature", "nan", "must be >= 0"),
        ("--max-iter", "-1", "must be >= 0"),
        ("--n-init", "0", "must be >= 1"),
    ]:
        status, _, err = run(capsys, *argv, tmp_path / "s.joblib", option, value)
        assert status == 2 and fragment in err.splitlines()[-1] and "Traceback" not in err
    # A .csv file of raw rows has no trivial embedding, which the selector's distance needs.
    status, _, err = run(
        capsys, "fit-selector", embedded / "raw.csv", "--errors", table, "-o", tmp_path / "s.joblib"
    )
    assert status == 1 and "the selector's asymmetric distance needs the trivial embedding" in error_line(err)
    assert not (tmp_path / "s.joblib").exists()


def test_fit_selector_never_replaces_a_file_without_overwrite(embedded, tmp_path, capsys):
    table = write_table(tmp_path / "errors.csv", TASKS, MODELS, ERRORS)
    output = tmp_path / "selector.joblib"
    output.write_bytes(b"precious")
    argv = [
        "fit-selector",
        embedded / "tasks.npz",
        "--errors",
        table,
        "-o",
        output,
        "--max-iter",
        1,
        "--n-init",
        1,
    ]
    status, _, err = run(capsys, *argv)
    assert status == 2 and output.read_bytes() == b"precious"
    assert "the file exists; pass --overwrite" in error_line(err)
    assert run(capsys, *argv, "--overwrite")[0] == 0
    assert isinstance(joblib.load(output), Model2VecSelector)


# --------------------------------------------------------------------------------------
# Tables of errors: written exactly, read back exactly, every bad cell named
# --------------------------------------------------------------------------------------

TRICKY = ["=SUM(A1)", "'", "''x", "-3", "@x", "a,b", 'say "hi"', "two\nlines", " padded ", "ünïcode"]
names = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1).filter(str.strip))
errors = st.floats(min_value=0, allow_infinity=False, allow_nan=False, width=64)


@st.composite
def tables(draw):
    tasks = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    models = draw(st.lists(names, min_size=2, max_size=4, unique=True))
    values = draw(
        st.lists(
            st.lists(errors, min_size=len(models), max_size=len(models)),
            min_size=len(tasks),
            max_size=len(tasks),
        )
    )
    return tasks, models, np.array(values, dtype=np.float64)


@settings(max_examples=100, deadline=None)
@given(table=tables())
def test_a_table_of_errors_reads_back_exactly_as_written(tmp_path_factory, table):
    tasks, models, values = table
    path = tmp_path_factory.mktemp("table") / "errors.csv"
    cli._write_errors(path, tasks, models, values, overwrite=False)
    read = cli._read_errors(path)
    assert read.tasks == tasks and read.models == models
    np.testing.assert_array_equal(read.values, values)  # repr() of a float is exact
    assert cli._file_kind(path) == "errors"


BAD_CELLS = {
    "": "is missing",
    "  ": "is missing",
    "nan": "not a finite number",
    "inf": "not a finite number",
    "-inf": "not a finite number",
    "1e400": "not a finite number",
    "-0.5": "is negative",
    "-1e-300": "is negative",
    "0.1.2": "is not a number",
    "ten": "is not a number",
}


@settings(max_examples=100, deadline=None)
@given(table=tables(), data=st.data(), cell=st.sampled_from(sorted(BAD_CELLS)))
def test_every_bad_error_is_refused_naming_its_task_and_model(tmp_path_factory, table, data, cell):
    tasks, models, values = table
    row = data.draw(st.integers(0, len(tasks) - 1))
    column = data.draw(st.integers(0, len(models) - 1))
    cells = [[repr(float(value)) for value in line] for line in values]
    cells[row][column] = cell
    path = write_table(
        tmp_path_factory.mktemp("bad") / "errors.csv",
        [cli._csv_name(task) for task in tasks],
        [cli._csv_name(model) for model in models],
        cells,
    )
    with pytest.raises(cli.DataError) as caught:
        cli._read_errors(path)
    message = str(caught.value)
    assert f"task {tasks[row]!r}, model {models[column]!r}: the error" in message
    assert BAD_CELLS[cell] in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("task,a\nt,0.1\n", "has 1 model column"),
        ("task,a,a\nt,0.1,0.2\n", "model 'a' appears more than once"),
        ("task,a,\nt,0.1,0.2\n", "column 3 of the header has no model name"),
        ("task,a,b\nt,0.1,0.2\nt,0.3,0.4\n", "task 't' appears more than once"),
        ("task,a,b\nt,0.1\n", "line 2: task 't' has 1 errors for 2 models"),
        ("task,a,b\n,0.1,0.2\n", "line 2: the row has no task name"),
        ("task,a,b\n", "expected a header"),
    ],
)
def test_a_malformed_table_is_refused_naming_what_is_wrong(tmp_path, text, fragment):
    (tmp_path / "errors.csv").write_text(text)
    with pytest.raises(cli.DataError, match=re.escape(fragment)):
        cli._read_errors(tmp_path / "errors.csv")


# --------------------------------------------------------------------------------------
# Image folders and saved experts to a recommendation, by the command line alone
# --------------------------------------------------------------------------------------

IMAGE_TASKS = ["reds", "greens", "blues"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Three image-folder tasks (two classes of four small images each, the class in one
    colour channel) and two experts saved with save_expert (random ShuffleNets)."""
    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.RandomState(0)
    for channel, task in enumerate(IMAGE_TASKS):
        for label in ("dark", "light"):
            (root / task / label).mkdir(parents=True)
            for index in range(4):
                pixels = rng.randint(0, 256, size=(12, 12, 3)).astype(np.uint8)
                pixels[..., channel] = 40 if label == "dark" else 215
                Image.fromarray(pixels).save(root / task / label / f"{index}.png")
    experts = []
    for seed in (1, 2):
        module = build_named_probe("shufflenet_v2_x0_5", None, seed)
        expert = Expert(module, f"net{seed}", architecture="shufflenet_v2_x0_5")
        experts.append(save_expert(expert, root / "experts" / f"net{seed}"))
    return root, experts


def image_folders(root, size):
    transform = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    return [torchvision.datasets.ImageFolder(root / task, transform=transform) for task in IMAGE_TASKS]


@pytest.mark.slow
def test_image_folders_and_experts_to_a_recommendation_by_the_command_line_alone(zoo, tmp_path, capsys):
    root, experts = zoo
    folders = [root / task for task in IMAGE_TASKS]
    embeddings, table, selector = (
        tmp_path / "tasks.npz",
        tmp_path / "errors.csv",
        tmp_path / "selector.joblib",
    )
    probe = ["--probe", "resnet18", "--probe-weights", "none", "--image-size", 16]
    status, _, err = run(capsys, "embed", *folders, *probe, "-o", embeddings)
    assert status == 0, err
    cache = tmp_path / "features"
    argv = ["errors", *folders, "--experts", *experts, "--image-size", 16, "--cache", cache]
    status, out, err = run(capsys, *argv, "-o", table)
    assert status == 0, err
    assert any(cache.rglob("*.npz"))  # each (expert, task)'s features, for a rerun
    assert out == f"Wrote the errors of 2 experts on 3 tasks to {table}.\n"
    assert "task2vec errors: " + str(folders[0]) + ": 2 classes, 8 images" in err
    # The table is zoo.error_matrix of the loaded experts on the same images, exactly.
    expected = error_matrix(
        [load_expert(folder) for folder in experts], image_folders(root, 16), random_state=0
    )
    read = cli._read_errors(table)
    assert read.tasks == IMAGE_TASKS and read.models == ["net1", "net2"]
    np.testing.assert_array_equal(read.values, expected)

    status, _, err = run(
        capsys, "fit-selector", embeddings, "--errors", table, "-o", selector, "--max-iter", 3, "--n-init", 2
    )
    assert status == 0, err
    python = python_selector(embeddings, expected, ["net1", "net2"], max_iter=3, n_init=2, random_state=0)
    assert_same_selector(joblib.load(selector), python)
    status, out, err = run(capsys, "recommend", selector, embeddings)
    assert status == 0, err
    recommended = [line.split()[1] for line in out.splitlines()[1:]]
    assert recommended == python.predict(stored(embeddings)["embeddings"]).tolist()


def test_errors_refuses_two_experts_of_one_name_and_text_tasks(zoo, tmp_path, capsys):
    root, experts = zoo
    (tmp_path / "texts" / "a").mkdir(parents=True)
    (tmp_path / "texts" / "a" / "1.txt").write_text("a text")
    status, _, err = run(
        capsys, "errors", tmp_path / "texts", "--experts", experts[0], "-o", tmp_path / "e.csv"
    )
    assert status == 2 and "is a text task; the experts take images or arrays" in error_line(err)
    np.savez(tmp_path / "flat.npz", X=np.zeros((8, 3, 8, 8), np.float32), y=np.arange(8) % 2)
    twice = ["--experts", experts[0], experts[0]]
    status, _, err = run(capsys, "errors", tmp_path / "flat.npz", *twice, "-o", tmp_path / "e.csv")
    assert status == 1 and "both experts are named 'net1'" in error_line(err)
    assert not (tmp_path / "e.csv").exists()


# --------------------------------------------------------------------------------------
# One-channel images: --gray-to-rgb, and the error that suggests it
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    root = tmp_path_factory.mktemp("gray")
    X = np.random.RandomState(0).uniform(size=(8, 1, 8, 8)).astype(np.float32)
    y = np.arange(8) % 2
    np.savez(root / "gray.npz", X=X, y=y)
    return root / "gray.npz", X, y


def test_gray_npz_images_need_gray_to_rgb_and_the_error_says_so(gray, tmp_path, capsys):
    path, X, y = gray
    argv = ["embed", path, "--probe", "resnet18", "--probe-weights", "none"]
    status, _, err = run(capsys, *argv, "-o", tmp_path / "refused.npz")
    assert status == 1 and not (tmp_path / "refused.npz").exists()
    line = error_line(err)
    assert "takes 3-channel images, but the examples have 1 channel" in line
    assert "pass --gray-to-rgb to repeat the gray channel in three" in line and "to_rgb(" not in line

    status, _, err = run(capsys, *argv, "--gray-to-rgb", "-o", tmp_path / "e.npz")
    assert status == 0 and f"{path}: its one-channel images repeated in 3 channels (--gray-to-rgb)." in err
    expected = FisherTaskEmbedder(probe="resnet18", probe_weights=None, random_state=0).fit_transform(
        [(np.repeat(X, 3, axis=1), y)]
    )
    np.testing.assert_array_equal(stored(tmp_path / "e.npz")["embeddings"], expected)


def test_errors_of_gray_images_need_gray_to_rgb_too(zoo, gray, tmp_path, capsys):
    _, experts = zoo
    path, X, y = gray
    argv = ["errors", path, "--experts", *experts]
    status, _, err = run(capsys, *argv, "-o", tmp_path / "refused.csv")
    assert status == 1 and "pass --gray-to-rgb to repeat the gray channel in three" in error_line(err)
    status, _, err = run(capsys, *argv, "--gray-to-rgb", "-o", tmp_path / "e.csv")
    assert status == 0, err
    expected = error_matrix(
        [load_expert(folder) for folder in experts], [(np.repeat(X, 3, axis=1), y)], random_state=0
    )
    np.testing.assert_array_equal(cli._read_errors(tmp_path / "e.csv").values, expected)


# --------------------------------------------------------------------------------------
# help, unknown probes
# --------------------------------------------------------------------------------------


def test_help_is_a_command_for_the_program_and_each_command(capsys):
    status, out, _ = run(capsys, "help")
    assert status == 0 and out == run(capsys, "--help")[1]
    listed = re.findall(r"^    (\S+)", out, flags=re.MULTILINE)
    assert listed == COMMANDS
    for command in COMMANDS[:-1]:
        status, out, _ = run(capsys, "help", command)
        assert status == 0 and out == run(capsys, command, "--help")[1]
    status, _, err = run(capsys, "help", "frobnicate")
    assert status == 2 and "invalid choice: 'frobnicate'" in err


def test_an_unknown_probe_or_architecture_is_a_usage_error_before_any_work(
    gray, zoo, tmp_path, capsys, monkeypatch
):
    path, _, _ = gray
    _, experts = zoo
    status, _, err = run(capsys, "embed", path, "--probe", "resnet19", "-o", tmp_path / "e.csv")
    assert status == 2 and "--probe resnet19: Unknown probe 'resnet19'" in error_line(err)
    missing = tmp_path / "missing.onnx"
    status, _, err = run(capsys, "embed", path, "--probe", missing, "-o", tmp_path / "e.csv")
    assert status == 2 and f"Probe '{missing}': no such ONNX file" in error_line(err)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    status, _, err = run(capsys, "embed", path, "--probe", "timm:tiny", "-o", tmp_path / "e.csv")
    assert status == 2 and "needs timm: pip install" in error_line(err)
    status, _, err = run(
        capsys, "errors", path, "--experts", *experts, "--architecture", "resnet19", "-o", tmp_path / "e.csv"
    )
    assert status == 2 and "--architecture resnet19: Unknown probe" in error_line(err)
    assert not (tmp_path / "e.csv").exists()


# --------------------------------------------------------------------------------------
# Every command's file arguments, given every kind of file
# --------------------------------------------------------------------------------------

# What a message calls each kind of file (the test's own words for it).
KIND_WORDS = {
    "selector": "is a joblib file (a saved selector)",
    "weights": "is a torch file of weights",
    "embeddings.npz": "is a file of embeddings",
    "embeddings.csv": "is a file of embeddings",
    "table": "is a CSV table of numbers with a `task` column",
    "errors": "is a table of errors",
    "distances": "is a matrix of distances",
    "task": "is a task (an .npz file of arrays X and y)",
    "texts": "is a .jsonl file of texts",
    "expert": "is an expert folder",
    "folder": "is a folder,",
}


@pytest.fixture(scope="module")
def samples(embedded, tmp_path_factory):
    """One file (or folder) of each kind the command line tells apart."""
    root = tmp_path_factory.mktemp("kinds")
    rows = stored(embedded / "tasks.npz")["embeddings"]
    selector = Model2VecSelector(max_iter=0, model_embeddings=rows[:2]).fit(rows, [0, 1, 0, 1])
    joblib.dump(selector, root / "selector.joblib")
    torch.save(nn.Linear(2, 2).state_dict(), root / "weights.pt")
    assert main(["embed", str(embedded / "signs.npz"), "-o", str(root / "embeddings.csv")]) == 0
    assert main(["distances", str(embedded / "tasks.npz"), "-o", str(root / "distances.csv")]) == 0
    (root / "table.csv").write_text("task,small,large\nsigns,0.1,0.2\n")
    write_table(root / "errors.csv", TASKS, MODELS, ERRORS)
    (root / "texts.jsonl").write_text('{"text": "a text", "label": 1}\n')
    save_expert(Expert(nn.Linear(2, 3), "linear"), root / "expert")
    (root / "folder").mkdir()
    paths = {
        "selector": root / "selector.joblib",
        "weights": root / "weights.pt",
        "embeddings.npz": embedded / "tasks.npz",
        "embeddings.csv": root / "embeddings.csv",
        "table": root / "table.csv",
        "errors": root / "errors.csv",
        "distances": root / "distances.csv",
        "task": embedded / "signs.npz",
        "texts": root / "texts.jsonl",
        "expert": root / "expert",
        "folder": root / "folder",
    }
    assert set(paths) == set(KIND_WORDS)
    return paths


EMBEDDINGS = {"embeddings.npz", "embeddings.csv", "table"}
# (command, argument, the kinds it takes, its arguments with {} where the file goes). Every run
# with a kind it takes goes on to an output in a missing folder (or another usage error checked
# after the inputs): which proves the input was let through.
ARGUMENTS = [
    ("embed", "TASK", {"task", "texts", "folder"}, ["embed", "{}", "-o", "{nowhere}/e.csv"]),
    (
        "embed",
        "--probe-weights",
        {"weights"},
        ["embed", "{task}", "--probe-weights", "{}", "-o", "{nowhere}/e.csv"],
    ),
    ("embed", "--memory", {"folder"}, ["embed", "{task}", "--memory", "{}", "-o", "{nowhere}/e.csv"]),
    ("embed", "--tokenizer", {"folder"}, ["embed", "{task}", "--tokenizer", "{}", "-o", "{nowhere}/e.csv"]),
    ("distances", "EMBEDDINGS", EMBEDDINGS, ["distances", "{}", "-o", "{nowhere}/d.csv"]),
    ("recommend", "SELECTOR", {"selector"}, ["recommend", "{}", "{embeddings}", "--top", "0"]),
    ("recommend", "EMBEDDINGS", EMBEDDINGS, ["recommend", "{selector}", "{}", "--top", "0"]),
    ("diversity", "CORPUS", {"texts"}, ["diversity", "{}", "--probe", "gpt2"]),
    ("diversity", "OTHER", {"texts"}, ["diversity", "{texts}", "{}", "--probe", "gpt2"]),
    ("diversity", "--memory", {"folder"}, ["diversity", "{texts}", "--memory", "{}", "--probe", "gpt2"]),
    (
        "diversity",
        "--tokenizer",
        {"folder"},
        ["diversity", "{texts}", "--tokenizer", "{}", "--probe", "gpt2"],
    ),
    (
        "fit-selector",
        "EMBEDDINGS",
        EMBEDDINGS,
        ["fit-selector", "{}", "--errors", "{errors}", "-o", "{nowhere}/s.joblib"],
    ),
    (
        "fit-selector",
        "--errors",
        {"errors", "table"},
        ["fit-selector", "{embeddings}", "--errors", "{}", "-o", "{nowhere}/s.joblib"],
    ),
    (
        "fit-selector",
        "--model-embeddings",
        EMBEDDINGS,
        [
            "fit-selector",
            "{embeddings}",
            "--errors",
            "{errors}",
            "--model-embeddings",
            "{}",
            "-o",
            "{nowhere}/s.joblib",
        ],
    ),
    (
        "errors",
        "TASK",
        {"task", "folder"},
        ["errors", "{}", "--experts", "{expert}", "-o", "{nowhere}/e.csv"],
    ),
    ("errors", "--experts", {"expert"}, ["errors", "{task}", "--experts", "{}", "-o", "{nowhere}/e.csv"]),
    (
        "errors",
        "--cache",
        {"folder"},
        ["errors", "{task}", "--experts", "{expert}", "--cache", "{}", "-o", "{nowhere}/e.csv"],
    ),
]
# The usage error that follows the check of the inputs, where it is not the missing output folder's.
LET_THROUGH = {
    "recommend": "--top 0: must be >= 1",
    "diversity": "--probe gpt2: the coefficients take",
    "embed --tokenizer": "--tokenizer: for text tasks",
}


# The options of the commands that name a file or a folder.
FILE_OPTIONS = (
    "--probe-weights",
    "--tokenizer",
    "--memory",
    "--errors",
    "--model-embeddings",
    "--experts",
    "--cache",
)


def test_the_table_covers_every_file_argument_of_every_command(capsys):
    assert {command for command, *_ in ARGUMENTS} == set(COMMANDS) - {"help"}
    for command in set(COMMANDS) - {"help"}:
        usage = run(capsys, command, "--help")[1].split("\n\n")[0]
        options = {option for option in FILE_OPTIONS if re.search(rf"\[?{option} ", usage)}
        tested = {
            argument for name, argument, *_ in ARGUMENTS if name == command and argument.startswith("--")
        }
        assert options == tested, command


@pytest.mark.parametrize("kind", sorted(KIND_WORDS))
@pytest.mark.parametrize(
    ("command", "argument", "takes", "template"), ARGUMENTS, ids=[f"{c} {a}" for c, a, *_ in ARGUMENTS]
)
def test_a_file_of_another_kind_is_refused_naming_both_kinds_and_the_usage(
    samples, tmp_path, capsys, command, argument, takes, template, kind
):
    others = {
        name: samples[key]
        for name, key in [
            ("task", "task"),
            ("embeddings", "embeddings.npz"),
            ("selector", "selector"),
            ("errors", "errors"),
            ("texts", "texts"),
            ("expert", "expert"),
        ]
    }
    argv = [part.format(samples[kind], nowhere=tmp_path / "nowhere", **others) for part in template]
    status, _, err = run(capsys, *argv)
    assert status == 2, err
    line = error_line(err)
    if kind in takes:
        assert LET_THROUGH.get(f"{command} {argument}", LET_THROUGH.get(command, "does not exist")) in line
    else:
        assert line.startswith(f"task2vec {command}: error: {argument} {samples[kind]}: {KIND_WORDS[kind]}")
        assert f", where {argument} is " in line and f"Usage: task2vec {command} " in line


def test_swapped_arguments_say_which_goes_first(samples, capsys):
    status, _, err = run(capsys, "recommend", samples["embeddings.csv"], samples["selector"])
    assert status == 2
    assert error_line(err) == (
        f"task2vec recommend: error: SELECTOR {samples['embeddings.csv']}: is a file of embeddings (written by "
        f"`task2vec embed`), where SELECTOR is a saved selector (a .joblib file). Usage: task2vec recommend "
        f"SELECTOR EMBEDDINGS."
    )
    status, _, err = run(
        capsys, "fit-selector", samples["errors"], "--errors", samples["embeddings.npz"], "-o", "s.joblib"
    )
    assert status == 2 and "EMBEDDINGS" in error_line(err) and "is a table of errors" in error_line(err)
