"""Rows whose file is gone, as IMGWATCH_ON_DELETE says, behind a guard against mass deletion.

`missing` marks them (the row and its URL stay), `forget` removes them, `purge`
removes them and deletes their media item in WordPress unless another row shares
it (on the upload side: the row writer never waits on WordPress).

The guard: a reconcile, or a run of delete events, that would take more than a
share of the rows (by default more than half, and at least 100) does nothing. A
share that comes up empty, a wrong IMGWATCH_IMAGE_DIR, a sync tool that wipes the
folder before refilling it, an `rm -rf` in the wrong place: far more often that
than a deliberate deletion of most of an archive. An image directory with no
files at all while rows say otherwise is held whatever the count. The hold is
said in one loud line, recorded for `imgwatch status`, and lasts until the files
come back (then nothing happened) or an operator confirms it
(`imgwatch retry --confirm-deletes`; the next reconcile applies it).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from imgwatch.store import DELETIONS_HELD, Condition, utcnow

log = logging.getLogger(__name__)

# What each policy does to a row, in the words of the log and the hold.
VERBS = {"missing": "marked missing", "forget": "forgotten", "purge": "purged"}


class GoneRow(NamedTuple):
    """A row whose file is not on disk any more."""

    id: int
    file_name: str


class GoneRows(Protocol):
    """What settling gone rows needs of the store (or a dry run's stand-in)."""

    def mark_missing(self, ids: Sequence[int], *, names: Sequence[str] | None = None) -> int: ...

    def forget(self, ids: Sequence[int]) -> int: ...

    def conditions(self) -> list[Condition]: ...

    def set_condition(self, condition: Condition) -> None: ...

    def clear_condition(self, kind: str, owners: Sequence[str]) -> int: ...


@dataclass(frozen=True, slots=True)
class DeleteGuard:
    share: float = 0.5
    minimum: int = 100

    def holds(self, gone: int, live: int) -> bool:
        """Too many at once: more than `share` of the live rows, and at least `minimum`."""
        return gone >= self.minimum and gone > self.share * live


@dataclass(frozen=True, slots=True)
class Hold:
    rows: int
    message: str
    since: dt.datetime


class HoldState:
    """The hold as this process knows it, for STATUS=, metrics and the health check,
    and for the daemon's writer: while a hold lasts, every delete waits with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hold: Hold | None = None

    @property
    def current(self) -> Hold | None:
        return self._hold

    def set(self, hold: Hold | None) -> None:
        with self._lock:
            self._hold = hold


class Deletions:
    """Settles gone rows: held, or missing/forgotten/purged as the policy says."""

    def __init__(
        self,
        store: GoneRows,
        *,
        policy: str,
        guard: DeleteGuard,
        where: str,
        hold: HoldState | None = None,
        purge: Callable[[list[GoneRow]], None] | None = None,
    ) -> None:
        self.store = store
        # Without WordPress, or a purge to hand rows to, a purge is a forget.
        self.policy = "forget" if policy == "purge" and purge is None else policy
        self.guard = guard
        self.where = where  # the image directory, as the messages name it
        self.hold = hold or HoldState()
        self.purge = purge

    def settle(
        self, gone: list[GoneRow], live: int, *, whole_tree: bool, empty_tree: bool = False
    ) -> tuple[int, int]:
        """Apply or hold the deletion of `gone` rows out of `live` ones. whole_tree:
        a reconcile, which sees every file (a hold it does not renew is over, and an
        operator's confirmation is for it to apply); else a run of delete events.
        Returns (rows settled, rows held)."""
        recorded = self._recorded()
        if whole_tree and not gone:
            if recorded is not None:
                self._end(f"the {recorded.rows or 0} held deletion(s) are void: the files are back")
            return 0, 0
        confirmed = whole_tree and recorded is not None and recorded.confirmed_at is not None
        held = not confirmed and (
            empty_tree
            or self.guard.holds(len(gone), live)
            or (not whole_tree and self.hold.current is not None)
        )
        if held:
            return 0, self._hold(gone, live, recorded, whole_tree=whole_tree, empty=empty_tree)
        settled = self._apply(gone)
        if whole_tree and recorded is not None:
            self._end(
                f"applied {settled} confirmed deletion(s)"
                if confirmed
                else f"most files are back; the {settled} still gone, too few to hold, are "
                f"{VERBS[self.policy]}"
            )
        return settled, 0

    def _apply(self, gone: list[GoneRow]) -> int:
        if not gone:
            return 0
        ids, names = [g.id for g in gone], [g.file_name for g in gone]
        if self.policy == "missing":
            count = self.store.mark_missing(ids, names=names)
        elif self.policy == "forget":
            count = self.store.forget(ids)
        else:
            assert self.purge is not None
            self.purge(gone)  # media first, then the row: on the upload side
            count = len(gone)
        said = _SAID[self.policy]
        for name in names[:_NAMED_MAX]:
            log.info(said, name)
        if len(names) > _NAMED_MAX:
            log.info("… and %d more file(s) gone, %s", len(names) - _NAMED_MAX, VERBS[self.policy])
        return count

    def _hold(
        self,
        gone: list[GoneRow],
        live: int,
        recorded: Condition | None,
        *,
        whole_tree: bool,
        empty: bool,
    ) -> int:
        now = utcnow()
        rows = len(gone) if whole_tree or recorded is None else (recorded.rows or 0) + len(gone)
        verb = VERBS[self.policy]
        if empty:
            why = (
                f"image directory {self.where} is empty but {rows} row(s) say files were "
                f"there: not {verb} (not mounted?)"
            )
        else:
            why = (
                f"{rows} of {live} row(s) would be {verb} at once (the guard holds more than "
                f"{self.guard.share:.0%} and at least {self.guard.minimum}): nothing is "
                f"deleted until the files are back in {self.where} or an operator runs "
                "imgwatch retry --confirm-deletes"
            )
        known = self.hold.current
        if known is None or known.rows != rows:  # said once by each process, and on a change
            log.error("deletions held: %s", why)
        since = recorded.since if recorded is not None else now
        self.store.set_condition(
            Condition(DELETIONS_HELD, "", "empty" if empty else "many", why, since, now, rows)
        )
        self.hold.set(Hold(rows, why, since))
        return len(gone)

    def _recorded(self) -> Condition | None:
        return next((c for c in self.store.conditions() if c.kind == DELETIONS_HELD), None)

    def _end(self, why: str) -> None:
        self.store.clear_condition(DELETIONS_HELD, [""])
        self.hold.set(None)
        log.warning("deletions no longer held: %s", why)


# Rows named one by one in the log when many are settled at once; the rest are counted.
_NAMED_MAX = 20
_SAID = {
    "missing": "missing %r: deleted or moved away, row kept",
    "forget": "forgot %r: deleted or moved away, row removed",
    "purge": "purging %r: deleted or moved away",
}
