"""A time limit for the examples that sphinx-gallery executes (a ``reset_modules`` hook).

sphinx-gallery has no time limit of its own. Called before each example it arms an alarm of
``SKLEARN_TASK2VEC_EXAMPLE_TIME_LIMIT`` seconds (set by ``conf.py``); called after, it disarms
it. An example still running when the alarm goes off stops with a ``TimeoutError`` that names
the fix, and sphinx-gallery reports it as a failing example, which fails the build. Needs
``SIGALRM`` (POSIX) and sphinx-gallery running examples in the main thread (its default,
``parallel=False``); elsewhere it does nothing.
"""

import os
import signal
import threading
from pathlib import Path


def _alarm(limit, fname):
    def handler(signum, frame):
        raise TimeoutError(
            f"{Path(fname).name} ran longer than {limit} s, the limit for examples executed by "
            f"the documentation build. Make it faster, or name it slow_{Path(fname).name} so that "
            "the gallery shows it without running it (docs/conf.py)."
        )

    return handler


def time_limit(gallery_conf, fname, when):
    """Arm (``when="before"``) or disarm (``when="after"``) the example's alarm."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        return
    if fname is None or when == "after":
        signal.alarm(0)
        return
    limit = int(os.environ.get("SKLEARN_TASK2VEC_EXAMPLE_TIME_LIMIT", "120"))
    signal.signal(signal.SIGALRM, _alarm(limit, fname))
    signal.alarm(limit)
