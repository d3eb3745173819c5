"""Conditions: what a daemon or a rescan is waiting for (model.ConditionKind), kept in
the database so that `imgwatch status` in another process can say it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from imgwatch.db.engine import Database
from imgwatch.db.schema import conditions
from imgwatch.model import Condition, ConditionKind, utcnow


class Conditions(Database):
    """Recorded, refreshed, cleared and confirmed conditions."""

    def conditions(self) -> list[Condition]:
        """Every condition recorded, oldest first."""
        c = conditions.c
        query = select(
            c.kind, c.owner, c.reason, c.message, c.since, c.checked_at, c.rows, c.confirmed_at
        ).order_by(c.id)
        with self.guard("reading conditions"), self.engine.connect() as conn:
            return [Condition(*row) for row in conn.execute(query)]

    def set_condition(self, condition: Condition, *, keep_confirmation: bool = True) -> None:
        """Record (or refresh) a condition; its kind and owner say which one. An
        operator's confirmation already given is kept, unless told otherwise."""
        c = conditions.c
        values: dict[str, Any] = {
            "reason": condition.reason[:32],
            "message": condition.message,
            "rows": condition.rows,
            "since": condition.since,
            "checked_at": condition.checked_at,
        }
        if not keep_confirmation:
            values["confirmed_at"] = None
        which = (c.kind == condition.kind) & (c.owner == condition.owner[:128])
        refresh = update(conditions).where(which).values(**values)
        insert = conditions.insert().values(
            kind=condition.kind, owner=condition.owner[:128], **values
        )

        def add(conn: Connection) -> bool:
            try:
                conn.execute(insert)
            except IntegrityError:  # another process recorded it first
                return False
            return True

        action = "recording a condition"
        if self.transaction(action, lambda conn: conn.execute(refresh).rowcount):
            return
        if not self.transaction(action, add):
            self.transaction(action, lambda conn: conn.execute(refresh))  # refresh theirs

    def clear_condition(self, kind: str, owners: Sequence[str]) -> int:
        """The condition is over (or its process is dead)."""
        if not owners:
            return 0
        c = conditions.c
        stmt = delete(conditions).where(c.kind == kind, c.owner.in_([o[:128] for o in owners]))
        return self.transaction("clearing a condition", lambda conn: conn.execute(stmt).rowcount)

    def confirm_held_deletions(self) -> int:
        """An operator says the held deletions are meant: the next reconcile applies them."""
        c = conditions.c
        stmt = (
            update(conditions)
            .where(c.kind == ConditionKind.DELETIONS_HELD, c.confirmed_at.is_(None))
            .values(confirmed_at=utcnow())
        )
        return self.transaction(
            "confirming held deletions", lambda conn: conn.execute(stmt).rowcount
        )
