"""Who is uploading a row: `host:pid`, and the claims of this host's dead processes.

A claim has a lease (db/uploadqueue.py), so another host takes a row over once it
runs out; on the same host a dead process is told at once, by its pid.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable

from imgwatch.db.store import ImageStore
from imgwatch.model import ConditionKind

log = logging.getLogger(__name__)


def claim_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def release_dead_claims(store: ImageStore) -> int:
    """Claims this host's earlier, now dead, processes left behind (kill -9 mid-upload):
    released at once rather than after their lease. Their record of a pause goes too."""
    released = store.release_claims_of(dead_owners(store.claim_owners(_host_prefix())))
    if released:
        log.info("released %d upload claim(s) of earlier processes on this host", released)
    paused = [c.owner for c in store.conditions() if c.kind == ConditionKind.UPLOADS_PAUSED]
    store.clear_condition(ConditionKind.UPLOADS_PAUSED, dead_owners(paused))
    return released


def dead_owners(owners: Iterable[str]) -> list[str]:
    """The host:pid owners among these that were processes of this host, now gone."""
    prefix = _host_prefix()
    dead = []
    for owner in owners:
        pid_text = owner[len(prefix) :] if owner.startswith(prefix) else ""
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            dead.append(owner)
    return dead


def _host_prefix() -> str:
    return socket.gethostname() + ":"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, someone else's
    return True


def take_over(store: ImageStore) -> None:
    """Before uploading: what this host's dead processes left is let go, and rows
    uploaded before imgwatch kept what it sent get their words as sent."""
    release_dead_claims(store)
    baseline = store.baseline_text_digests()
    if baseline:
        log.info(
            "%d uploaded row(s) from before imgwatch kept what it sent to WordPress: their "
            "words as they are now count as what WordPress has",
            baseline,
        )
