"""Shared fixtures and data factories of the test suite.

Tests that start processes (joblib's loky workers, a dask cluster, a fresh Python) or train
real networks are marked ``slow``: ``make test`` runs them all; ``pytest -m "not slow"`` is
the quick loop while developing.
"""

import pytest
import torch
from hypothesis import settings
from threadpoolctl import threadpool_limits

# Property tests draw the same examples at every run (a failure is a bug, never a draw's luck)
# and have no per-example deadline (the CI machine is shared and its timings noisy).
settings.register_profile("deterministic", derandomize=True, deadline=None)
settings.load_profile("deterministic")


@pytest.fixture
def one_thread():
    """Torch and BLAS on one thread for tiny networks and classifiers: threads gain nothing
    there, and on a busy shared machine they cost a lot (tenfold seen)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def counted(monkeypatch):
    """The tasks actually computed (not loaded from a cache) in this process, by name."""
    from sklearn_task2vec import embedder as embedder_module

    calls = []
    original = embedder_module.embed_task

    def counting(probe, task, *args, **kwargs):
        calls.append(task.where)
        return original(probe, task, *args, **kwargs)

    monkeypatch.setattr(embedder_module, "embed_task", counting)
    return calls


@pytest.fixture
def special_file(monkeypatch):
    """``make(path, kind)``: a FIFO, a listening Unix socket or a folder at ``path`` (sockets
    closed at the test's end)."""
    import os
    import socket

    servers = []

    def make(path, kind):
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        else:
            server = socket.socket(socket.AF_UNIX)
            servers.append(server)
            monkeypatch.chdir(path.parent)  # a socket's path has at most 107 bytes: bind it relative
            server.bind(path.name)

    yield make
    for server in servers:
        server.close()
