"""Retention: expiry with overrides, the sweeper driven by a fake clock, legal hold."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from b2bua.archive.catalog import Catalog, ListFilter
from b2bua.archive.retention import DAY_S, RetentionPolicy, SweepReport, run_sweeper, sweep
from tests.test_archive_support import T0, add_call, make_keys


def test_policy_precedence_extension_then_direction_then_default() -> None:
    policy = RetentionPolicy(
        default_days=30, by_direction={"inbound": 7}, by_extension={"1001": 365}
    )
    assert policy.days_for("outbound", "1000") == 30
    assert policy.days_for("inbound", "1000") == 7
    assert policy.days_for("inbound", "1001") == 365
    assert policy.days_for(None, None) == 30
    assert policy.expires_at(T0, "inbound", None) == T0 + 7 * DAY_S


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_policy_rejects_bad_days(bad: object) -> None:
    with pytest.raises(ValueError, match="retention days"):
        RetentionPolicy(default_days=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retention days"):
        RetentionPolicy(by_extension={"1000": bad})  # type: ignore[dict-item]


def test_from_config_reads_retention_days() -> None:
    class Rec:
        retention_days = 3

    assert RetentionPolicy.from_config(Rec()).days_for("inbound", "1") == 3


def test_sweeper_deletes_only_what_expired_by_now(tmp_path: Path) -> None:
    _, recipient = make_keys(tmp_path)
    policy = RetentionPolicy(default_days=1, by_extension={"1001": 10})
    with Catalog.open(tmp_path / "rec", policy=policy) as cat:
        short = add_call(cat, caller="+4930111", recipient=recipient)
        long = add_call(cat, caller="+4930222", extension="1001", recipient=recipient)
        unrecorded = add_call(cat, caller="+4930333")
        pending = cat.new_call("p", "inbound", "+4930444", "1000", "1000", T0)
        cat.call_ended(pending, T0 + 2)
        short_file = Path(cat.get(short)["path"])  # type: ignore[index]
        long_file = Path(cat.get(long)["path"])  # type: ignore[index]

        before = sweep(cat, T0 + DAY_S)  # a few seconds too early for everything
        assert before.deleted == ()
        assert short_file.exists()

        report = sweep(cat, T0 + 2 * DAY_S)
        assert set(report.deleted) == {short, unrecorded, pending}
        assert report.errors == ()
        assert not short_file.exists()
        assert long_file.exists()
        tomb = cat.get(short)
        assert tomb is not None
        assert tomb["status"] == "deleted"
        assert tomb["path"] is None
        assert tomb["caller"] is None and tomb["consent"] is None
        assert tomb["deleted_at"] == "2026-11-20T11:06:40.000Z"
        assert tomb["reason"] == "retention expired"
        assert tomb["sha256"] is not None  # which file was removed stays provable
        assert cat.get(pending) is None  # never listed, no recording: no tombstone
        assert cat.get(long)["status"] == "complete"  # type: ignore[index]

        deletes = [e for e in cat.audit.entries() if e.action == "delete"]
        assert {e.target for e in deletes} == {short, unrecorded, pending}
        assert all(e.actor == "system" and e.source == "sweeper" for e in deletes)
        assert cat.audit.entries()[-1].action == "purge"

        assert sweep(cat, T0 + 11 * DAY_S).deleted == (long,)
        assert not long_file.exists()
        assert cat.audit.verify().ok


def test_legal_hold_survives_the_sweeper_until_released(tmp_path: Path) -> None:
    _, recipient = make_keys(tmp_path)
    with Catalog.open(tmp_path / "rec", policy=RetentionPolicy(default_days=1)) as cat:
        rid = add_call(cat, recipient=recipient)
        cat.set_hold(rid, True, actor="alice", source="cli@test", reason="court case")
        report = sweep(cat, T0 + 5 * DAY_S)
        assert report.deleted == ()
        assert report.held == (rid,)
        assert Path(cat.get(rid)["path"]).exists()  # type: ignore[index]
        cat.set_hold(rid, False, actor="alice", source="cli@test")
        assert sweep(cat, T0 + 5 * DAY_S).deleted == (rid,)
        actions = [e.action for e in cat.audit.entries()]
        assert actions[-4:] == ["hold", "release", "delete", "purge"]


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    with Catalog.open(tmp_path, policy=RetentionPolicy(default_days=1)) as cat:
        rid = add_call(cat)
        entries = len(cat.audit.entries())
        assert sweep(cat, T0 + 3 * DAY_S, dry_run=True).deleted == (rid,)
        assert cat.get(rid)["status"] == "not_recorded"  # type: ignore[index]
        assert len(cat.audit.entries()) == entries


def test_file_already_gone_still_tombstoned_and_noted(tmp_path: Path) -> None:
    _, recipient = make_keys(tmp_path)
    with Catalog.open(tmp_path / "rec", policy=RetentionPolicy(default_days=1)) as cat:
        rid = add_call(cat, recipient=recipient)
        Path(cat.get(rid)["path"]).unlink()  # type: ignore[index]
        assert sweep(cat, T0 + 3 * DAY_S).deleted == (rid,)
        (entry,) = [e for e in cat.audit.entries() if e.action == "delete"]
        assert entry.details["file_missing"] is True


def test_periodic_adapter_sweeps_and_stops(tmp_path: Path) -> None:
    directory = tmp_path / "rec"
    with Catalog.open(directory, policy=RetentionPolicy(default_days=1)) as cat:
        rid = add_call(cat)
    reports: list[SweepReport] = []
    clock_values = iter([T0, T0 + 3 * DAY_S, T0 + 3 * DAY_S, T0 + 3 * DAY_S])

    async def main() -> None:
        stop = asyncio.Event()

        def on_report(report: SweepReport) -> None:
            reports.append(report)
            if len(reports) == 2:
                stop.set()

        await asyncio.wait_for(
            run_sweeper(
                lambda: Catalog.open(directory, policy=RetentionPolicy(default_days=1)),
                interval_s=0.01,
                clock=lambda: next(clock_values),
                stop=stop,
                on_report=on_report,
            ),
            timeout=10,
        )

    asyncio.run(main())
    assert [r.deleted for r in reports] == [(), (rid,)]
    with Catalog.open(directory) as cat:
        assert cat.list(ListFilter(status="deleted"))[0]["id"] == rid
