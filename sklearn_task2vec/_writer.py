"""The one way this package writes a file or a folder: :func:`write_file` and :func:`write_folder`.

Every file the package writes goes through here: the command line's outputs, the embedding
cache's rows, the zoo's feature cache, expert folders and the demo's figure. Their guarantees:

* **Whole or nothing.** The content is written to a hidden temporary name beside the target,
  flushed to disk, and only then published under the target's name, so a reader (another
  process too) sees the old file or the new one, never half of one, and a killed writer
  leaves the old file in place. A folder (an expert) is written whole beside its target and
  renamed into place, so a save killed between its files leaves the old folder loadable.
* **No clobbering unless asked.** Without ``overwrite`` the target's name is taken with an
  operation that fails if it exists (a hard link of the temporary file; where hard links
  are not supported, an exclusive create of the name first), at publish time: a target that
  appeared while the content was computed is not replaced. With ``overwrite`` a regular file
  is replaced by a rename; a folder, a FIFO, a socket or a device is never replaced.
* **Modes from the umask.** A new file is created with mode ``0o666`` and a new folder with
  ``0o777``, less the process's umask (the operating system applies it, and a default ACL
  too), as ``open`` would; a file or folder that is replaced keeps its permission bits.
* **The path named in every error.** An ``OSError`` or ``ValueError`` is raised again, of the
  same type and with the same ``errno``, as ``could not write <path>: <error>``.
* **Nothing computed is lost.** With ``rescue=True``, when the target cannot be written the
  content is written again to a new file, ``<stem>.<pid>.<token>.rescued<suffix>``, beside the
  target or else in the system's temporary folder, and the error says where it is.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import io
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

# link() fails with these where the file system has no hard links (FAT, some FUSE and network
# file systems): the name is then taken by an exclusive create instead.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}
# fsync() fails with these on file systems that cannot flush a file (some FUSE ones): the
# content is written all the same.
_NO_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
# Linux's renameat2 flag that swaps two paths in one step (glibc 2.28 or later).
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def write_file(path, write, *, overwrite=False, text=False, rescue=False):
    """Write a file through ``write(file)``, whole or not at all, and publish it at ``path``.

    Parameters
    ----------
    path : str or path-like
        The target. Its folder must exist.
    write : callable
        Called with an open file (binary, or text with ``text=True``) and writes the content.
        It may be called twice: again for the rescue file (``rescue=True``).
    overwrite : bool, default=False
        Replace an existing regular file (keeping its permission bits). Without it, a target
        that exists when the content is published, even one that appeared after this call
        started, is an error and is left untouched.
    text : bool, default=False
        Give ``write`` a UTF-8 text file, with newlines written as given (what :mod:`csv` needs).
    rescue : bool, default=False
        When the target cannot be written, write the content to a new file beside it (or in the
        system's temporary folder) and name it in the error.

    Returns
    -------
    path : pathlib.Path
        The target.

    Raises
    ------
    OSError or ValueError
        The failure, of its own type and ``errno``, as ``could not write <path>: ...`` (and,
        with ``rescue``, where the content went instead). ``FileExistsError`` when the target
        exists and ``overwrite`` is false; ``IsADirectoryError`` or ``FileExistsError`` when it is
        not a regular file.
    """
    path = Path(path)
    try:
        _publish_file(path, write, overwrite=overwrite, text=text)
    except (OSError, ValueError) as exc:
        rescued = ""
        if rescue:
            rescued = _rescue(path, write, text)
        raise _named(exc, path, rescued) from exc
    return path


def write_folder(path, fill, *, overwrite=False, check=None):
    """Write a folder through ``fill(folder)`` beside ``path``, then rename it to ``path``.

    Parameters
    ----------
    path : str or path-like
        The target folder. Its parent must exist. A symbolic link to a folder is followed.
    fill : callable
        Called with a new, empty folder (a :class:`pathlib.Path`); writes the files into it,
        with :func:`write_file`.
    overwrite : bool, default=False
        Replace an existing folder that is not empty. An empty folder is always replaced (it
        holds nothing to lose), keeping its permission bits, as a replaced non-empty folder does.
    check : callable or None, default=None
        Called with ``path`` when it is a folder that is not empty, just before it is replaced
        (with ``overwrite``) or refused (without): it raises when the folder is not one that
        may be replaced, which is then left untouched.

    Returns
    -------
    path : pathlib.Path
        The target.

    Notes
    -----
    On Linux the new folder and the old one are swapped in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), so the target is never missing; elsewhere the old folder is first
    renamed to a hidden name beside it, then the new one into place (a process killed between
    the two renames leaves the old folder under the hidden name ``.<name>.<token>.old``).
    """
    path = Path(path)
    # A link to a folder is followed: the folder it names is replaced, and the link stays.
    target = path.resolve() if path.is_symlink() else path
    if target.is_dir() and any(target.iterdir()):
        if check is not None:
            check(path)
        if not overwrite:
            raise _named(_exists(), path, "")
    try:
        existing = _permission_bits(target, folder=True)
        temporary = _new_folder(target.parent, f".{target.name}.", ".tmp")
    except OSError as exc:
        raise _named(exc, path, "") from exc
    try:
        fill(temporary)
        if existing is not None:
            os.chmod(temporary, existing)
        _publish_folder(temporary, target, replace=overwrite)
    except (OSError, ValueError) as exc:
        raise _named(exc, path, "") from exc
    finally:
        shutil.rmtree(temporary, ignore_errors=True)  # gone once published
    return path


def _publish_file(path, write, *, overwrite, text):
    existing = None
    if overwrite:
        existing = _permission_bits(path, folder=False)
    handle, temporary = _new_file(path.parent, f".{path.name}.", ".tmp")
    try:
        _write_to(handle, write, text, mode=existing)
        if overwrite:
            os.replace(temporary, path)
        else:
            _link_new(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _write_to(handle, write, text, mode=None):
    """``write`` the content to the open file descriptor ``handle``, flush it to disk, close it;
    first give the file the permission bits ``mode``, when given."""
    with os.fdopen(handle, "wb") as binary:
        if mode is not None:
            os.fchmod(handle, mode)  # before any content: the old file's readers, no others
        if text:
            wrapper = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            write(wrapper)
            wrapper.flush()
            wrapper.detach()  # the binary file closes the descriptor
        else:
            write(binary)
        binary.flush()
        # On disk before the rename publishes it: a crash must not leave an empty file there.
        try:
            os.fsync(binary.fileno())
        except OSError as exc:
            if exc.errno not in _NO_FSYNC:
                raise


def _permission_bits(path, *, folder):
    """The permission bits of ``path`` when it exists and is a folder (``folder=True``) or a
    regular file, None when it does not exist. Anything else (a folder where a file goes, a
    file where a folder goes, a FIFO, a socket, a device) is an error: it is never replaced."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if folder and not stat.S_ISDIR(mode):
        raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder; it is never replaced")
    if not folder and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "it is a folder; it is never replaced by a file")
    if not folder and not stat.S_ISREG(mode):
        raise FileExistsError(
            errno.EEXIST, "it is not a regular file (a FIFO, a socket or a device); it is never replaced"
        )
    return stat.S_IMODE(mode)


def _exists():
    return FileExistsError(
        errno.EEXIST,
        "it exists (it may have appeared after this run started); it is replaced only with "
        "overwrite=True (--overwrite on the command line)",
    )


def _link_new(temporary, path):
    """Give the file ``temporary`` the name ``path`` only if no file has it (atomically)."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise _exists() from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # No hard links here: take the name with an exclusive create, then move the content
        # over it (a reader may see the file empty for that moment, never another's content).
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise _exists() from None
        os.replace(temporary, path)


def _new_file(folder, prefix, suffix):
    """``(descriptor, path)`` of a new file in ``folder`` under a fresh random name, created
    with mode ``0o666`` less the umask (``tempfile.mkstemp`` would make it 0o600)."""
    while True:
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:  # a name another writer drew: draw again
            continue


def _new_folder(parent, prefix, suffix):
    """A new folder in ``parent`` under a fresh random name, mode ``0o777`` less the umask."""
    while True:
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue


def _publish_folder(temporary, path, *, replace):
    """Rename the folder ``temporary`` to ``path``: onto nothing or an empty folder always (a
    rename cannot replace a folder that is not empty), and onto a full one with ``replace``."""
    try:
        os.rename(temporary, path)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not replace:  # a folder that appeared, and filled, after the call started
            raise _exists() from None
    if _exchange(temporary, path):
        return  # temporary now holds the old folder, which write_folder removes
    old = _new_folder(path.parent, f".{path.name}.", ".old")
    os.rename(path, old / path.name)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.rename(old / path.name, path)  # put the old folder back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(first, second):
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the C
    library or the file system does not offer it."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code))


@functools.cache
def _renameat2():
    """The C library's ``renameat2``, or None (not Linux, or glibc before 2.28)."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except (OSError, TypeError):  # no C library to load by that name
        return None


def _rescue(path, write, text):
    """Write the content again to a new file beside ``path``, else in the temporary folder;
    a sentence saying where it went (or that it could not be saved)."""
    failures = []
    for folder in dict.fromkeys([path.parent, Path(tempfile.gettempdir())]):
        try:
            handle, rescued = _new_file(folder, f"{path.stem}.{os.getpid()}.", f".rescued{path.suffix}")
        except OSError as exc:
            failures.append(f"{folder}: {exc}")
            continue
        try:
            _write_to(handle, write, text)
        except (OSError, ValueError) as exc:
            Path(rescued).unlink(missing_ok=True)
            failures.append(f"{folder}: {exc}")
            continue
        return f"; its content was saved to {rescued} instead"
    return f"; its content could not be saved elsewhere either ({'; '.join(failures)})"


def _named(exc, path, rescued):
    """``exc`` again, of its type and errno, its message starting with the path."""
    message = f"could not write {path}: {exc}{rescued}"
    if isinstance(exc, OSError):
        # Built-in OSError types take one message; errno is set after, so that str() stays it.
        error = (type(exc) if type(exc).__module__ == "builtins" else OSError)(message)
        error.errno = exc.errno
        return error
    return ValueError(message)
