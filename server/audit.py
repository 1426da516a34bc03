"""AuditLog: the append-only, hash-chained record of who did what."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from .db import AsyncSession
from .models import AuditRecord, utcnow

__all__ = ["AuditLog", "ChainBreak", "GENESIS"]

GENESIS = "0" * 64


def _digest(record: AuditRecord) -> str:
    body = {
        "at": record.at.isoformat(),
        "actor_id": record.actor_id,
        "action": record.action,
        "target_type": record.target_type,
        "target_id": record.target_id,
        "detail": record.detail,
        "prev_hash": record.prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    """Where verification found the chain broken, and how."""

    record_id: int
    reason: str


class AuditLog:
    """Appends records inside the caller's unit of work (so an audited change and its record
    commit together) and verifies the chain. ``detail`` never holds patient identifiers."""

    async def append(
        self,
        session: AsyncSession,
        *,
        actor_id: int | None,
        action: str,
        target_type: str,
        target_id: object,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        last = (
            await session.exec(select(AuditRecord).order_by(col(AuditRecord.id).desc()).limit(1))
        ).first()
        record = AuditRecord(
            at=utcnow(),
            actor_id=actor_id,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            detail=detail or {},
            prev_hash=last.hash if last else GENESIS,
            hash="",
        )
        record.hash = _digest(record)
        session.add(record)
        await session.flush()
        return record

    async def verify(self, session: AsyncSession) -> tuple[int, list[ChainBreak]]:
        """Walk the chain from the start; return the record count and every break found."""
        breaks: list[ChainBreak] = []
        prev = GENESIS
        count = 0
        result = await session.exec(select(AuditRecord).order_by(col(AuditRecord.id)))
        for record in result:
            count += 1
            assert record.id is not None
            if record.prev_hash != prev:
                breaks.append(ChainBreak(record.id, "prev_hash does not match the record before"))
            if _digest(record) != record.hash:
                breaks.append(ChainBreak(record.id, "content does not match its hash"))
            prev = record.hash
        return count, breaks
