"""CLI subcommands of the archive: `recordings`, `purge`, `audit`, `users`.

`register(subparsers)` adds them to the `b2bua` parser; each handler returns the exit
status: 0 done, 1 the operation failed or was refused (unknown id, legal hold, audit log
broken, a file that would not decrypt), 2 bad arguments or config, 3 export done but some
recordings are truncated (as `b2bua decrypt`). Every change is an audit entry whose actor
is the OS user running the command and whose source is `cli@<host>`.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import io
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from b2bua.archive.audit import format_time
from b2bua.archive.catalog import DIRECTIONS, STATUSES, Catalog, CatalogError, ListFilter
from b2bua.archive.retention import RetentionPolicy

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_TRUNCATED", "EXIT_USAGE", "register"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TRUNCATED = 3

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad arguments or config: exit 2 with the message."""


class CommandError(Exception):
    """The operation failed or was refused: exit 1 with the message."""


# ----------------------------------------------------------------- helpers


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


def _source() -> str:
    return f"cli@{socket.gethostname()}"


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        width = 30
        filled = width * done // total
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}{end}")
        self.stream.flush()


def _parse_time(text: str, *, end_of_day: bool) -> float:
    """ISO 8601 date or date-time; no zone means UTC. A bare date as --until includes
    that whole day."""
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return (day + timedelta(days=1) if end_of_day else day).timestamp()
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"not a date or time: {text!r} (use e.g. 2026-11-22 or 2026-11-22T10:04:05Z)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@contextmanager
def _catalog(args: argparse.Namespace, *, create: bool = False) -> Iterator[Catalog]:
    from b2bua.config import ConfigError, load_config

    if not args.config:
        raise UsageError("--config is required (or set B2BUA_CONFIG)")
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        raise UsageError(f"config error: {exc}") from None
    args.loaded_config = config
    try:
        catalog = Catalog.open(
            config.recording.directory,
            policy=RetentionPolicy.from_config(config.recording),
            create=create,
        )
    except CatalogError as exc:
        raise CommandError(str(exc)) from None
    from b2bua.router import number_plan

    # Erasure and export by number match the E.164 form with the office's number plan.
    catalog.normalise = number_plan(config).e164
    try:
        yield catalog
    finally:
        catalog.close()


def _run(name: str, handler: Handler) -> Handler:
    """Turn UsageError / CommandError / CatalogError into a message and an exit status."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"b2bua {name}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except (CommandError, CatalogError, ValueError, OSError) as exc:
            print(f"b2bua {name}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run


def _one_target(args: argparse.Namespace) -> None:
    if (args.id is None) == (args.number is None):
        raise UsageError("give exactly one of ID or --number N")


# ----------------------------------------------------------------- recordings


def _cmd_list(args: argparse.Namespace) -> int:
    filters = ListFilter(
        since=None if args.since is None else _parse_time(args.since, end_of_day=False),
        until=None if args.until is None else _parse_time(args.until, end_of_day=True),
        number=args.number,
        extension=args.extension,
        direction=args.direction,
        consent=args.consent,
        status=args.status,
        include_pending=args.all,
        limit=args.limit,
    )
    with _catalog(args) as catalog:
        rows = catalog.list(filters)
    if args.json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    header = ("ID", "STARTED", "DIR", "CALLER", "CALLEE", "EXT", "SECS", "CONSENT", "STATUS")
    lines = [header]
    for r in rows:
        consent = (r["consent"] or {}).get("result") or "-"
        status = r["status"] + (" (hold)" if r["legal_hold"] else "")
        lines.append(
            (
                r["id"],
                r["started_at"][:19],
                r["direction"] or "-",
                r["caller"] or "-",
                r["callee"] or "-",
                r["extension"] or "-",
                "-" if r["duration_s"] is None else f"{r['duration_s']:.1f}",
                consent,
                status,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print(f"{len(rows)} call(s)", file=sys.stderr)
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    with _catalog(args) as catalog:
        row = catalog.get(args.id)
    if row is None:
        raise CommandError(f"no recording with id {args.id}")
    json.dump(row, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_OK


def _targets(catalog: Catalog, args: argparse.Namespace) -> list[str]:
    if args.id is not None:
        if catalog.get(args.id) is None:
            raise CommandError(f"no recording with id {args.id}")
        return [args.id]
    return catalog.ids_for_number(args.number)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cmd_export(args: argparse.Namespace) -> int:
    from b2bua.archive.keys import EXIT_OK as DECRYPT_OK
    from b2bua.archive.keys import EXIT_TRUNCATED as DECRYPT_TRUNCATED
    from b2bua.archive.keys import decrypt_file

    _one_target(args)
    out_dir = Path(args.to)
    with _catalog(args) as catalog:
        identity = args.identity or args.loaded_config.portal.identity
        if identity is None:
            raise UsageError("needs the identity: --identity KEY or portal.identity in the config")
        if not Path(identity).is_file():
            raise UsageError(f"identity file not found: {identity}")
        ids = _targets(catalog, args)
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = out_dir / "manifest.json"
        if manifest_path.exists():
            raise CommandError(f"{manifest_path} exists; export into an empty directory")
        actor, source, now = _actor(), _source(), time.time()
        items: list[dict[str, Any]] = []
        failed = truncated = 0
        progress = Progress("export")
        for n, record_id in enumerate(ids, 1):
            row = catalog.get(record_id)
            assert row is not None
            item: dict[str, Any] = {"id": record_id, "status": row["status"], "wav": None}
            src = None if row["path"] is None else Path(row["path"])
            if src is not None and src.is_file():
                wav = out_dir / f"{record_id}.wav"
                if row["sha256"] and _file_sha256(src) != row["sha256"]:
                    item["result"] = "failed: file does not match the catalog's sha256"
                    failed += 1
                else:
                    err = io.StringIO()
                    code = decrypt_file(Path(identity), src, wav, stderr=err)
                    if code in (DECRYPT_OK, DECRYPT_TRUNCATED):
                        item["wav"] = wav.name
                        item["wav_sha256"] = _file_sha256(wav)
                        item["result"] = "complete" if code == DECRYPT_OK else "truncated"
                        truncated += code == DECRYPT_TRUNCATED
                    else:
                        item["result"] = "failed: " + err.getvalue().strip()
                        failed += 1
            else:
                item["result"] = "no recording"
            meta = out_dir / f"{record_id}.json"
            with open(meta, "x", encoding="utf-8") as f:
                json.dump(row, f, indent=2, ensure_ascii=False)
            item["metadata"] = meta.name
            items.append(item)
            catalog.audit.append(
                actor,
                "export",
                record_id,
                source,
                {"to": str(out_dir.absolute()), "number": args.number, "result": item["result"]},
                now,
            )
            progress(n, len(ids))
        # Written last, so the anchor covers the export entries themselves.
        manifest = {
            "exported_at": format_time(now),
            "exported_by": actor,
            "source": source,
            "request": {"id": args.id, "number": args.number},
            "recordings": items,
            "audit_anchor": catalog.audit.anchor(),
        }
        with open(manifest_path, "x", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
    for item in items:
        if item["result"].startswith("failed"):
            print(f"b2bua recordings export: {item['id']}: {item['result']}", file=sys.stderr)
        elif item["result"] == "truncated":
            print(
                f"b2bua recordings export: warning: {item['id']} is truncated; "
                "the recovered audio is exported",
                file=sys.stderr,
            )
    print(f"exported {len(items)} call(s) to {out_dir}")
    if failed:
        return EXIT_FAILED
    return EXIT_TRUNCATED if truncated else EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    _one_target(args)
    with _catalog(args) as catalog:
        ids = _targets(catalog, args)
        rows = [catalog.get(i) for i in ids]
        live = [r for r in rows if r is not None and r["status"] != "deleted"]
        if args.id is not None and not live:
            raise CommandError(f"{args.id}: already deleted")
        busy = [r["id"] for r in live if r["status"] == "recording"]
        if busy:
            raise CommandError(f"still being recorded: {', '.join(busy)}; nothing deleted")
        held = [r["id"] for r in live if r["legal_hold"]]
        if held and not (args.force or args.skip_held):
            raise CommandError(
                f"on legal hold: {', '.join(held)}; nothing deleted. Release the hold "
                "(b2bua recordings hold --release ID), or pass --skip-held to delete the "
                "others, or --force to delete held recordings too"
            )
        todo = [r["id"] for r in live if not (r["legal_hold"] and args.skip_held)]
        actor, source, now = _actor(), _source(), time.time()
        reason = args.reason or ("erasure request" if args.number else "deleted by operator")
        extra = {"number": args.number} if args.number else {}
        progress = Progress("delete")
        for n, record_id in enumerate(todo, 1):
            catalog.delete(
                record_id,
                actor=actor,
                source=source,
                reason=reason,
                now=now,
                force=args.force,
                details=extra,
            )
            progress(n, len(todo))
        if args.number is not None:
            # The request itself is logged even when nothing matched.
            catalog.audit.append(
                actor,
                "erasure",
                args.number,
                source,
                {"deleted": todo, "kept_on_hold": held if args.skip_held else []},
                now,
            )
    print(f"deleted {len(todo)} recording(s)" + (f"; kept {len(held)} on hold" if held else ""))
    return EXIT_OK


def _cmd_hold(args: argparse.Namespace) -> int:
    with _catalog(args) as catalog:
        catalog.set_hold(
            args.id, not args.release, actor=_actor(), source=_source(), reason=args.reason
        )
    print(f"{args.id}: legal hold {'released' if args.release else 'set'}")
    return EXIT_OK


# ----------------------------------------------------------------- purge, audit


def _cmd_purge(args: argparse.Namespace) -> int:
    from b2bua.archive.retention import sweep

    with _catalog(args) as catalog:
        report = sweep(
            catalog,
            time.time(),
            actor=_actor(),
            source=_source(),
            dry_run=args.dry_run,
            progress=Progress("purge"),
        )
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(report.deleted)} expired call(s); {len(report.held)} kept on legal hold")
    for record_id in report.deleted if args.dry_run else ():
        print(record_id)
    for record_id, problem in report.errors:
        print(f"b2bua purge: {record_id}: {problem}", file=sys.stderr)
    return EXIT_FAILED if report.errors else EXIT_OK


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from b2bua.archive.audit import parse_anchor

    anchors: list[tuple[int, str]] = []
    try:
        anchors += [parse_anchor(a) for a in args.anchor]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for export_dir in args.export:
        manifest = Path(export_dir) / "manifest.json"
        try:
            anchors.append(parse_anchor(json.loads(manifest.read_text("utf-8"))["audit_anchor"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{manifest}: no audit anchor ({exc})") from None
    with _catalog(args) as catalog:
        result = catalog.audit.verify(anchors)
    if not result.ok:
        for problem in result.problems:
            print(f"b2bua audit verify: {problem}", file=sys.stderr)
        print(f"audit log BROKEN: {len(result.problems)} problem(s) in {result.entries} entries")
        return EXIT_FAILED
    print(
        f"audit log intact: {result.entries} entries, head {result.head_seq}:{result.head_hash}"
        + (f", {len(anchors)} external anchor(s) confirmed" if anchors else "")
    )
    return EXIT_OK


def _cmd_audit_head(args: argparse.Namespace) -> int:
    with _catalog(args) as catalog:
        print(catalog.audit.anchor())
    return EXIT_OK


def _cmd_audit_list(args: argparse.Namespace) -> int:
    with _catalog(args) as catalog:
        entries = catalog.audit.entries(limit=args.limit, newest_first=True)
    if args.json:
        json.dump([e.to_json() for e in entries], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return EXIT_OK
    for e in entries:
        details = json.dumps(dict(e.details), ensure_ascii=False, separators=(",", ":"))
        print(f"{e.seq:>6} {e.at} {e.actor} {e.action} {e.target or '-'} {e.source} {details}")
    return EXIT_OK


# ----------------------------------------------------------------- users


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password; use --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise CommandError("the passwords differ; nothing changed")
    return first


def _cmd_users_add(args: argparse.Namespace) -> int:
    from b2bua.archive.users import UserError, add_user, check_user_fields

    try:
        check_user_fields(args.name, args.role, args.extension)  # before asking for a password
        with _catalog(args, create=True) as catalog:
            user = add_user(
                catalog,
                args.name,
                _read_password(args),
                args.role,
                args.extension,
                actor=_actor(),
                source=_source(),
            )
    except UserError as exc:
        raise CommandError(str(exc)) from None
    exts = ", ".join(user.extensions) or "all"
    print(f"user {user.name} added (role {user.role}, extensions: {exts})")
    return EXIT_OK


def _cmd_users_passwd(args: argparse.Namespace) -> int:
    from b2bua.archive.users import UserError, get_user, set_password

    try:
        with _catalog(args, create=True) as catalog:
            if get_user(catalog, args.name) is None:
                raise UserError(f"no user {args.name!r}")
            set_password(catalog, args.name, _read_password(args), actor=_actor(), source=_source())
    except UserError as exc:
        raise CommandError(str(exc)) from None
    print(f"password of {args.name} changed")
    return EXIT_OK


def _cmd_users_remove(args: argparse.Namespace) -> int:
    from b2bua.archive.users import UserError, remove_user

    try:
        with _catalog(args, create=True) as catalog:
            remove_user(catalog, args.name, actor=_actor(), source=_source())
    except UserError as exc:
        raise CommandError(str(exc)) from None
    print(f"user {args.name} removed")
    return EXIT_OK


def _cmd_users_list(args: argparse.Namespace) -> int:
    from b2bua.archive.users import list_users

    with _catalog(args, create=True) as catalog:
        users = list_users(catalog)
    if args.json:
        rows = [{"name": u.name, "role": u.role, "extensions": list(u.extensions)} for u in users]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for u in users:
            print(f"{u.name}\t{u.role}\t{','.join(u.extensions) or '-'}")
    return EXIT_OK


# ----------------------------------------------------------------- parser


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `recordings`, `purge`, `audit` and `users` to the `b2bua` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=os.environ.get("B2BUA_CONFIG"),
        help="the TOML config file (default: $B2BUA_CONFIG)",
    )

    def leaf(
        group: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        label: str,
        help_text: str,
    ) -> argparse.ArgumentParser:
        p = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=_run(label, handler))
        return p

    # recordings
    rec = subparsers.add_parser("recordings", help="list, show, export, delete, hold recordings")
    rsub = rec.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = leaf(rsub, "list", _cmd_list, "recordings list", "list calls, newest first")
    p.add_argument("--json", action="store_true", help="a JSON array (the documented shape)")
    p.add_argument("--since", help="started at or after (ISO date or time; UTC if no zone)")
    p.add_argument("--until", help="started before (a bare date includes that day)")
    p.add_argument("--number", help="caller or callee, as dialled or in E.164")
    p.add_argument("--extension", help="office extension")
    p.add_argument("--direction", choices=DIRECTIONS)
    p.add_argument("--consent", help="consent result, e.g. granted, declined, timeout")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--all", action="store_true", help="include calls that ended before consent")
    p.add_argument("--limit", type=int, help="at most this many")

    p = leaf(rsub, "show", _cmd_show, "recordings show", "one call's full record as JSON")
    p.add_argument("id")

    p = leaf(
        rsub,
        "export",
        _cmd_export,
        "recordings export",
        "subject access: decrypted WAVs, metadata JSON and a manifest into a directory",
    )
    p.add_argument("id", nargs="?")
    p.add_argument("--number", help="every call with this number (caller or callee)")
    p.add_argument("--to", required=True, help="output directory (new or empty)")
    p.add_argument("--identity", help="age identity file (default: portal.identity)")

    p = leaf(
        rsub,
        "delete",
        _cmd_delete,
        "recordings delete",
        "erasure: delete recordings (files and data), leaving tombstones",
    )
    p.add_argument("id", nargs="?")
    p.add_argument("--number", help="every call with this number (caller or callee)")
    p.add_argument("--reason", help="logged with the deletion")
    p.add_argument("--skip-held", action="store_true", help="delete all but held recordings")
    p.add_argument("--force", action="store_true", help="delete held recordings too")

    p = leaf(rsub, "hold", _cmd_hold, "recordings hold", "set or release a legal hold")
    p.add_argument("id")
    p.add_argument("--release", action="store_true", help="release the hold")
    p.add_argument("--reason", help="logged with the change")

    # purge
    p = leaf(subparsers, "purge", _cmd_purge, "purge", "delete expired recordings now")
    p.add_argument("--dry-run", action="store_true", help="only list what would be deleted")

    # audit
    aud = subparsers.add_parser("audit", help="verify or read the audit log")
    asub = aud.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = leaf(asub, "verify", _cmd_audit_verify, "audit verify", "check the hash chain")
    p.add_argument(
        "--anchor", action="append", default=[], metavar="SEQ:HASH", help="a head seen earlier"
    )
    p.add_argument(
        "--export", action="append", default=[], metavar="DIR", help="an export's directory"
    )
    leaf(asub, "head", _cmd_audit_head, "audit head", "print the head anchor SEQ:HASH")
    p = leaf(asub, "list", _cmd_audit_list, "audit list", "entries, newest first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=50)

    # users
    usr = subparsers.add_parser("users", help="portal users")
    usub = usr.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = leaf(usub, "add", _cmd_users_add, "users add", "add a portal user")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("admin", "supervisor", "agent"))
    p.add_argument("--extension", action="append", default=[], help="an extension the user may see")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p = leaf(usub, "passwd", _cmd_users_passwd, "users passwd", "set a user's password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p = leaf(usub, "remove", _cmd_users_remove, "users remove", "remove a portal user")
    p.add_argument("name")
    p = leaf(usub, "list", _cmd_users_list, "users list", "list portal users")
    p.add_argument("--json", action="store_true")


def main_for_tests(argv: Sequence[str]) -> int:
    """Parse and run with only these subcommands (tests; cli.py wires the real ones)."""
    parser = argparse.ArgumentParser(prog="b2bua")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
