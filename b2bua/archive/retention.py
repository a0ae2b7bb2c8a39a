"""Retention: when a recording expires, and the sweeper that deletes what has expired.

`RetentionPolicy` turns (end time, direction, extension) into `expires_at`: a
per-extension override wins over a per-direction one, which wins over the default
`recording.retention_days`. `sweep(catalog, now)` deletes every expired row that is not on
legal hold (file removed, row turned into a tombstone, one audit entry each, actor
"system"); it reads no clock, so tests drive it with a fake `now`. `run_sweeper` is the
small asyncio adapter that calls it periodically in the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from b2bua.archive.catalog import Catalog

__all__ = ["DAY_S", "RetentionPolicy", "SweepReport", "run_sweeper", "sweep"]

DAY_S = 86_400.0
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    default_days: int = 30
    by_direction: Mapping[str, int] = field(default_factory=dict)
    by_extension: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for days in (self.default_days, *self.by_direction.values(), *self.by_extension.values()):
            if not isinstance(days, int) or isinstance(days, bool) or days < 1:
                raise ValueError(f"retention days must be a whole number >= 1, got {days!r}")

    def days_for(self, direction: str | None, extension: str | None) -> int:
        if extension is not None and extension in self.by_extension:
            return self.by_extension[extension]
        if direction is not None and direction in self.by_direction:
            return self.by_direction[direction]
        return self.default_days

    def expires_at(self, ended_at: float, direction: str | None, extension: str | None) -> float:
        return ended_at + self.days_for(direction, extension) * DAY_S

    @classmethod
    def from_config(cls, recording: Any) -> RetentionPolicy:
        """From a RecordingConfig: `retention_days`, plus the optional override tables
        `retention_by_direction` / `retention_by_extension` once the config knows them."""
        return cls(
            default_days=int(recording.retention_days),
            by_direction=dict(getattr(recording, "retention_by_direction", None) or {}),
            by_extension=dict(getattr(recording, "retention_by_extension", None) or {}),
        )


@dataclass(frozen=True)
class SweepReport:
    now: float
    deleted: tuple[str, ...]
    held: tuple[str, ...]  # expired but kept: legal hold
    errors: tuple[tuple[str, str], ...]  # (id, what went wrong); retried next sweep


def sweep(
    catalog: Catalog,
    now: float,
    *,
    actor: str = "system",
    source: str = "sweeper",
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SweepReport:
    """Delete everything expired by `now` except recordings on legal hold."""
    from b2bua.archive.catalog import CatalogError

    expired = catalog.expired_ids(now)
    held = tuple(catalog.held_expired_ids(now))
    deleted: list[str] = []
    errors: list[tuple[str, str]] = []
    for n, record_id in enumerate(expired, 1):
        if dry_run:
            deleted.append(record_id)
        else:
            try:
                catalog.delete(
                    record_id, actor=actor, source=source, reason="retention expired", now=now
                )
                deleted.append(record_id)
            except (CatalogError, OSError) as exc:
                errors.append((record_id, str(exc)))
        if progress is not None:
            progress(n, len(expired))
    if not dry_run and (deleted or errors):
        catalog.audit.append(
            actor,
            "purge",
            None,
            source,
            {"deleted": len(deleted), "held": len(held), "errors": len(errors)},
            now,
        )
    return SweepReport(now, tuple(deleted), held, tuple(errors))


def _sweep_fresh(open_catalog: Callable[[], Catalog], now: float) -> SweepReport:
    with open_catalog() as catalog:
        return sweep(catalog, now)


async def run_sweeper(
    open_catalog: Callable[[], Catalog],
    *,
    interval_s: float = 3600.0,
    clock: Callable[[], float] = time.time,
    stop: asyncio.Event | None = None,
    on_report: Callable[[SweepReport], None] | None = None,
) -> None:
    """Sweep now and then every `interval_s` until `stop` is set (or the task is cancelled).

    Each sweep runs in a worker thread, on a catalog connection of its own
    (`open_catalog()`, closed afterwards), so file deletion never stalls the media loop.
    """
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            report = await asyncio.to_thread(_sweep_fresh, open_catalog, clock())
        except Exception:
            log.exception("retention sweep failed; retrying in %.0f s", interval_s)
        else:
            for record_id, problem in report.errors:
                log.error("retention: could not delete %s: %s", record_id, problem)
            if on_report is not None:
                on_report(report)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
