"""Log line formats for `b2bua serve`: text, key=value (kv) and JSON lines.

Theory of operation: the code logs messages in a key=value style
(`event=call_start call=4f1c... direction=inbound`). The formatters here only frame
those messages; they never change what is logged:

- `kv` (default): `2026-11-22 21:08:43,068 INFO b2bua.switch event=call_start call=...`:
  time, level and logger, then the message's key=value fields, always on one line; a
  message that is not key=value text is quoted into `msg="..."`. The prefix is the one
  `b2bua serve` always wrote, so the fail2ban filter in docs/fail2ban/ matches it;
- `json`: one JSON object per line with `ts`, `level`, `logger`, `message` and every
  key=value field of the message as its own member (`event`, `call`, ...), so log
  shippers can index by call id without parsing;
- `text`: the same prefix with the message as written and tracebacks on their own lines
  (for reading by eye while debugging).

In kv and JSON, exceptions stay on the same line (kv: `exc="..."`, JSON: `exc`), so one
log record is always one line and a crafted value can not start a forged line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json", "kv"]
FORMATS: tuple[LogFormat, ...] = ("kv", "json", "text")

# key=value and key="quoted value" pairs; keys are identifiers (event, call, duration_s).
_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')
_KV_LINE = re.compile(rf"^\s*(?:{_PAIR.pattern}\s*)+$")
# Free-text call lines ("call 9f2c...: early SDP from B ignored") still name their call.
_CALL_PREFIX = re.compile(r"^call ([0-9A-Za-z]+): ")
# Fields the framing owns: a message field of the same name is kept under "field_<name>".
_RESERVED = frozenset({"ts", "level", "logger", "message", "exc"})


def parse_fields(message: str) -> dict[str, str]:
    """The key=value fields of a log message (quoted values unquoted); {} when none.
    A free-text line of the form "call <id>: ..." gives `call`."""
    fields: dict[str, str] = {}
    prefix = _CALL_PREFIX.match(message)
    if prefix is not None:
        fields["call"] = prefix.group(1)
    for key, raw in _PAIR.findall(message):
        value = raw
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw[1:-1]
        fields[f"field_{key}" if key in _RESERVED else key] = value
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _quote(value: str) -> str:
    """A value safe for one kv line: bare when plain, else a JSON string (escaped)."""
    if value and re.fullmatch(r"[^\s\"=\\]+", value):
        return value
    return json.dumps(value, ensure_ascii=False)


class KvFormatter(logging.Formatter):
    """`<asctime> <LEVEL> <logger> <message fields>` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        head = f"{self.formatTime(record)} {record.levelname} {record.name}"
        if "\n" not in message and _KV_LINE.match(message):
            body = message.strip()
        else:
            prefix = _CALL_PREFIX.match(message)
            call = f"call={prefix.group(1)} " if prefix is not None else ""
            body = f"{call}msg={_quote(message)}"
        line = f"{head} {body}"
        if record.exc_info:
            line += f" exc={_quote(self.formatException(record.exc_info))}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: framing members, then the message's key=value fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for key, value in parse_fields(message).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def formatter_for(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "kv":
        return KvFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def setup_logging(fmt: LogFormat, level: str, stream: TextIO | None = None) -> None:
    """Replaces the root logger's handlers with one stream handler in format `fmt`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter_for(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
