"""The directory where worker processes leave their figures for `/metrics` (prometheus_client's
multiprocess mode). Imports nothing of prometheus_client: the variable must be set before it is
imported anywhere in the master, so that the workers it forks count in files."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """``$PROMETHEUS_MULTIPROC_DIR`` emptied of an earlier run's figures, or a new directory
    (under ``$RUNTIME_DIRECTORY`` when systemd gives one), removed at the end."""
    given = os.environ.get(VARIABLE)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):  # an earlier run's figures would be added to ours
            if name.endswith((".db", ".json")):
                os.remove(os.path.join(given, name))
        yield given
        return
    made = tempfile.mkdtemp(prefix="esl-bridge-metrics-", dir=os.environ.get("RUNTIME_DIRECTORY"))
    os.environ[VARIABLE] = made
    owner = os.getpid()
    try:
        yield made
    finally:
        # Workers are forked inside this block and leave it too when they exit: only the
        # master, which made the directory, removes it.
        if os.getpid() == owner:
            shutil.rmtree(made, ignore_errors=True)
