"""Background jobs: ``bgapi`` results matched by our own ``Job-UUID``.

FreeSWITCH accepts a client-supplied ``Job-UUID:`` header line on ``bgapi`` and fires
``BACKGROUND_JOB`` with it to every connection subscribed to that event, possibly *before* the
command reply reaches the sender. So the waiter is registered here before the command is sent,
and the event connection of the node resolves it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent.event

from .errors import ConnectionLost, EslError, JobFailed, JobTimeout
from .frames import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobResult:
    """What a job ended with: ``ok``, or failed with a ``cause``.

    FreeSWITCH's convention: a body starting with ``-`` (``-ERR <cause>``, ``-USAGE: ...``) is a
    failure, anything else (``+OK <call uuid>`` for originate, the text of ``status``...) a
    success. ``body`` is the job's body as sent (with its newline); ``value`` the text after
    ``+OK `` (for originate: the call's uuid) or the whole text of other successes; ``cause`` the
    text after ``-ERR `` (for originate: ``USER_NOT_REGISTERED``, ``NO_ANSWER``, ``USER_BUSY``,
    ``SUBSCRIBER_ABSENT``...), ``None`` when ok or for another kind of failure.
    """

    ok: bool
    cause: str | None
    body: str
    job_id: str = ""
    node: str | None = None

    @property
    def value(self) -> str:
        if not self.ok:
            return ""
        text = self.body.strip()
        return text[3:].strip() if text.startswith("+OK") else text

    @classmethod
    def parse(cls, body: str, job_id: str = "", node: str | None = None) -> JobResult:
        """Read a job body: ``-ERR CAUSE`` (or any ``-...``) fails, anything else succeeds."""
        text = body.strip()
        if text.startswith("-ERR"):
            return cls(False, text[4:].strip() or None, body, job_id, node)
        if text.startswith("-") or not text:
            return cls(False, None, body, job_id, node)
        return cls(True, None, body, job_id, node)

    def raise_for_cause(self) -> JobResult:
        """Return self when ok, else raise ``JobFailed`` carrying the cause."""
        if not self.ok:
            raise JobFailed(self.cause, self.body, self.node)
        return self


class Job:
    """A ``bgapi`` job in flight: ``wait(timeout)`` returns its ``JobResult``.

    ``wait`` raises ``JobTimeout`` when the result has not arrived in time (the job stays
    registered, a later ``wait`` may still succeed, until the pool's job lifetime expires it) and
    ``ConnectionLost`` when the node's event connection dropped while the job ran: its result can
    then never be seen.
    """

    def __init__(self, job_id: str, node: str, command: str) -> None:
        self.job_id = job_id
        self.node = node
        self.command = command
        self.created = time.monotonic()
        self._result: gevent.event.AsyncResult = gevent.event.AsyncResult()

    def ready(self) -> bool:
        return self._result.ready()

    @property
    def result(self) -> JobResult | None:
        """The result if it has arrived (``None`` otherwise or if the job failed to report)."""
        if self._result.ready() and self._result.successful():
            return self._result.value
        return None

    def wait(self, timeout: float | None) -> JobResult:
        """Wait up to ``timeout`` seconds for the result; see the class docstring for errors."""
        try:
            return self._result.get(timeout=timeout)
        except gevent.Timeout:
            raise JobTimeout(
                f"job {self.job_id} ({self.command}) has no result after {timeout:g} s",
                self.node) from None

    def on_done(self, callback: Callable[[Job], None]) -> None:
        """Call ``callback(job)`` from the hub once the job ends: a result, or an error (its
        event connection lost, expired, the pool stopped). It must not block."""
        self._result.rawlink(lambda _: callback(self))

    def _set(self, result: JobResult) -> None:
        if not self._result.ready():
            self._result.set(result)

    def _fail(self, exc: EslError) -> None:
        if not self._result.ready():
            self._result.set_exception(exc)

    def __repr__(self) -> str:
        return f"<Job {self.job_id} {self.command} on {self.node}>"


class JobRegistry:
    """Jobs waiting for their ``BACKGROUND_JOB``, by Job-UUID."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        # Handlers run in reader greenlets of one thread; the lock only matters if a caller uses
        # the pool from several OS threads, which gevent does not support anyway. Cheap insurance.
        self._lock = threading.Lock()
        self.completed = 0
        self.failed = 0
        self.lost = 0
        self.expired = 0

    def register(self, job_id: str, node: str, command: str) -> Job:
        """Create the waiter; call before the ``bgapi`` is written."""
        job = Job(job_id, node, command)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def discard(self, job_id: str) -> None:
        """Forget a job whose ``bgapi`` was not accepted."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def resolve(self, node: str, event: Event) -> bool:
        """Complete the job named by a ``BACKGROUND_JOB`` event; False if it is not ours."""
        job_id = event.get("Job-UUID") or ""
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is None:
            log.debug("BACKGROUND_JOB %s from %s is not one of ours", job_id, node)
            return False
        result = JobResult.parse(event.body, job_id, job.node)
        if result.ok:
            self.completed += 1
        else:
            self.failed += 1
        job._set(result)
        return True

    def fail_node(self, node: str, reason: str) -> int:
        """Release every job of ``node`` with ``ConnectionLost`` (its event connection died)."""
        with self._lock:
            lost = [job for job in self._jobs.values() if job.node == node]
            for job in lost:
                del self._jobs[job.job_id]
        for job in lost:
            job._fail(ConnectionLost(
                f"event connection lost while job {job.job_id} ran ({reason}); "
                "its outcome is unknown", node))
        self.lost += len(lost)
        return len(lost)

    def fail_all(self, reason: str) -> None:
        """Release every job (the pool is stopping)."""
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:
            job._fail(ConnectionLost(f"{reason}; the outcome of job {job.job_id} is unknown",
                                     job.node))

    def expire(self, max_age: float) -> int:
        """Drop jobs older than ``max_age`` seconds, releasing their waiters with ``JobTimeout``."""
        limit = time.monotonic() - max_age
        with self._lock:
            old = [job for job in self._jobs.values() if job.created < limit]
            for job in old:
                del self._jobs[job.job_id]
        for job in old:
            job._fail(JobTimeout(f"job {job.job_id} expired after {max_age:g} s without a result",
                                 job.node))
        self.expired += len(old)
        return len(old)

    def counts(self) -> dict[str, int]:
        """Pending jobs and how the others ended (the ``jobs`` part of the pool's metrics)."""
        return {"pending": len(self._jobs), "completed": self.completed, "failed": self.failed,
                "lost": self.lost, "expired": self.expired}

    def __len__(self) -> int:
        return len(self._jobs)


__all__ = ["Job", "JobRegistry", "JobResult"]
