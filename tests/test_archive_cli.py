"""The archive commands: recordings list/show/export/delete/hold, purge, audit, users."""

from __future__ import annotations

import io
import json
import sys
import wave
from pathlib import Path

import pytest

from b2bua.archive.catalog import Catalog
from b2bua.archive.commands import main_for_tests
from b2bua.archive.retention import DAY_S
from b2bua.archive.users import get_user, verify_password
from tests.test_archive_support import T0, add_call, make_keys, write_config

A = "+4930111111"  # the data subject
B = "+4930222222"


@pytest.fixture
def office(tmp_path: Path) -> tuple[Path, Path, str]:
    """(config, catalog directory, recipient)."""
    key, recipient = make_keys(tmp_path)
    return write_config(tmp_path, tmp_path / "recorder.key.pub", key), tmp_path / "rec", recipient


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main_for_tests(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json_and_table(
    office: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    with Catalog.open(directory) as cat:
        old = add_call(cat, caller=A, started=T0, recipient=recipient)
        new = add_call(cat, caller=B, started=T0 + DAY_S)
    code, out, _ = run(capsys, "recordings", "list", "--json", "--config", str(config))
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [new, old]
    assert rows[1]["status"] == "complete" and rows[0]["status"] == "not_recorded"
    code, out, _ = run(
        capsys, "recordings", "list", "--json", "--config", str(config), "--since", "2026-11-19"
    )
    assert [r["id"] for r in json.loads(out)] == [new]
    code, out, _ = run(
        capsys, "recordings", "list", "--json", "--config", str(config), "--until", "2026-11-18"
    )
    assert [r["id"] for r in json.loads(out)] == [old]  # a bare date includes that day
    code, out, _ = run(capsys, "recordings", "list", "--config", str(config), "--number", A)
    assert code == 0
    assert out.splitlines()[0].split()[:3] == ["ID", "STARTED", "DIR"]
    assert old in out and new not in out


def test_bad_arguments_exit_2_with_clear_messages(
    office: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, _ = office
    Catalog.open(directory).close()
    code, _, err = run(
        capsys, "recordings", "list", "--config", str(config), "--since", "yesterday"
    )
    assert code == 2 and "not a date or time: 'yesterday'" in err
    code, _, err = run(capsys, "recordings", "list", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "config error" in err and "nope.toml" in err
    code, _, err = run(capsys, "recordings", "export", "--config", str(config), "--to", "x")
    assert code == 2 and "exactly one of ID or --number" in err
    with pytest.raises(SystemExit) as exc:
        main_for_tests(["recordings", "list", "--direction", "sideways"])
    assert exc.value.code == 2
    code, _, err = run(capsys, "recordings", "show", "NOPE", "--config", str(config))
    assert code == 1 and "no recording with id NOPE" in err


def test_missing_catalog_is_an_error_not_a_new_file(
    office: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, _ = office
    code, _, err = run(capsys, "recordings", "list", "--config", str(config))
    assert code == 1 and "no catalog at" in err
    assert not directory.exists()


def test_erasure_removes_exactly_that_numbers_recordings(
    office: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    with Catalog.open(directory) as cat:
        subject = [
            add_call(cat, caller=A, started=T0, recipient=recipient),
            add_call(cat, caller="0049 30 111111", started=T0 + 10, recipient=recipient),
            add_call(
                cat,
                caller="1000",
                callee=A,
                direction="outbound",
                started=T0 + 20,
                recipient=recipient,
            ),
            add_call(cat, caller=A, started=T0 + 30),  # not recorded: data all the same
        ]
        others = [
            add_call(cat, caller=B, started=T0 + 40, recipient=recipient),
            add_call(cat, caller="+4930111112", started=T0 + 50, recipient=recipient),
            add_call(cat, caller="4930111111", started=T0 + 60, recipient=recipient),
        ]
        files = {r["id"]: Path(r["path"]) for r in cat.list() if r["path"]}
    code, out, err = run(capsys, "recordings", "delete", "--number", A, "--config", str(config))
    assert code == 0, err
    assert "deleted 4 recording(s)" in out
    with Catalog.open(directory) as cat:
        for rid in subject:
            row = cat.get(rid)
            assert row is not None
            assert (row["status"], row["path"], row["caller"], row["callee"]) == (
                "deleted",
                None,
                None,
                None,
            )
            assert row["reason"] == "erasure request"
            if rid in files:
                assert not files[rid].exists()
        for rid in others:
            row = cat.get(rid)
            assert row is not None and row["status"] == "complete"
            assert files[rid].exists()
        assert cat.ids_for_number(A) == []
        deletes = [e for e in cat.audit.entries() if e.action == "delete"]
        assert sorted(str(e.target) for e in deletes) == sorted(subject)
        assert all(e.details["number"] == A for e in deletes)
        erasure = cat.audit.entries()[-1]
        assert (erasure.action, erasure.target) == ("erasure", A)
        assert cat.audit.verify().ok
    remaining = {p.name for p in directory.glob("*.wav.age")}
    assert remaining == {f"{rid}.wav.age" for rid in others}


def test_erasure_of_held_recording_refused_unless_asked(
    office: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    with Catalog.open(directory) as cat:
        held = add_call(cat, caller=A, started=T0, recipient=recipient)
        free = add_call(cat, caller=A, started=T0 + 1, recipient=recipient)
    assert run(capsys, "recordings", "hold", held, "--config", str(config))[0] == 0
    code, _, err = run(capsys, "recordings", "delete", "--number", A, "--config", str(config))
    assert code == 1
    assert f"on legal hold: {held}; nothing deleted" in err
    with Catalog.open(directory) as cat:
        assert cat.get(free)["status"] == "complete"  # type: ignore[index]
    code, out, _ = run(
        capsys, "recordings", "delete", "--number", A, "--skip-held", "--config", str(config)
    )
    assert code == 0 and "deleted 1 recording(s); kept 1 on hold" in out
    code, _, err = run(capsys, "recordings", "delete", held, "--config", str(config))
    assert code == 1 and "on legal hold" in err
    code, _, _ = run(capsys, "recordings", "delete", held, "--force", "--config", str(config))
    assert code == 0
    with Catalog.open(directory) as cat:
        assert cat.get(held)["status"] == "deleted"  # type: ignore[index]
        last_delete = [e for e in cat.audit.entries() if e.action == "delete"][-1]
        assert last_delete.details["legal_hold_overridden"] is True
    code, _, err = run(capsys, "recordings", "delete", held, "--config", str(config))
    assert code == 1 and "already deleted" in err


def test_purge_keeps_held_and_unexpired(
    office: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    long_ago = T0 - 400 * DAY_S  # the test clock is real time here: purge uses now
    with Catalog.open(directory) as cat:
        expired = add_call(cat, caller=A, started=long_ago, recipient=recipient)
        held = add_call(cat, caller=B, started=long_ago, recipient=recipient)
        fresh = cat.new_call("f", "inbound", A, "1000", "1000", 4_000_000_000.0)
        cat.set_consent(fresh, {"result": "granted"})
        cat.not_recorded(fresh, "declined", 4_000_000_001.0)
    run(capsys, "recordings", "hold", held, "--reason", "dispute", "--config", str(config))
    code, out, _ = run(capsys, "purge", "--dry-run", "--config", str(config))
    assert code == 0 and "would delete 1 expired call(s); 1 kept on legal hold" in out
    assert expired in out
    code, out, _ = run(capsys, "purge", "--config", str(config))
    assert code == 0 and "deleted 1 expired call(s); 1 kept on legal hold" in out
    with Catalog.open(directory) as cat:
        assert cat.get(expired)["status"] == "deleted"  # type: ignore[index]
        assert cat.get(held)["status"] == "complete"  # type: ignore[index]
        assert cat.get(fresh)["status"] == "not_recorded"  # type: ignore[index]


def test_export_subject_access_and_audit_anchor(
    office: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    with Catalog.open(directory) as cat:
        r1 = add_call(cat, caller=A, started=T0, recipient=recipient, seconds=2.0)
        r2 = add_call(cat, caller=A, started=T0 + 5)  # not recorded
        add_call(cat, caller=B, started=T0 + 9, recipient=recipient)
    out_dir = tmp_path / "sar"
    code, out, err = run(
        capsys, "recordings", "export", "--number", A, "--to", str(out_dir), "--config", str(config)
    )
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert [i["id"] for i in manifest["recordings"]] == [r2, r1]
    assert manifest["recordings"][1]["result"] == "complete"
    assert manifest["recordings"][0]["result"] == "no recording"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["manifest.json", f"{r1}.wav", f"{r1}.json", f"{r2}.json"]
    )
    with wave.open(str(out_dir / f"{r1}.wav")) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 8000, 16000)
    meta = json.loads((out_dir / f"{r1}.json").read_text())
    assert meta["caller"] == A and meta["status"] == "complete"
    with Catalog.open(directory) as cat:
        exports = [e for e in cat.audit.entries() if e.action == "export"]
        assert {e.target for e in exports} == {r1, r2}
        assert manifest["audit_anchor"] == cat.audit.anchor()
    code, out, _ = run(capsys, "audit", "verify", "--export", str(out_dir), "--config", str(config))
    assert code == 0 and "1 external anchor(s) confirmed" in out
    # the same export again refuses to mix into a used directory
    code, _, err = run(
        capsys, "recordings", "export", r1, "--to", str(out_dir), "--config", str(config)
    )
    assert code == 1 and "manifest.json exists" in err


def test_export_with_wrong_identity_fails(
    office: tuple[Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    with Catalog.open(directory) as cat:
        rid = add_call(cat, caller=A, recipient=recipient)
    (tmp_path / "other").mkdir()
    other, _ = make_keys(tmp_path / "other")
    code, _, err = run(
        capsys,
        "recordings",
        "export",
        rid,
        "--to",
        str(tmp_path / "x"),
        "--identity",
        str(other),
        "--config",
        str(config),
    )
    assert code == 1 and "wrong key" in err
    assert not (tmp_path / "x" / f"{rid}.wav").exists()


def test_audit_verify_cli_detects_tampering(
    office: tuple[Path, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, directory, recipient = office
    with Catalog.open(directory) as cat:
        rid = add_call(cat, caller=A, recipient=recipient)
    run(capsys, "recordings", "hold", rid, "--config", str(config))
    code, out, _ = run(capsys, "audit", "head", "--config", str(config))
    anchor = out.strip()
    assert code == 0 and anchor.startswith("2:")
    code, out, _ = run(capsys, "audit", "verify", "--anchor", anchor, "--config", str(config))
    assert code == 0 and "audit log intact: 2 entries" in out
    code, out, _ = run(capsys, "audit", "list", "--json", "--config", str(config))
    assert [e["action"] for e in json.loads(out)] == ["hold", "create"]
    with Catalog.open(directory) as cat:
        cat.conn.execute("DROP TRIGGER audit_no_update")
        cat.conn.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 2")
    code, out, err = run(capsys, "audit", "verify", "--config", str(config))
    assert code == 1
    assert "entry 2: content does not match its hash (edited)" in err
    assert "BROKEN" in out
    code, _, err = run(capsys, "audit", "verify", "--anchor", "zzz", "--config", str(config))
    assert code == 2 and "not an audit anchor" in err


def test_users_add_passwd_remove(
    office: tuple[Path, Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, directory, _ = office

    def with_stdin(text: str, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(text))
        return run(capsys, *argv)

    code, out, err = with_stdin(
        "correct horse battery\n",
        "users",
        "add",
        "anna",
        "--role",
        "agent",
        "--extension",
        "1000",
        "--password-stdin",
        "--config",
        str(config),
    )
    assert code == 0, err
    with Catalog.open(directory) as cat:
        user = verify_password(cat, "anna", "correct horse battery")
        assert user is not None and user.role == "agent" and user.extensions == ("1000",)
        assert verify_password(cat, "anna", "wrong password!") is None
        assert verify_password(cat, "nobody", "correct horse battery") is None
        stored = cat.conn.execute("SELECT password_hash FROM users").fetchone()[0]
        assert stored.startswith("$argon2id$")
    code, _, err = with_stdin(
        "correct horse battery\n",
        "users",
        "add",
        "anna",
        "--role",
        "admin",
        "--password-stdin",
        "--config",
        str(config),
    )
    assert code == 1 and "exists" in err
    code, _, err = with_stdin(
        "x\n", "users", "add", "bob", "--role", "agent", "--password-stdin", "--config", str(config)
    )
    assert code == 1 and "at least one extension" in err
    code, _, err = with_stdin(
        "short\n", "users", "passwd", "anna", "--password-stdin", "--config", str(config)
    )
    assert code == 1 and "password too short" in err
    code, _, _ = with_stdin(
        "a new long password\n",
        "users",
        "passwd",
        "anna",
        "--password-stdin",
        "--config",
        str(config),
    )
    assert code == 0
    code, out, _ = run(capsys, "users", "list", "--json", "--config", str(config))
    assert json.loads(out) == [{"name": "anna", "role": "agent", "extensions": ["1000"]}]
    with Catalog.open(directory) as cat:
        assert verify_password(cat, "anna", "a new long password") is not None
    assert run(capsys, "users", "remove", "anna", "--config", str(config))[0] == 0
    code, _, err = run(capsys, "users", "remove", "anna", "--config", str(config))
    assert code == 1 and "no user 'anna'" in err
    with Catalog.open(directory) as cat:
        assert get_user(cat, "anna") is None
        actions = [e.action for e in cat.audit.entries()]
        assert actions == ["user_add", "user_passwd", "user_remove"]
        assert str(cat.audit.entries()[0].source).startswith("cli@")


def test_progress_bar_draws_only_on_a_terminal() -> None:
    from b2bua.archive.commands import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress("export", stream)
        for n in range(1, 5):
            bar(n, 4)
    assert tty.getvalue().endswith("\rexport [" + "#" * 30 + "] 4/4\n")
    assert "[" + "#" * 15 + "." * 15 + "] 2/4" in tty.getvalue()
    assert pipe.getvalue() == ""
