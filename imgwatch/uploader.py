"""Getting a recorded file into the WordPress media library exactly once.

The idempotency key is a slug derived from the content (`img-<sha256>`): it is
looked up before every upload and after every error, so a crash, a timeout or a
re-run finds the earlier upload instead of making a second one. The row goes
`pending -> uploading -> done`; anything else ends `failed` with the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imgwatch.errors import PermanentError, TransientError, UploadError
from imgwatch.store import ImageStore, UploadJob, utcnow
from imgwatch.wordpress import Media, MediaClient, upload_file_name

log = logging.getLogger(__name__)

# Persisted retry schedule after a file used up its in-run attempts: 1 min, 2, 4 … 1 h.
RESCHEDULE_BASE = dt.timedelta(minutes=1)
RESCHEDULE_MAX = dt.timedelta(hours=1)
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts within one run, with capped exponential backoff and jitter."""

    attempts: int = 3
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(self.cap, retry_after)
        # Full jitter over the upper half keeps several workers from retrying in step.
        backoff = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security


def reschedule_at(attempts_so_far: int, retry_after: float | None = None) -> dt.datetime:
    """When a failed row is next due, given how many times it already failed."""
    delay = RESCHEDULE_BASE * 2.0 ** min(attempts_so_far, 10)
    if retry_after is not None:
        delay = max(delay, dt.timedelta(seconds=retry_after))
    return utcnow() + min(delay, RESCHEDULE_MAX)


def claim_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def release_dead_claims(store: ImageStore) -> int:
    """Claims this host's earlier, now dead, processes left behind (kill -9 mid-upload):
    released at once rather than after their lease."""
    prefix = socket.gethostname() + ":"
    dead = []
    for owner in store.claim_owners(prefix):
        pid_text = owner[len(prefix) :]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            dead.append(owner)
    released = store.release_claims_of(dead)
    if released:
        log.info("released %d upload claim(s) of earlier processes on this host", released)
    return released


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, someone else's
    return True


class Breaker:
    """Stops hammering a WordPress that is down: after one file used up its retries on
    a transient error, the others fail fast until `cooldown` has passed."""

    def __init__(self, cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._reason = ""

    def trip(self, reason: str) -> None:
        with self._lock:
            self._open_until = self._clock() + self.cooldown
            self._reason = reason

    def reset(self) -> None:
        with self._lock:
            self._open_until = 0.0

    def is_open(self) -> bool:
        """True while uploads are paused after WordPress failed."""
        with self._lock:
            return self._clock() < self._open_until

    def check(self) -> None:
        """Raise TransientError while open."""
        with self._lock:
            if self._clock() < self._open_until:
                raise BreakerOpen(f"not tried, WordPress is down: {self._reason}")


class BreakerOpen(TransientError):
    """Not tried: WordPress failed moments ago and is given time to come back."""


class ContentChanged(Exception):
    """The file on disk no longer has the row's content; a scan will pick up the new one."""


@dataclass(slots=True)
class UploadTally:
    done: int = 0
    reused: int = 0
    failed: int = 0
    skipped: int = 0


class Uploader:
    """Uploads due rows on a bounded pool of workers; each worker writes its own row."""

    def __init__(
        self,
        client: MediaClient,
        store: ImageStore,
        image_dir: Path,
        *,
        workers: int = 4,
        policy: RetryPolicy | None = None,
        share_identical: bool = True,
        delete_replaced: bool = False,
        breaker: Breaker | None = None,
        owner: str = "",
        lease: float = 900.0,
    ) -> None:
        self.client = client
        # Who claims rows (host:pid) and for how long: longer than one upload with all
        # its retries may take, so a live uploader never loses its claim.
        self.owner = owner or claim_owner()
        self.lease = lease
        self.store = store
        self.image_dir = image_dir
        self.workers = workers
        self.policy = policy or RetryPolicy()
        self.share_identical = share_identical
        self.delete_replaced = delete_replaced
        self.breaker = breaker or Breaker()
        # Two rows with the same content must not both miss the lookup and both upload.
        self._slug_locks = [threading.Lock() for _ in range(64)]
        self._tally_lock = threading.Lock()
        # Told of each upload's outcome and duration, and of each retry (metrics).
        self.on_upload: Callable[[str, float], None] | None = None
        self.on_retry: Callable[[], None] | None = None

    def slug_for(self, job: UploadJob) -> str:
        if self.share_identical:
            return f"img-{job.sha256}"
        # One media item per (content, name): still stable across re-runs.
        name_key = hashlib.sha256(job.file_name.encode()).hexdigest()[:16]
        return f"img-{job.sha256[:48]}-{name_key}"

    def upload_all(self, jobs: Iterable[UploadJob]) -> UploadTally:
        tally = UploadTally()

        def run(job: UploadJob) -> None:
            outcome = self.upload(job)
            with self._tally_lock:
                setattr(tally, outcome, getattr(tally, outcome) + 1)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="upload") as pool:
            for future in [pool.submit(run, job) for job in jobs]:
                future.result()
        return tally

    def upload(self, job: UploadJob) -> str:
        """Bring one row to `done` or `failed`; returns done|reused|failed|skipped."""
        started = time.monotonic()
        outcome = self._upload(job)
        if self.on_upload is not None:
            self.on_upload(outcome, time.monotonic() - started)
        return outcome

    def _upload(self, job: UploadJob) -> str:
        if not self.store.mark_uploading(job, self.owner, self.lease):
            # New content (that version will be uploaded), or another daemon on this
            # database is uploading it right now.
            return "skipped"
        slug = self.slug_for(job)
        lock = self._slug_locks[hash(slug) % len(self._slug_locks)]
        try:
            with lock:
                media, reused = self._upload_with_retries(job, slug)
        except ContentChanged as exc:
            log.info("not uploaded %r: %s", job.file_name, exc)
            self.store.record_upload_failure(job, str(exc), utcnow())
            return "skipped"
        except PermanentError as exc:
            log.warning("upload failed %r: %s", job.file_name, exc)
            self.store.record_upload_failure(job, str(exc), None)
            return "failed"
        except TransientError as exc:
            when = reschedule_at(job.attempts, exc.retry_after)
            log.warning("upload failed %r, next try %s UTC: %s", job.file_name, when, exc)
            self.store.record_upload_failure(job, str(exc), when)
            return "failed"
        if not self.store.record_upload(job, media.id, media.source_url):
            log.info("uploaded %r but its content changed meanwhile", job.file_name)
            return "skipped"
        log.info(
            "%s %r -> %s (media %d)",
            "linked" if reused else "uploaded",
            job.file_name,
            media.source_url,
            media.id,
        )
        self._drop_replaced(job, media)
        return "reused" if reused else "done"

    def _upload_with_retries(self, job: UploadJob, slug: str) -> tuple[Media, bool]:
        attempt = 0
        while True:
            attempt += 1
            try:
                self.breaker.check()
                found = self.client.find_by_slug(slug)
                if found is not None:
                    return found, True
                media = self._send(job, slug)
                self.breaker.reset()
                return media, False
            except BreakerOpen:
                raise
            except TransientError as exc:
                if attempt >= self.policy.attempts:
                    self.breaker.trip(str(exc))
                    raise
                pause = self.policy.delay(attempt, exc.retry_after)
                log.info("retrying %r in %.1fs: %s", job.file_name, pause, exc)
                if self.on_retry is not None:
                    self.on_retry()
                time.sleep(pause)
            # The loop goes back to the lookup: an upload that timed out may have landed.

    def _send(self, job: UploadJob, slug: str) -> Media:
        path = self.image_dir / job.file_name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ContentChanged("file is gone") from None
        except OSError as exc:
            # Followed links were recorded too; open those normally.
            if exc.errno != 40:  # ELOOP from O_NOFOLLOW on a symlink
                raise TransientError(f"cannot open file: {exc.strerror}") from None
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as body:
            sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
            while chunk := body.read(_HASH_CHUNK):
                sha.update(chunk)
                md5.update(chunk)
            if sha.hexdigest() != job.sha256:
                raise ContentChanged("file changed since it was recorded")
            body.seek(0)
            return self.client.upload(
                body,
                file_name=upload_file_name(job.file_name, job.mime_type),
                mime_type=job.mime_type,
                md5_hex=md5.hexdigest(),
                slug=slug,
                fields={
                    "title": job.title or "",
                    "description": job.description or "",
                    "caption": job.caption or "",
                    "alt_text": job.alt_text or "",
                },
            )

    def _drop_replaced(self, job: UploadJob, media: Media) -> None:
        old = job.wp_media_id
        if not self.delete_replaced or old is None or old == media.id:
            return
        if self.store.media_in_use(old, except_id=job.id):
            return
        try:
            if self.client.delete(old):
                log.info("deleted replaced media %d of %r", old, job.file_name)
        except UploadError as exc:
            log.warning("could not delete replaced media %d of %r: %s", old, job.file_name, exc)
