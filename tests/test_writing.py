"""Every file the package writes (issue 24): one writer, whatever the artifact.

Each guarantee is checked on every kind of artifact the package writes, through its public
entry point: the command line's embeddings (.csv, .npz) and distances (.csv), a cache row (the
embedding cache's and the zoo's feature cache's file format), an expert folder and the demo's
figure. Failures are injected where they happen: a full disk (``EFBIG`` from the flush to
disk), a target that appears while the content is computed, a process killed between files.
"""

import errno
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_task2vec import FisherTaskEmbedder, demo
from sklearn_task2vec import _writer as writer
from sklearn_task2vec._cache import load_checked, save_checked
from sklearn_task2vec.cli import main
from sklearn_task2vec.zoo import Expert, error_matrix, load_expert, save_expert

pytestmark = pytest.mark.usefixtures("one_thread")

#: The kinds of artifact, each with the name it is written under.
TARGETS = {
    "embeddings.csv": "out.csv",
    "embeddings.npz": "out.npz",
    "distances.csv": "distances.csv",
    "cache row": "row.npz",
    "expert folder": "expert",
    "figure": "digits_study.png",
}
#: Those written only when asked to replace an existing one (a cache row is replaced whenever
#: it is rewritten: a damaged row must be; the demo replaces its own figure at each run).
ASKED = ["embeddings.csv", "embeddings.npz", "distances.csv", "expert folder"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A task file and an embeddings file of it (the distances' input)."""
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 4))
    np.savez(root / "signs.npz", X=X, y=X[:, 0] > 0)
    np.savez(root / "other.npz", X=X + 1, y=X[:, 1] > 0)
    assert main(["embed", str(root / "signs.npz"), str(root / "other.npz"), "-o", str(root / "e.npz")]) == 0
    return root


def produce(kind, folder, inputs, *, overwrite=False):
    """Write the artifact ``kind`` into ``folder`` through its public entry point.

    Returns ``(target, error)``: the error message (the command line's stderr, or the raised
    error's text), or None on success.
    """
    target = folder / TARGETS[kind]
    flag = ["--overwrite"] if overwrite else []
    try:
        if kind.startswith("embeddings"):
            tasks = [str(inputs / "signs.npz"), str(inputs / "other.npz")]
            status = main(["embed", *tasks, "-o", str(target), *flag])
        elif kind == "distances.csv":
            status = main(["distances", str(inputs / "e.npz"), "-o", str(target), *flag])
        elif kind == "cache row":  # a failed write is a warning: the caller keeps the row
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                save_checked(target, "key", "the row is kept", row=np.arange(3.0))
            if caught:
                return target, str(caught[0].message)
            status = 0
        elif kind == "expert folder":
            save_expert(Expert(nn.Linear(3, 2), "tiny", head=nn.Linear(2, 2)), target, overwrite=overwrite)
            status = 0
        else:
            panels = {"names": ["a", "b", "c"], "distances": 1 - np.eye(3), "rows": []}
            demo.write_plots(
                folder, norms=np.array([1.0, 2.0, 3.0]), errors=np.array([0.1, 0.3, 0.2]), **panels
            )
            status = 0
    except (OSError, ValueError) as exc:
        return target, str(exc)
    return target, None if status == 0 else f"exit {status}"


def run(capsys, kind, folder, inputs, **options):
    """:func:`produce`, with the command line's stderr as its error."""
    target, error = produce(kind, folder, inputs, **options)
    err = capsys.readouterr().err
    if error is not None and error.startswith("exit "):
        error = f"{error}: {err.strip()}"
    return target, error


def written(target):
    """The paths an artifact consists of: the file, or the folder and its files."""
    return [target, *sorted(target.iterdir())] if target.is_dir() else [target]


def leftovers(folder):
    """Temporary files or folders of the writer left in ``folder``."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.fixture
def umask():
    """Set the process's umask for one test (restored after)."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.fixture
def fail_fsync(monkeypatch):
    """Make the writer's flush to disk, the last step before a file is published, fail
    ``times`` times with ``code`` (a full disk: the content was being written), then succeed;
    or, with ``then``, call ``then()`` (a target appearing meanwhile) and succeed. The calls
    are counted."""
    original, calls = os.fsync, []

    def arm(code=errno.EFBIG, times=1, then=None):
        def fsync(descriptor):
            calls.append(descriptor)
            if len(calls) <= times:
                if then is not None:
                    then()
                    return original(descriptor)
                raise OSError(code, os.strerror(code))
            return original(descriptor)

        monkeypatch.setattr(os, "fsync", fsync)
        return calls

    return arm


# ------------------------------------------------------------------------------ modes
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
@pytest.mark.parametrize("kind", list(TARGETS))
def test_new_files_and_folders_get_their_mode_from_the_umask(kind, mask, tmp_path, inputs, capsys, umask):
    umask(mask)
    target, error = run(capsys, kind, tmp_path, inputs)
    assert error is None, error
    for path in written(target):
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("kind", list(TARGETS))
def test_a_replaced_file_or_folder_keeps_its_permission_bits(kind, tmp_path, inputs, capsys, umask):
    umask(0o077)  # a new file would be 0o600: a replaced one must not become it
    target, error = run(capsys, kind, tmp_path, inputs)
    assert error is None, error
    os.chmod(target, 0o750 if target.is_dir() else 0o644)
    before = target.stat().st_ino if target.is_file() else None
    target, error = run(capsys, kind, tmp_path, inputs, overwrite=True)
    assert error is None, error
    assert stat.S_IMODE(target.stat().st_mode) == (0o750 if target.is_dir() else 0o644)
    if before is not None:
        assert target.stat().st_ino != before  # a new file was published, not the old one kept
    assert leftovers(tmp_path) == []


# ----------------------------------------------------------------------- no clobbering
@pytest.mark.parametrize("kind", ASKED)
def test_an_existing_artifact_is_replaced_only_when_asked(kind, tmp_path, inputs, capsys):
    target, error = run(capsys, kind, tmp_path, inputs)
    assert error is None, error
    before = {path: path.read_bytes() for path in written(target) if path.is_file()}
    _, error = run(capsys, kind, tmp_path, inputs)
    assert error is not None and str(target) in error and "overwrite" in error
    assert {path: path.read_bytes() for path in written(target) if path.is_file()} == before


def appear(target):
    """A file (or, for a folder, a folder holding a file) of someone else's at ``target``."""
    if target.suffix:
        target.write_text("theirs\n")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("theirs\n")


@pytest.mark.parametrize("kind", ASKED)
def test_an_artifact_that_appears_while_it_is_computed_is_not_replaced(
    kind, tmp_path, inputs, capsys, fail_fsync
):
    """The check at publish time: the target appears after the start-up checks passed, just
    before the content is published (two runs with one output, say)."""
    target = tmp_path / TARGETS[kind]
    fail_fsync(then=lambda: appear(target))
    _, error = run(capsys, kind, tmp_path, inputs)
    assert error is not None and f"could not write {target}" in error and "it exists" in error, error
    theirs = target / "notes.txt" if target.is_dir() else target
    assert theirs.read_text() == "theirs\n"
    if target.is_dir():
        assert [path.name for path in target.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kind", list(TARGETS))
def test_a_failed_write_names_the_file_and_leaves_no_partial_file(kind, tmp_path, inputs, capsys, fail_fsync):
    fail_fsync(errno.EFBIG, times=3)  # the target, and the rescues beside it and in the temporary folder
    target, error = run(capsys, kind, tmp_path, inputs)
    assert error is not None and f"could not write {target}" in error, error
    assert "File too large" in error
    assert not target.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
@pytest.mark.parametrize("failure", ["disk full", "output appeared", "no space anywhere"])
def test_embed_keeps_its_rows_in_a_named_file_when_its_output_cannot_be_written(
    suffix, failure, tmp_path, inputs, capsys, fail_fsync, monkeypatch
):
    kind = f"embeddings{suffix}"
    (tmp_path / "reference").mkdir()
    reference, error = run(capsys, kind, tmp_path / "reference", inputs)
    assert error is None, error
    target = tmp_path / TARGETS[kind]
    rescue_folder = tmp_path / "tmp"
    rescue_folder.mkdir()
    monkeypatch.setattr(writer.tempfile, "tempdir", str(rescue_folder))
    if failure == "disk full":
        fail_fsync(errno.EFBIG, times=2)  # fails beside the output, succeeds in the temporary folder
    elif failure == "output appeared":
        fail_fsync(then=lambda: appear(target))
    else:
        fail_fsync(errno.ENOSPC, times=3)
    _, error = run(capsys, kind, tmp_path, inputs)
    assert error.startswith("exit 1") and f"could not write {target}" in error, error
    rescued = sorted(path for folder in (tmp_path, rescue_folder) for path in folder.glob("*.rescued*"))
    if failure == "no space anywhere":
        assert rescued == [] and "could not be saved elsewhere either" in error
        return
    (path,) = rescued
    assert f"its content was saved to {path} instead" in error
    assert path.name.startswith(f"out.{os.getpid()}.") and path.name.endswith(f".rescued{suffix}")
    assert path.parent == (rescue_folder if failure == "disk full" else tmp_path)
    assert content(path) == content(reference)  # every row, as the output would have had them
    assert leftovers(tmp_path) == []


def content(path):
    """What an embeddings file holds: its text, or its arrays as lists (an .npz file's bytes
    hold the time it was written)."""
    if path.suffix == ".csv":
        return path.read_text()
    with np.load(path) as stored:
        return {name: stored[name].tolist() for name in stored.files}


@pytest.mark.slow
def test_two_embed_runs_with_one_output_never_both_succeed(tmp_path, inputs):
    """The review's case, in two real processes started together: without --overwrite, one
    run writes the output and the other fails (at start-up, or when it publishes: its rows are
    then rescued), never both exiting 0 with the second silently replacing the first."""
    command = [sys.executable, "-m", "sklearn_task2vec.cli", "embed", str(inputs / "signs.npz")]
    processes = [
        subprocess.Popen([*command, "-o", str(tmp_path / "out.csv")], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(process.wait(timeout=300), process.stderr.read()) for process in processes]
    assert sorted(status for status, _ in results) in ([0, 1], [0, 2]), results
    _, error = next(result for result in results if result[0] != 0)
    assert str(tmp_path / "out.csv") in error
    assert main(["distances", str(tmp_path / "out.csv")]) == 0


def test_the_rows_read_back_from_a_rescued_file(tmp_path, inputs, capsys, fail_fsync):
    target = tmp_path / "out.csv"
    fail_fsync(then=lambda: appear(target))
    assert run(capsys, "embeddings.csv", tmp_path, inputs)[1] is not None
    (rescued,) = tmp_path.glob("*.rescued.csv")
    assert main(["distances", str(rescued)]) == 0
    assert "signs" in capsys.readouterr().out


# ---------------------------------------------------------------------- the writer itself
@pytest.mark.parametrize("kind", ["fifo", "socket", "folder"])
def test_something_that_is_not_a_regular_file_is_never_replaced(kind, tmp_path, special_file):
    target = tmp_path / "out.csv"
    special_file(target, kind)
    with pytest.raises(OSError, match=f"could not write {target}: .*never replaced"):
        writer.write_file(target, lambda file: file.write(b"x"), overwrite=True)
    assert stat.S_IFMT(target.lstat().st_mode) != stat.S_IFREG
    assert leftovers(tmp_path) == []


def test_the_command_line_refuses_an_output_that_is_not_a_regular_file_before_any_work(
    tmp_path, inputs, capsys
):
    os.mkfifo(tmp_path / "out.csv")
    status = main(["embed", str(inputs / "signs.npz"), "-o", str(tmp_path / "out.csv"), "--overwrite"])
    assert status == 2 and "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_without_hard_links_the_name_is_still_taken_only_if_free(code, tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.bin"
    writer.write_file(target, lambda file: file.write(b"first"))
    assert target.read_bytes() == b"first"

    def racing(file):
        file.write(b"second")
        target.write_bytes(b"theirs")  # appears while the content is written

    target.unlink()
    with pytest.raises(FileExistsError, match="it exists"):
        writer.write_file(target, racing)
    assert target.read_bytes() == b"theirs" and leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS])
def test_a_file_system_that_cannot_flush_a_file_still_gets_it(code, tmp_path, fail_fsync):
    calls = fail_fsync(code)
    writer.write_file(tmp_path / "x.bin", lambda file: file.write(b"content"))
    assert len(calls) == 1 and (tmp_path / "x.bin").read_bytes() == b"content"


def test_errors_keep_their_type_and_errno(tmp_path, fail_fsync):
    fail_fsync(errno.EACCES)
    with pytest.raises(PermissionError) as caught:
        writer.write_file(tmp_path / "x.bin", lambda file: file.write(b"x"))
    assert caught.value.errno == errno.EACCES
    assert str(caught.value) == f"could not write {tmp_path / 'x.bin'}: [Errno 13] Permission denied"
    with pytest.raises(ValueError, match=r"could not write .*x\.txt: .*surrogates not allowed"):
        writer.write_file(tmp_path / "x.txt", lambda file: file.write("\udc80"), text=True)
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------ experts
def expert(name="tiny", seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Expert(nn.Linear(3, 2), name, head=nn.Linear(2, 2))


def same_expert(loaded, original):
    assert loaded.name == original.name
    for mine, theirs in zip(loaded.module.state_dict().values(), original.module.state_dict().values()):
        assert torch.equal(mine, theirs)


@pytest.mark.parametrize(
    "contents",
    [
        {"weights.pt": b"my weights", "head.pt": b"my head", "expert.json": b'{"mine": true}'},
        {"expert.json": b'{"format": "something else"}'},
        {"notes.txt": b"a user's notes"},
        {"weights.pt": b"w", "expert.json": b"not json"},
        {"data/": None},
    ],
    ids=["their-three-files", "their-json", "other-files", "damaged-json", "a-subfolder"],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_save_expert_refuses_a_folder_that_is_not_an_expert_folder(contents, overwrite, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, content in contents.items():
        if content is None:
            (folder / name).mkdir()
        else:
            (folder / name).write_bytes(content)
    with pytest.raises(ValueError, match=f"save_expert: '{folder}' is not an expert folder"):
        save_expert(expert(), folder, overwrite=overwrite)
    for name, content in contents.items():
        assert (folder / name).is_dir() if content is None else (folder / name).read_bytes() == content
    assert sorted(path.name for path in folder.iterdir()) == sorted(name.rstrip("/") for name in contents)
    assert leftovers(tmp_path) == []


def test_save_expert_into_an_empty_folder_keeps_it_and_adds_its_files(tmp_path, umask):
    folder = tmp_path / "empty"
    folder.mkdir(0o700)
    save_expert(expert(), folder)
    assert sorted(path.name for path in folder.iterdir()) == ["expert.json", "head.pt", "weights.pt"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    same_expert(load_expert(folder, architecture=nn.Linear(3, 2)), expert())


@pytest.mark.parametrize("exchange", ["renameat2", "two renames"])
@pytest.mark.parametrize("killed_at", [1, 2])
def test_a_save_killed_between_its_files_leaves_the_old_expert_loadable(
    exchange, killed_at, tmp_path, monkeypatch
):
    folder = save_expert(expert("old", seed=1), tmp_path / "expert")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    if exchange == "two renames":  # where the C library cannot swap two folders in one step
        monkeypatch.setattr(writer, "_renameat2", lambda: None)
    original, calls = torch.save, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == killed_at:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_expert(expert("new", seed=2), folder, overwrite=True)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    same_expert(load_expert(folder, architecture=nn.Linear(3, 2)), expert("old", seed=1))
    assert leftovers(tmp_path) == []

    monkeypatch.setattr(torch, "save", original)
    save_expert(expert("new", seed=2), folder, overwrite=True)
    same_expert(load_expert(folder, architecture=nn.Linear(3, 2)), expert("new", seed=2))
    assert leftovers(tmp_path) == []


def test_an_expert_folder_behind_a_link_is_replaced_and_the_link_kept(tmp_path):
    real = save_expert(expert("old", seed=1), tmp_path / "real")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    save_expert(expert("new", seed=2), tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_symlink()
    same_expert(load_expert(tmp_path / "link", architecture=nn.Linear(3, 2)), expert("new", seed=2))
    same_expert(load_expert(real, architecture=nn.Linear(3, 2)), expert("new", seed=2))
    assert leftovers(tmp_path) == []


def test_replacing_an_expert_with_a_headless_one_leaves_no_old_head(tmp_path):
    folder = save_expert(expert(), tmp_path / "expert")
    save_expert(Expert(nn.Linear(3, 2), "headless"), folder, overwrite=True)
    assert sorted(path.name for path in folder.iterdir()) == ["expert.json", "weights.pt"]
    assert load_expert(folder, architecture=nn.Linear(3, 2)).head is None


# --------------------------------------------------------------------------- cache rows
def test_a_cache_row_that_cannot_be_written_is_still_returned(tmp_path, fail_fsync):
    X = np.random.RandomState(0).normal(size=(40, 4))
    task = (X, (X[:, 0] > 0).astype(int))
    expected = FisherTaskEmbedder(random_state=0, head_epochs=5).fit_transform([task])
    fail_fsync(errno.EFBIG, times=10)
    with pytest.warns(
        UserWarning, match=r"Could not write the cache file .*could not write .*\.npz: .*File too large"
    ):
        rows = FisherTaskEmbedder(random_state=0, head_epochs=5, memory=tmp_path).fit_transform([task])
    np.testing.assert_array_equal(rows, expected)
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob(".*.tmp"))


def test_the_zoos_features_that_cannot_be_cached_are_still_used(tmp_path, fail_fsync):
    torch.manual_seed(0)
    experts = [Expert(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), "relu")]
    X = np.random.RandomState(0).normal(size=(40, 4))
    tasks = [(X, (X[:, 0] > 0).astype(int))]
    expected = error_matrix(experts, tasks, random_state=0, device="cpu")
    fail_fsync(errno.EFBIG, times=10)
    with pytest.warns(
        UserWarning, match=r"Could not write the cache file .*File too large.*features are kept"
    ):
        errors = error_matrix(experts, tasks, random_state=0, device="cpu", cache=tmp_path)
    np.testing.assert_array_equal(errors, expected)
    assert not list(tmp_path.rglob("*.npz"))


def test_a_cache_row_is_read_back_only_from_a_regular_file(tmp_path):
    path = tmp_path / "row.npz"
    save_checked(path, "key", "the row is kept", row=np.arange(3.0))
    (row,) = load_checked(path, "key", ("row",), "row")
    np.testing.assert_array_equal(row, np.arange(3.0))
    assert load_checked(tmp_path / "missing.npz", "key", ("row",), "row") is None
    assert load_checked(tmp_path / "row.npz" / "under-a-file.npz", "key", ("row",), "row") is None
    path.unlink()
    os.mkfifo(path)
    with pytest.warns(UserWarning, match="is not a regular file"):
        assert load_checked(path, "key", ("row",), "row") is None


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_a_damaged_cache_row_is_replaced_keeping_its_mode(mode, tmp_path, umask):
    path = tmp_path / "row.npz"
    path.write_bytes(b"damaged")
    os.chmod(path, mode)
    save_checked(path, "key", "the row is kept", row=np.arange(3.0))
    assert stat.S_IMODE(path.stat().st_mode) == mode
    np.testing.assert_array_equal(load_checked(path, "key", ("row",), "row")[0], np.arange(3.0))


def test_writing_a_folder_into_a_missing_parent_names_the_folder(tmp_path):
    target = tmp_path / "missing" / "expert"
    with pytest.raises(FileNotFoundError, match=f"could not write {target}"):
        writer.write_folder(target, lambda folder: None)
    assert Path(tmp_path).exists() and not (tmp_path / "missing").exists()
