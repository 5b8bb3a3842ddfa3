"""The task2vec command line: embed, distances, recommend, and its errors."""

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sklearn.pipeline import make_pipeline
from torchvision import transforms

from sklearn_task2vec import FisherTaskEmbedder, Model2VecSelector
from sklearn_task2vec import embedder as embedder_module
from sklearn_task2vec.cli import main
from sklearn_task2vec.distances import pairwise_task_distances

# Tiny tasks and probes: one thread (conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv):
    status = main([str(argument) for argument in argv])
    out, err = capsys.readouterr()
    return status, out, err


# The note naming an image folder's classes, which comes before any error.
CLASSES_NOTE = re.compile(r"^task2vec embed: .+: \d+ classes, \d+ images: ")


def assert_one_line_error(err, *fragments):
    lines = [line for line in err.strip().splitlines() if not CLASSES_NOTE.match(line)]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two .npz tasks of 2-D features, two image-folder tasks, and a random resnet18 state_dict."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 4))
    arrays = {"signs": (X, X[:, 0] > 0), "updown": (X, np.where(X[:, 1] > 0, "up", "down"))}
    for name, (inputs, labels) in arrays.items():
        np.savez(root / f"{name}.npz", X=inputs, y=labels)
    for task in ("animals", "vehicles"):
        for label in ("one", "two"):
            folder = root / "images" / task / label
            folder.mkdir(parents=True)
            for index in range(3):
                pixels = rng.randint(0, 256, size=(20, 24, 3), dtype=np.uint8)
                image = Image.fromarray(pixels)
                # Gray and non-square images: ImageFolder makes them RGB, the transform square.
                (image.convert("L") if index == 0 else image).save(folder / f"{index}.png")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), root / "resnet18.pt")
    return root, arrays


@pytest.fixture(scope="module")
def embedded(files, tmp_path_factory):
    """The .npz tasks embedded by the command line into an .npz file."""
    root, _ = files
    output = tmp_path_factory.mktemp("embedded") / "embeddings.npz"
    assert main(["embed", str(root / "signs.npz"), str(root / "updown.npz"), "--output", str(output)]) == 0
    return output


@pytest.mark.slow
def test_help_runs_as_a_module_in_a_fresh_process(capsys):
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_task2vec.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("embed", "distances", "recommend"):
        assert command in result.stdout
    status, out, _ = run(capsys, "recommend", "--help")
    assert status == 0 and "runs code when it is loaded" in " ".join(out.split())


def test_embed_npz_tasks_writes_exactly_the_estimators_rows(files, embedded):
    _, arrays = files
    embedder = FisherTaskEmbedder(random_state=0)
    expected = embedder.fit_transform(list(arrays.values()))
    with np.load(embedded, allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["embeddings"], expected)
        assert stored["tasks"].tolist() == ["signs", "updown"]
        assert stored["filters"].tolist() == embedder.get_feature_names_out().tolist()
        np.testing.assert_array_equal(stored["trivial"], embedder.trivial_embedding_)
        assert str(stored["provenance"]) == embedder.provenance_.to_json()


def test_embed_to_csv_round_trips_the_numbers(files, tmp_path, capsys):
    root, arrays = files
    output = tmp_path / "embeddings.csv"
    status, out, _ = run(
        capsys, "embed", root / "signs.npz", root / "updown.npz", "-o", output, "--normalize", "trivial"
    )
    assert status == 0 and "2 tasks" in out
    with open(output, newline="") as file:
        rows = list(csv.reader(file))
    embedder = FisherTaskEmbedder(normalize="trivial", random_state=0)
    expected = embedder.fit_transform(list(arrays.values()))
    # The header's first cell: "task" and the rows' provenance record (tests/test_provenance.py).
    assert rows[0] == [f"task {embedder.provenance_.to_json()}", *embedder.get_feature_names_out()]
    assert [row[0] for row in rows[1:]] == ["signs", "updown"]
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], dtype=float), expected)


def test_embed_image_folders_resized_cropped_and_normalised_with_a_local_resnet18(files, tmp_path, capsys):
    root, _ = files
    weights, output = root / "resnet18.pt", tmp_path / "images.npz"
    folders = [root / "images" / "animals", root / "images" / "vehicles"]
    status, _, err = run(
        capsys,
        "embed",
        *folders,
        "--probe",
        "resnet18",
        "--probe-weights",
        weights,
        "--image-size",
        16,
        "--batch-size",
        4,
        "-o",
        output,
    )
    assert status == 0, err
    transform = transforms.Compose(
        [
            transforms.Resize(16),
            transforms.CenterCrop(16),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    datasets = [torchvision.datasets.ImageFolder(folder, transform=transform) for folder in folders]
    embedder = FisherTaskEmbedder(probe="resnet18", probe_weights=weights, batch_size=4, random_state=0)
    with np.load(output, allow_pickle=False) as stored:
        assert stored["tasks"].tolist() == ["animals", "vehicles"]
        np.testing.assert_allclose(stored["embeddings"], embedder.fit_transform(datasets), rtol=1e-6)
        assert stored["filters"][0] == "conv1:0" and len(stored["filters"]) == stored["embeddings"].shape[1]


def test_distances_print_a_named_table_and_write_the_exact_matrix(embedded, tmp_path, capsys):
    with np.load(embedded) as stored:
        embeddings, trivial = stored["embeddings"], stored["trivial"]
    output = tmp_path / "distances.csv"
    status, out, _ = run(capsys, "distances", embedded, "--output", output)
    symmetric = pairwise_task_distances(embeddings)
    assert status == 0
    lines = out.splitlines()
    assert lines[1].split() == ["signs", "updown"]
    assert lines[2].split() == ["signs", "0.000", f"{symmetric[0, 1]:.3f}"]
    with open(output, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["task", "signs", "updown"]
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], dtype=float), symmetric)

    status, out, _ = run(capsys, "distances", embedded, "--kind", "asymmetric", "--alpha", 0.3)
    asymmetric = pairwise_task_distances(embeddings, kind="asymmetric", alpha=0.3, trivial=trivial)
    assert status == 0 and "alpha=0.3" in out
    assert out.splitlines()[3].split() == ["updown", f"{asymmetric[1, 0]:.3f}", f"{asymmetric[1, 1]:.3f}"]
    assert asymmetric[1, 1] < 0  # the trivial embedding was used: d_sym(t, t) = 0 minus alpha * d_sym(t, t0)


def recommendations(out):
    """``{task: (recommended, {expert: probability})}`` from recommend's output."""
    table = {}
    for line in out.splitlines()[1:]:
        task, best, *listed = line.replace(",", "").split()
        table[task] = best, {expert: float(p) for expert, p in zip(listed[::2], listed[1::2])}
    return table


def test_recommend_with_a_selector_or_a_pipeline_ending_in_one(files, embedded, tmp_path, capsys):
    _, arrays = files
    with np.load(embedded) as stored:
        embeddings = stored["embeddings"]
    experts = ["second", "first", "third"]
    selector = Model2VecSelector(max_iter=0, model_embeddings=embeddings[[1, 0, 0]], experts=experts)
    selector.fit(embeddings, ["first", "second"])
    joblib.dump(selector, tmp_path / "selector.joblib")
    status, out, err = run(capsys, "recommend", tmp_path / "selector.joblib", embedded, "--top", 2)
    assert status == 0, err
    table = recommendations(out)
    probabilities = selector.predict_proba(embeddings)
    for task, predicted, row in zip(["signs", "updown"], selector.predict(embeddings), probabilities):
        best, listed = table[task]
        assert best == predicted
        assert len(listed) == 2 and listed[best] == pytest.approx(row.max(), abs=5e-4)

    pipeline = make_pipeline(FisherTaskEmbedder(random_state=0), Model2VecSelector(max_iter=20, n_init=1))
    pipeline.fit(list(arrays.values()), ["first", "second"])
    joblib.dump(pipeline, tmp_path / "pipeline.joblib")
    status, out, err = run(capsys, "recommend", tmp_path / "pipeline.joblib", embedded)
    assert status == 0, err
    table = recommendations(out)
    assert [table[task][0] for task in ("signs", "updown")] == pipeline.predict(
        list(arrays.values())
    ).tolist()


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["embed", "{root}/missing.npz", "-o", "{tmp}/e.csv"], ["missing.npz: no such file"]),
        (
            ["embed", "{root}/resnet18.pt", "-o", "{tmp}/e.csv"],
            ["is a torch file of weights", "where TASK is a task"],
        ),
        (["embed", "{root}/signs.npz", "-o", "{tmp}/e.txt"], ["must end in .csv or .npz"]),
        (["embed", "{root}/signs.npz", "-o", "{tmp}/nowhere/e.csv"], ["does not exist"]),
        (
            ["embed", "{root}/signs.npz", "-o", "{tmp}/e.csv", "--probe-weights", "{tmp}/w.pt"],
            ["no such file"],
        ),
        (["embed", "{root}/signs.npz", "{tmp}/signs.npz", "-o", "{tmp}/e.csv"], ["the same name 'signs'"]),
        (["distances", "{tmp}/missing.csv", "--alpha", "-1"], ["--alpha -1.0: must be a number >= 0"]),
        (["distances", "{root}/resnet18.pt"], ["is a torch file of weights", "a .csv or .npz file"]),
        (
            ["distances", "{root}/signs.npz"],
            ["is a task (an .npz file of arrays X and y)", "where EMBEDDINGS"],
        ),
        (["recommend", "{tmp}/missing.joblib", "{tmp}/missing.npz"], ["no such file"]),
        (["recommend", "{tmp}/missing.joblib", "{tmp}/missing.npz", "--top", "0"], ["--top 0: must be >= 1"]),
    ],
)
def test_usage_errors_exit_2_with_one_line(files, tmp_path, capsys, argv, fragments):
    root, _ = files
    np.savez(tmp_path / "signs.npz", X=np.zeros((4, 2)), y=[0, 1, 0, 1])
    argv = [argument.format(root=root, tmp=tmp_path) for argument in argv]
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, f"task2vec {argv[0]}: error:", *fragments)


def test_argparse_errors_exit_2_without_a_traceback(capsys):
    for argv in (
        ["embed", "x.npz"],
        ["embed", "x.npz", "-o", "e.csv", "--max-samples", "0"],
        ["frobnicate"],
        [],
    ):
        status, _, err = run(capsys, *argv)
        assert status == 2 and "error:" in err.splitlines()[-1] and "Traceback" not in err


def test_data_errors_exit_1_with_one_line_naming_the_file(files, embedded, tmp_path, capsys):
    root, _ = files
    np.savez(tmp_path / "no_y.npz", X=np.zeros((4, 2)))
    np.savez(tmp_path / "objects.npz", X=np.zeros((2, 2)), y=np.array([{}, []], dtype=object))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip archive")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.csv").write_text("task,a\nt,not-a-number\n")
    (tmp_path / "negative.csv").write_text("task,a,b\nt,-1.0,1.0\nu,1.0,1.0\n")
    (tmp_path / "ragged.csv").write_text("task,a,b\nt,1.0,1.0\nu,1.0\n")
    joblib.dump({"not": "a selector"}, tmp_path / "dict.joblib")
    joblib.dump(Model2VecSelector(), tmp_path / "unfitted.joblib")
    (tmp_path / "garbage.joblib").write_bytes(b"\x80\x04garbage")
    selector = Model2VecSelector(max_iter=0, model_embeddings=[[1.0, 2.0], [2.0, 1.0]]).fit(
        [[1.0, 2.0]] * 2, [0, 1]
    )
    joblib.dump(selector, tmp_path / "narrow.joblib")

    cases = [
        (["embed", tmp_path / "no_y.npz", "-o", tmp_path / "e.csv"], "has no array y"),
        (["embed", tmp_path / "objects.npz", "-o", tmp_path / "e.csv"], "without pickle"),
        (["embed", tmp_path / "garbage.npz", "-o", tmp_path / "e.csv"], "not an .npz file"),
        (["embed", tmp_path / "empty", "-o", tmp_path / "e.csv"], "not an image folder"),
        (["distances", tmp_path / "bad.csv"], "not a number"),
        (["distances", tmp_path / "negative.csv"], "negative"),
        (["distances", tmp_path / "ragged.csv"], "one value per filter (2)"),
        (["recommend", tmp_path / "dict.joblib", embedded], "holds a dict, not a Model2VecSelector"),
        (["recommend", tmp_path / "unfitted.joblib", embedded], "is not fitted"),
        (["recommend", tmp_path / "garbage.joblib", embedded], "cannot load it with joblib"),
        (
            ["recommend", tmp_path / "narrow.joblib", embedded],
            "have 64 filters but the selector was fitted on 2",
        ),
    ]
    for argv, fragment in cases:
        status, _, err = run(capsys, *argv)
        assert status == 1, (argv, err)
        assert_one_line_error(err, f"task2vec {argv[0]}: error:", fragment)
    assert not (tmp_path / "e.csv").exists()


def test_a_task_the_probe_cannot_take_is_named_and_nothing_is_written(files, tmp_path, capsys):
    root, _ = files
    output = tmp_path / "e.csv"
    status, _, err = run(
        capsys,
        "embed",
        root / "signs.npz",
        root / "images" / "animals",
        "--probe",
        "resnet18",
        "--probe-weights",
        root / "resnet18.pt",
        "--image-size",
        16,
        "-o",
        output,
    )
    assert status == 1 and not output.exists()
    assert_one_line_error(err, "could not embed 1 of 2 tasks: signs (", "the probe cannot take inputs")


def test_a_single_class_task_is_a_warning_line_not_an_error(tmp_path, capsys):
    np.savez(tmp_path / "flat.npz", X=np.random.RandomState(0).normal(size=(10, 3)), y=np.zeros(10))
    status, _, err = run(capsys, "embed", tmp_path / "flat.npz", "-o", tmp_path / "e.npz")
    assert status == 0
    assert err.strip().startswith("task2vec: warning:") and "single class" in err
    assert f"flat ({tmp_path / 'flat.npz'}) has a single class" in err and "Task 0" not in err
    with np.load(tmp_path / "e.npz") as stored:
        # The trivial embedding on the point estimate's scale: no Fisher information (0).
        np.testing.assert_array_equal(stored["embeddings"][0], np.zeros_like(stored["trivial"]))


# --------------------------------------------------------------------------------------
# Nothing lost: outputs, inputs, failed tasks, the cache (issue 13)
# --------------------------------------------------------------------------------------


def test_an_existing_output_is_replaced_only_with_overwrite(files, tmp_path, capsys):
    root, _ = files
    output = tmp_path / "e.csv"
    output.write_text("precious\n")
    status, _, err = run(capsys, "embed", root / "signs.npz", "-o", output)
    assert status == 2 and output.read_text() == "precious\n"
    assert_one_line_error(err, "the file exists; pass --overwrite")
    status, _, err = run(capsys, "embed", root / "signs.npz", "-o", output, "--overwrite")
    assert status == 0, err
    assert output.read_text().startswith('"task {')  # the header carries the provenance record
    distances = tmp_path / "d.csv"
    distances.write_text("precious\n")
    status, _, err = run(capsys, "distances", output, "-o", distances)
    assert status == 2 and distances.read_text() == "precious\n"
    assert run(capsys, "distances", output, "-o", distances, "--force")[0] == 0
    assert distances.read_text().startswith("task,signs")


def test_an_input_is_never_the_output_even_with_overwrite(files, tmp_path, capsys):
    root, _ = files
    task = tmp_path / "task.npz"
    task.write_bytes((root / "signs.npz").read_bytes())
    (tmp_path / "link.npz").symlink_to(task)
    os.link(task, tmp_path / "hard.npz")
    before = task.read_bytes()
    for output in (task, tmp_path / "link.npz", tmp_path / "hard.npz", tmp_path / "sub" / ".." / "task.npz"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        status, _, err = run(capsys, "embed", task, "-o", output, "--overwrite")
        assert status == 2, (output, err)
        assert_one_line_error(err, "is also an input of the command")
    weights = tmp_path / "weights.npz"
    weights.write_bytes(b"weights")
    status, _, err = run(capsys, "embed", task, "--probe-weights", weights, "-o", weights, "--overwrite")
    assert status == 2 and weights.read_bytes() == b"weights"
    assert task.read_bytes() == before

    embeddings = tmp_path / "e.csv"
    assert run(capsys, "embed", task, "-o", embeddings)[0] == 0
    kept = embeddings.read_bytes()
    status, _, err = run(capsys, "distances", embeddings, "-o", embeddings, "--overwrite")
    assert status == 2 and embeddings.read_bytes() == kept
    assert_one_line_error(err, "is also an input of the command")


def bad_task(tmp_path):
    """A task the embedder refuses (NaN inputs), named ``broken``."""
    X = np.random.RandomState(1).normal(size=(12, 4))
    X[3, 2] = np.nan
    np.savez(tmp_path / "broken.npz", X=X, y=np.arange(12) % 2)
    return tmp_path / "broken.npz"


def test_a_variational_run_its_cap_ends_is_a_warning_in_the_command_lines_terms(files, tmp_path, capsys):
    root, _ = files
    argv = ["embed", root / "signs.npz", "--method", "variational", "--variational-steps", 2]
    status, _, err = run(capsys, *argv, "--variational-tol", 1e-4, "-o", tmp_path / "e.npz")
    assert status == 0
    warning = [line for line in err.splitlines() if line.startswith("task2vec: warning:")]
    assert len(warning) == 1, err
    assert (
        f"signs ({root / 'signs.npz'}) ended its run of --method variational at --variational-steps 2"
        in warning[0]
    )
    assert (
        "above --variational-tol 0.0001. Raise --variational-steps, or set --variational-steps 0 (no step"
        in warning[0]
    )
    assert "Task 0" not in err and "variational_steps" not in err
    status, _, err = run(capsys, *argv, "--variational-tol", 0, "-o", tmp_path / "f.npz")
    assert status == 0 and "warning" not in err
    status, _, err = run(capsys, *argv, "--variational-tol", "nan", "-o", tmp_path / "g.npz")
    assert status == 2 and "must be >= 0" in err
    status, _, err = run(capsys, *argv[:-1], 0, "-o", tmp_path / "h.npz")  # no step: the start
    assert status == 0 and "warning" not in err


@pytest.mark.parametrize("curvature", [None, "gauss_newton", "hessian"])
def test_variational_curvature_reaches_the_estimator(files, tmp_path, capsys, curvature):
    """--variational-curvature gives the estimator's rows (default: its default), and an
    unknown value is a usage error."""
    root, arrays = files
    argv = ["embed", root / "signs.npz", "--method", "variational", "--variational-steps", 3]
    argv += ["--variational-tol", 0, "-o", tmp_path / "e.npz"]
    if curvature is not None:
        argv += ["--variational-curvature", curvature]
    assert run(capsys, *argv)[0] == 0
    params = {} if curvature is None else {"variational_curvature": curvature}
    expected = FisherTaskEmbedder(
        method="variational", variational_steps=3, variational_tol=0, random_state=0, **params
    ).fit_transform([arrays["signs"]])
    with np.load(tmp_path / "e.npz", allow_pickle=False) as stored:
        np.testing.assert_array_equal(stored["embeddings"], expected)
    status, _, err = run(capsys, *argv[:-2], "--variational-curvature", "fisher")
    assert status == 2 and "invalid choice: 'fisher'" in err


def test_on_error_warn_writes_the_finished_rows_and_names_the_failed_task(files, tmp_path, capsys):
    root, arrays = files
    broken, output = bad_task(tmp_path), tmp_path / "e.npz"
    argv = ["embed", root / "signs.npz", broken, root / "updown.npz", "-o", output]
    status, _, err = run(capsys, *argv)
    assert status == 1 and not output.exists()
    assert_one_line_error(err, "could not embed 1 of 3 tasks: broken (", "NaN", "Nothing was written")

    status, out, err = run(capsys, *argv, "--on-error", "warn")
    assert status == 1 and "2 tasks" in out
    assert_one_line_error(err, "could not embed 1 of 3 tasks: broken (", "other tasks' rows were written")
    expected = FisherTaskEmbedder(random_state=0).fit_transform(list(arrays.values()))
    with np.load(output, allow_pickle=False) as stored:
        assert stored["tasks"].tolist() == ["signs", "updown"]
        np.testing.assert_array_equal(stored["embeddings"], expected)
    status, out, _ = run(capsys, "distances", output)  # the written file is whole and usable
    assert status == 0 and "updown" in out


def test_memory_caches_the_rows_of_the_command_line(files, tmp_path, capsys, monkeypatch):
    root, _ = files
    cache = tmp_path / "cache"
    argv = ["embed", root / "signs.npz", root / "updown.npz", "--memory", cache]
    assert run(capsys, *argv, "-o", tmp_path / "first.npz")[0] == 0
    assert len(list(cache.rglob("*.npz"))) == 2

    def no_computing(*args, **kwargs):
        raise AssertionError("a cached task was computed again")

    monkeypatch.setattr(embedder_module, "embed_task", no_computing)
    status, _, err = run(capsys, *argv, "-o", tmp_path / "second.npz")
    assert status == 0, err
    with np.load(tmp_path / "first.npz") as first, np.load(tmp_path / "second.npz") as second:
        np.testing.assert_array_equal(first["embeddings"], second["embeddings"])
    (tmp_path / "file").write_text("")
    status, _, err = run(capsys, *argv[:-2], "--memory", tmp_path / "file", "-o", tmp_path / "third.npz")
    assert status == 2
    assert_one_line_error(err, "--memory", "is a file")


@pytest.mark.parametrize("alpha", ["inf", "-inf", "nan"])
def test_non_finite_alpha_is_a_usage_error(embedded, capsys, alpha):
    status, _, err = run(capsys, "distances", embedded, "--kind", "asymmetric", f"--alpha={alpha}")
    assert status == 2
    assert_one_line_error(err, "--alpha", "must be a number >= 0, and finite")


def test_an_image_folder_with_a_looping_link_is_refused_naming_it(files, tmp_path, capsys):
    root, _ = files
    task = tmp_path / "animals"
    shutil.copytree(root / "images" / "animals", task)
    (task / "one" / "loop").symlink_to(task)
    status, _, err = run(capsys, "embed", task, "-o", tmp_path / "e.csv")
    assert status == 1 and not (tmp_path / "e.csv").exists()
    assert_one_line_error(err, "one/loop is a directory link back to")


# --------------------------------------------------------------------------------------
# A new user's first hour (issue 15): messages in the command line's own terms
# --------------------------------------------------------------------------------------


def test_offline_imagenet_weights_give_command_line_advice(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", offline)
    np.savez(tmp_path / "pictures.npz", X=np.zeros((4, 3, 8, 8), np.float32), y=[0, 1, 0, 1])
    status, _, err = run(
        capsys, "embed", tmp_path / "pictures.npz", "--probe", "resnet18", "-o", tmp_path / "e.npz"
    )
    assert status == 1 and not (tmp_path / "e.npz").exists()
    note, error = err.strip().splitlines()
    # Said before torch's own "Downloading: ..." line would be: why, where, and the offline options.
    assert note.startswith("task2vec embed: the ImageNet weights of probe resnet18 are not in")
    assert "--probe-weights none" in note
    assert error.startswith("task2vec embed: error: could not get the ImageNet weights of probe resnet18")
    assert "network is unreachable" in error
    assert "--probe-weights PATH" in error and "--probe-weights none" in error
    assert "probe_weights" not in err


def test_image_folder_notes_name_the_folder_skipped_files_and_upscaling(files, tmp_path, capsys):
    root, _ = files
    folder = tmp_path / "only-cats"
    (folder / "cat").mkdir(parents=True)
    for index in range(3):
        Image.fromarray(np.full((6, 6, 3), 40 * index, np.uint8)).save(folder / "cat" / f"{index}.png")
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "README.md").write_text("outside any class folder")
    argv = [
        "embed",
        folder,
        "--probe",
        "resnet18",
        "--probe-weights",
        root / "resnet18.pt",
        "-o",
        tmp_path / "e.npz",
    ]
    status, _, err = run(capsys, *argv, "--image-size", 32)
    assert status == 0, err
    lines = err.strip().splitlines()
    assert any(
        f"{folder}: skipped 2 files that ImageFolder does not read (README.md, cat/notes.txt)" in line
        for line in lines
    )
    assert any(
        f"{folder}: its images are 6 x 6 pixels, upscaled 5x to --image-size 32" in line for line in lines
    )
    warning = [line for line in lines if line.startswith("task2vec: warning:")]
    assert len(warning) == 1 and f"only-cats ({folder}) has a single class" in warning[0]
    status, out, err = run(capsys, *argv, "--image-size", 24, "--overwrite")
    assert status == 0 and "upscaled" not in err  # 4x: no hint
    assert out.startswith("Wrote the embeddings of 1 task (")


def test_embed_names_each_folders_classes_and_the_system_entries_it_skipped(files, tmp_path, capsys):
    root, _ = files
    folder = tmp_path / "scans"
    rng = np.random.RandomState(1)
    for label, count in (("benign", 3), ("malign", 2)):
        (folder / label).mkdir(parents=True)
        for index in range(count):  # 16-bit images, as microscopes and scanners write them
            pixels = rng.randint(256, 65536, size=(20, 20)).astype(np.uint16)
            Image.fromarray(pixels).save(folder / label / f"{index}.png")
    for entry in ("@eaDir", ".thumbnails", "benign/@eaDir"):
        (folder / entry).mkdir()
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / entry / "thumb.jpg")
    (folder / ".DS_Store").write_bytes(b"\0")
    argv = ["embed", folder, "--probe", "resnet18", "--probe-weights", root / "resnet18.pt"]
    status, out, err = run(capsys, *argv, "--image-size", 32, "-o", tmp_path / "e.npz")
    assert status == 0, err
    lines = err.strip().splitlines()
    assert f"task2vec embed: {folder}: 2 classes, 5 images: benign (3), malign (2)." in lines
    skipped = [line for line in lines if "hidden or system entries" in line]
    assert len(skipped) == 1 and skipped[0] == (
        f"task2vec embed: {folder}: skipped 4 hidden or system entries, read neither as classes nor as "
        f"images: .DS_Store, .thumbnails, @eaDir, benign/@eaDir."
    )
    assert "ImageFolder does not read" not in err  # system entries are not counted twice
    assert out.startswith("Wrote the embeddings of 1 task (")


def test_the_classes_note_of_a_folder_with_many_classes_is_cut(tmp_path, capsys):
    for parent in ("a", "b"):  # two tasks of one name: refused after both folders were read
        for label in range(23):
            (tmp_path / parent / "task" / f"class{label:02d}").mkdir(parents=True)
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(
                tmp_path / parent / "task" / f"class{label:02d}" / "0.png"
            )
    status, _, err = run(
        capsys, "embed", tmp_path / "a" / "task", tmp_path / "b" / "task", "-o", tmp_path / "e.csv"
    )
    assert status == 2 and "have the same name 'task'" in err
    notes = [line for line in err.splitlines() if "23 classes, 23 images: " in line]
    assert len(notes) == 2 and notes[0].endswith("class18 (1), class19 (1), and 3 more.")
    assert "class20" not in notes[0]


def test_a_sixteen_bit_image_of_eight_bit_values_fails_its_task_naming_the_file(files, tmp_path, capsys):
    root, _ = files
    folder = tmp_path / "dark"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(np.full((8, 8), 300 * (index + 1), np.uint16)).save(
                folder / label / f"{index}.png"
            )
    bad = folder / "b" / "1.png"
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(bad)
    argv = [
        "embed",
        folder,
        "--probe",
        "resnet18",
        "--probe-weights",
        root / "resnet18.pt",
        "--image-size",
        16,
    ]
    status, _, err = run(capsys, *argv, "-o", tmp_path / "e.csv")
    assert status == 1
    assert_one_line_error(err, f"dark ({folder}): could not read example 3 (file {bad})", "would be black")


def test_asymmetric_distances_need_the_trivial_embedding_which_a_raw_csv_lacks(files, tmp_path, capsys):
    root, _ = files
    tasks = [root / "signs.npz", root / "updown.npz"]
    assert run(capsys, "embed", *tasks, "-o", tmp_path / "raw.csv")[0] == 0
    assert run(capsys, "embed", *tasks, "-o", tmp_path / "raw.npz")[0] == 0
    assert run(capsys, "embed", *tasks, "--normalize", "trivial", "-o", tmp_path / "normalised.csv")[0] == 0
    status, _, err = run(capsys, "distances", tmp_path / "raw.csv", "--kind", "asymmetric")
    assert status == 1
    assert_one_line_error(
        err, "raw.csv: the asymmetric distance needs the trivial embedding", "--normalize trivial"
    )
    # d_sym is unchanged by dividing by the trivial embedding: both files give the same matrix.
    _, from_npz, _ = run(capsys, "distances", tmp_path / "raw.npz", "--kind", "asymmetric")
    status, from_csv, _ = run(capsys, "distances", tmp_path / "normalised.csv", "--kind", "asymmetric")
    assert status == 0 and from_csv == from_npz
    assert float(from_csv.splitlines()[2].split()[1]) < 0  # d_asym(t -> t) = -alpha * d_sym(t, t0)
    assert run(capsys, "distances", tmp_path / "raw.csv")[0] == 0  # symmetric needs no trivial embedding


def test_image_size_help_guides_small_images(capsys):
    status, out, _ = run(capsys, "embed", "--help")
    assert status == 0
    assert "for small images" in " ".join(out.split()) and "32 or 64" in " ".join(out.split())


@pytest.mark.parametrize("command", ["embed", "diversity"])
def test_progress_is_shown_on_a_terminal_unless_quiet(command, monkeypatch, capsys):
    """--verbose (always) and --quiet (never) exclude each other; neither: the estimators'
    verbose="auto", progress bars only when standard error is a terminal."""
    import sklearn_task2vec.cli as cli

    assert main([command, "x", "--verbose", "--quiet"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    for verbose_flag, quiet_flag, verbose in ((False, False, "auto"), (True, False, 1), (False, True, 0)):
        args = argparse.Namespace(verbose=verbose_flag, quiet=quiet_flag)
        assert cli._verbosity(args) == verbose
