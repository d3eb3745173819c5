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

from imgwatch.model import Condition, ConditionKind, utcnow

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

    def set_condition(self, condition: Condition, *, keep_confirmation: bool = True) -> None: ...

    def clear_condition(self, kind: str, owners: Sequence[str]) -> int: ...


@dataclass(frozen=True, slots=True)
class DeleteGuard:
    share: float = 0.5
    minimum: int = 100

    def holds(self, gone: int, live: int, *, empty: bool = False) -> bool:
        """Too many at once: more than `share` of the live rows, and at least
        `minimum`; or all of them, the image directory left empty. A share of 1 turns
        the guard off (for a folder that is emptied on purpose, an inbox)."""
        if self.share >= 1:
            return False
        return empty or (gone >= self.minimum and gone > self.share * live)


@dataclass(frozen=True, slots=True)
class Hold:
    rows: int
    message: str
    since: dt.datetime


class HoldState:
    """The hold as this process knows it, for STATUS=, metrics and the health check,
    and for the daemon's writer: while a hold lasts, every delete waits with it. Its
    lock is held while deletions are settled: the writer and the reconcile settle
    from two threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._hold: Hold | None = None

    @property
    def current(self) -> Hold | None:
        return self._hold

    def set(self, hold: Hold | None) -> None:
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
        quiet: bool = False,
    ) -> None:
        self.store = store
        # Without WordPress, or a purge to hand rows to, a purge is a forget.
        self.policy = "forget" if policy == "purge" and purge is None else policy
        self.guard = guard
        self.where = where  # the image directory, as the messages name it
        self.hold = hold or HoldState()
        self.purge = purge
        self.quiet = quiet  # a dry run: what would happen is its own output

    def settle(
        self,
        gone: list[GoneRow],
        live: int,
        *,
        whole_tree: bool,
        empty_tree: bool = False,
        earlier: int = 0,
    ) -> tuple[int, int]:
        """Apply or hold the deletion of `gone` rows out of `live` ones. whole_tree:
        a reconcile, which sees every file (a hold it does not renew is over, and an
        operator's confirmation is for it to apply); else a run of delete events,
        `earlier` rows having gone in the runs just before it (they count with it).
        Returns (rows settled, rows held)."""
        with self.hold.lock:
            recorded = self._recorded()
            if whole_tree:
                return self._settle_tree(gone, live, recorded, empty_tree)
            if recorded is not None or self.hold.current is not None:
                # Waits with the others; the next look at the whole tree counts them.
                if recorded is not None and self.hold.current is None:
                    self.hold.set(Hold(_rows(recorded), recorded.message, recorded.since))
                if not self.quiet:
                    log.info("%d more deletion(s) held with the others", len(gone))
                return 0, len(gone)
            if self.guard.holds(len(gone) + earlier, live, empty=empty_tree):
                return 0, self._hold(gone, live, None, empty=empty_tree)
            return self._apply(gone), 0

    def _settle_tree(
        self, gone: list[GoneRow], live: int, recorded: Condition | None, empty_tree: bool
    ) -> tuple[int, int]:
        """A reconcile's: it sees every file, so it decides whether a hold goes on."""
        known = self.hold.current
        held = recorded is not None or known is not None
        # How many were held: as recorded, or (another process cleared the record) as
        # this one knew it.
        before = _rows(recorded) if recorded is not None else known.rows if known else 0
        if not gone:
            if held:
                self._end(f"the {before} held deletion(s) are void: the files are back")
            return 0, 0
        if self._confirmed(recorded, len(gone), empty_tree):
            settled = self._apply(gone)
            self._end(f"applied {settled} confirmed deletion(s)")
            return settled, 0
        if self.guard.holds(len(gone), live, empty=empty_tree):
            return 0, self._hold(gone, live, recorded, empty=empty_tree)
        if held and len(gone) != before:
            # After a hold, what is still gone is settled only once it stays the same
            # for a look: a sync tool refilling the folder is not cut off halfway.
            why = (
                f"{len(gone)} row(s) still gone in {self.where} after a hold of {before}: "
                f"{VERBS[self.policy]} if they stay gone until the next look"
            )
            return 0, self._hold(gone, live, recorded, empty=False, why=why)
        settled = self._apply(gone)
        if held:
            self._end(
                f"most files are back; the {settled} still gone, too few to hold, are "
                f"{VERBS[self.policy]}"
            )
        return settled, 0

    def _confirmed(self, recorded: Condition | None, gone: int, empty_tree: bool) -> bool:
        """An operator confirmed the hold, and what is gone now is what was held (or
        less): a confirmation of 150 deletions is not one of a share that has since
        come up empty."""
        return (
            recorded is not None
            and recorded.confirmed_at is not None
            and gone <= _rows(recorded)
            and (not empty_tree or recorded.reason == "empty")
        )

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
        if not self.quiet:
            said = _SAID[self.policy]
            for name in names[:_NAMED_MAX]:
                log.info(said, name)
            if len(names) > _NAMED_MAX:
                more = len(names) - _NAMED_MAX
                log.info("… and %d more file(s) gone, %s", more, VERBS[self.policy])
        return count

    def _hold(
        self,
        gone: list[GoneRow],
        live: int,
        recorded: Condition | None,
        *,
        empty: bool,
        why: str = "",
    ) -> int:
        """Record the hold and say so: once by each process, again when its size
        changes."""
        now = utcnow()
        rows = len(gone)
        verb = VERBS[self.policy]
        if why:
            pass
        elif empty:
            why = (
                f"image directory {self.where} is empty but {rows} row(s) say files were "
                f"there: none is {verb} until the files are back (not mounted?) or an "
                "operator runs imgwatch retry --confirm-deletes"
            )
        else:
            why = (
                f"{rows} of {max(live, rows)} row(s) would be {verb} at once (the guard holds "
                f"more than {self.guard.share:.0%} and at least {self.guard.minimum}): "
                f"nothing is deleted until the files are back in {self.where} or an "
                "operator runs imgwatch retry --confirm-deletes"
            )
        known = self.hold.current
        if self.quiet:
            pass
        elif known is None:
            log.error("deletions held: %s", why)
        elif known.rows != rows:
            log.warning("deletions still held, now %d: %s", rows, why)
        since = recorded.since if recorded is not None else now
        grown = recorded is not None and rows > _rows(recorded)
        self.store.set_condition(
            Condition(
                ConditionKind.DELETIONS_HELD,
                "",
                "empty" if empty else "many",
                why,
                since,
                now,
                rows,
            ),
            keep_confirmation=not grown,  # more gone than was confirmed: ask again
        )
        self.hold.set(Hold(rows, why, since))
        return len(gone)

    def _recorded(self) -> Condition | None:
        return next(
            (c for c in self.store.conditions() if c.kind == ConditionKind.DELETIONS_HELD), None
        )

    def _end(self, why: str) -> None:
        self.store.clear_condition(ConditionKind.DELETIONS_HELD, [""])
        self.hold.set(None)
        if not self.quiet:
            log.warning("deletions no longer held: %s", why)


def _rows(condition: Condition | None) -> int:
    return 0 if condition is None else condition.rows or 0


# Rows named one by one in the log when many are settled at once; the rest are counted.
_NAMED_MAX = 20
_SAID = {
    "missing": "missing %r: deleted or moved away, row kept",
    "forget": "forgot %r: deleted or moved away, row removed",
    "purge": "purging %r: deleted or moved away",
}
