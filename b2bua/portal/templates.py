# ruff: noqa: E501 - HTML and CSS text reads better unwrapped
"""The portal's HTML templates and style sheet, kept in Python so no build step and no
package-data setup is needed. Jinja2 with autoescaping forced on for every template:
nothing a user typed (search terms, names, numbers from SIP headers) reaches the page
unescaped."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, StrictUndefined

__all__ = ["STYLESHEET", "environment"]

STYLESHEET = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #f4f5f7; }
header { background: #23395d; color: #fff; padding: .6rem 1.2rem; display: flex;
  align-items: center; gap: 1.2rem; }
header a, header button.link { color: #fff; }
header .who { margin-left: auto; }
header form { display: inline; }
main { padding: 1rem 1.2rem; max-width: 1100px; }
h1 { font-size: 1.35rem; margin: .4rem 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #dde; font-size: .9rem; }
th { background: #e8ebf1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
form.filters { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end;
  background: #fff; padding: .7rem; margin-bottom: 1rem; border: 1px solid #dde; }
form.filters label { display: flex; flex-direction: column; font-size: .8rem; }
input, select, button { font: inherit; padding: .25rem .4rem; }
button, a.button { background: #23395d; color: #fff; border: 0; border-radius: 3px;
  padding: .35rem .8rem; text-decoration: none; cursor: pointer; display: inline-block; }
button.danger { background: #a4262c; }
button.link { background: none; padding: 0; text-decoration: underline; }
.pager { margin-top: .8rem; display: flex; gap: 1rem; }
.flash { background: #fff4ce; border: 1px solid #e0c060; padding: .5rem .8rem; margin-bottom: 1rem; }
.error { background: #fde7e9; border: 1px solid #d13438; padding: .5rem .8rem; margin-bottom: 1rem; }
.card { background: #fff; border: 1px solid #dde; padding: .8rem 1rem; margin-bottom: 1rem; }
dl.facts { display: grid; grid-template-columns: 12rem 1fr; gap: .25rem .8rem; margin: 0; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
audio { width: 100%; margin: .5rem 0; }
img.timeline { max-width: 100%; border: 1px solid #dde; background: #fafafa; }
.login { max-width: 22rem; margin: 4rem auto; background: #fff; padding: 1.2rem 1.5rem;
  border: 1px solid #dde; }
.login label, .stack label { display: block; margin: .6rem 0; }
.login input, .stack input { width: 100%; box-sizing: border-box; }
.status-deleted, .status-not_recorded { color: #777; }
.hold { color: #a4262c; font-weight: bold; }
code { font-size: .85em; }
"""

_BASE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Recordings{% endblock %} – call recorder</title>
<link rel="stylesheet" href="/static/portal.css">
</head>
<body>
{% if user %}
<header>
  <strong>Call recorder</strong>
  <a href="/recordings">Recordings</a>
  {% if user.role == "admin" %}<a href="/audit">Audit log</a>{% endif %}
  <a href="/account/password">Password</a>
  <span class="who">{{ user.name }} ({{ user.role }})</span>
  <form method="post" action="/logout">
    <input type="hidden" name="csrf" value="{{ csrf }}">
    <button class="link" type="submit">Log out</button>
  </form>
</header>
{% endif %}
<main>
{% if flash %}<div class="flash">{{ flash }}</div>{% endif %}
{% if error %}<div class="error" role="alert">{{ error }}</div>{% endif %}
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

_LOGIN = """{% extends "base.html" %}
{% block title %}Log in{% endblock %}
{% block main %}
<form class="login" method="post" action="/login">
  <h1>Call recorder</h1>
  <input type="hidden" name="csrf" value="{{ login_csrf }}">
  <label>User name <input name="username" autocomplete="username" required
    value="{{ username }}" autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"
    required></label>
  <button type="submit">Log in</button>
</form>
{% endblock %}
"""

_LIST = """{% extends "base.html" %}
{% block main %}
<h1>Recordings</h1>
<form class="filters" method="get" action="/recordings">
  <label>From <input type="date" name="from" value="{{ q.from }}"></label>
  <label>To <input type="date" name="to" value="{{ q.to }}"></label>
  <label>Number <input name="number" value="{{ q.number }}" size="14"></label>
  <label>Extension <input name="extension" value="{{ q.extension }}" size="6"></label>
  <label>Direction <select name="direction">
    <option value="">any</option>
    {% for d in directions %}<option{% if q.direction == d %} selected{% endif %}>{{ d }}</option>{% endfor %}
  </select></label>
  <label>Consent <select name="consent">
    <option value="">any</option>
    {% for c in consents %}<option{% if q.consent == c %} selected{% endif %}>{{ c }}</option>{% endfor %}
  </select></label>
  <button type="submit">Search</button>
  <a href="/recordings">Reset</a>
</form>
<table>
<thead><tr><th>Started (UTC)</th><th>Direction</th><th>Caller</th><th>Callee</th>
<th>Ext.</th><th>Duration</th><th>Consent</th><th>Status</th><th>Expires</th><th></th></tr></thead>
<tbody>
{% for r in rows %}
<tr class="status-{{ r.status }}">
  <td>{{ r.started }}</td><td>{{ r.direction or "" }}</td><td>{{ r.caller or "" }}</td>
  <td>{{ r.callee or "" }}</td><td>{{ r.extension or "" }}</td>
  <td class="num">{{ r.duration }}</td><td>{{ r.consent }}</td>
  <td>{{ r.status }}{% if r.legal_hold %} <span class="hold">hold</span>{% endif %}</td>
  <td>{{ r.expires }}</td>
  <td><a href="/recordings/{{ r.id }}" data-id="{{ r.id }}">open</a></td>
</tr>
{% else %}
<tr><td colspan="10">No recordings match.</td></tr>
{% endfor %}
</tbody>
</table>
<div class="pager">
  {% if newer_url %}<a href="{{ newer_url }}">&larr; newer</a>{% endif %}
  <span>page {{ page }}</span>
  {% if older_url %}<a href="{{ older_url }}">older &rarr;</a>{% endif %}
</div>
{% endblock %}
"""

_DETAIL = """{% extends "base.html" %}
{% block title %}Recording {{ r.id }}{% endblock %}
{% block main %}
<h1>Recording {{ r.started }} &middot; {{ r.caller or "?" }} &rarr; {{ r.callee or "?" }}</h1>
<div class="card">
{% if playable %}
  <audio controls preload="metadata" src="/recordings/{{ r.id }}/audio.wav"></audio>
  <img class="timeline" src="/recordings/{{ r.id }}/timeline.svg"
    alt="Timeline of both channels: left external party, right office party">
  <p><a class="button" href="/recordings/{{ r.id }}/download" download>Download WAV</a></p>
{% else %}
  <p>No audio to play: status <strong>{{ r.status }}</strong>{% if r.reason %} ({{ r.reason }}){% endif %}.</p>
{% endif %}
</div>
<div class="card">
<h2>Call</h2>
<dl class="facts">
  <dt>Id</dt><dd><code>{{ r.id }}</code></dd>
  <dt>SIP Call-ID</dt><dd><code>{{ r.call_id or "" }}</code></dd>
  <dt>Direction</dt><dd>{{ r.direction or "" }}</dd>
  <dt>Caller</dt><dd>{{ r.caller or "" }}{% if r.caller_e164 %} ({{ r.caller_e164 }}){% endif %}</dd>
  <dt>Callee</dt><dd>{{ r.callee or "" }}{% if r.callee_e164 %} ({{ r.callee_e164 }}){% endif %}</dd>
  <dt>Extension</dt><dd>{{ r.extension or "" }}</dd>
  <dt>Started / ended (UTC)</dt><dd>{{ r.started }} / {{ r.ended }}</dd>
  <dt>Recorded</dt><dd>{{ r.duration }}</dd>
  <dt>Status</dt><dd>{{ r.status }}{% if r.legal_hold %} <span class="hold">on legal hold</span>{% endif %}</dd>
  <dt>Expires (UTC)</dt><dd>{{ r.expires }}</dd>
  <dt>File SHA-256</dt><dd><code>{{ r.sha256 or "" }}</code></dd>
</dl>
</div>
<div class="card">
<h2>Consent evidence</h2>
{% if consent %}
<dl class="facts">
  {% for key, value in consent %}<dt>{{ key }}</dt><dd>{{ value }}</dd>{% endfor %}
</dl>
{% else %}<p>No consent record.</p>{% endif %}
</div>
{% if user.role == "admin" and r.status != "deleted" %}
<div class="card">
<h2>Administration</h2>
<form method="post" action="/recordings/{{ r.id }}/hold" class="stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <input type="hidden" name="hold" value="{{ "0" if r.legal_hold else "1" }}">
  <label>Reason <input name="reason" required></label>
  <button type="submit">{{ "Release legal hold" if r.legal_hold else "Set legal hold" }}</button>
</form>
{% if r.status != "recording" %}
<form method="post" action="/recordings/{{ r.id }}/delete" class="stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label>Reason for deleting <input name="reason" required></label>
  <button class="danger" type="submit">Delete recording</button>
</form>
{% endif %}
</div>
{% endif %}
{% endblock %}
"""

_AUDIT = """{% extends "base.html" %}
{% block title %}Audit log{% endblock %}
{% block main %}
<h1>Audit log</h1>
<p>Chain {{ "intact" if verified.ok else "BROKEN" }}: {{ verified.entries }} entries,
head <code>{{ verified.head_seq }}:{{ verified.head_hash }}</code>.</p>
{% for p in verified.problems %}<div class="error">{{ p }}</div>{% endfor %}
<table>
<thead><tr><th>#</th><th>At (UTC)</th><th>Actor</th><th>Action</th><th>Target</th>
<th>Source</th><th>Details</th></tr></thead>
<tbody>
{% for e in entries %}
<tr><td class="num">{{ e.seq }}</td><td>{{ e.at }}</td><td>{{ e.actor }}</td>
<td>{{ e.action }}</td><td>{{ e.target or "" }}</td><td>{{ e.source or "" }}</td>
<td><code>{{ e.details_text }}</code></td></tr>
{% endfor %}
</tbody>
</table>
<div class="pager">
  {% if newer_url %}<a href="{{ newer_url }}">&larr; newer</a>{% endif %}
  {% if older_url %}<a href="{{ older_url }}">older &rarr;</a>{% endif %}
</div>
{% endblock %}
"""

_CHANGE_PAGE = """{% extends "base.html" %}
{% block title %}Change password{% endblock %}
{% block main %}
<h1>Change password</h1>
<form method="post" action="/account/password" class="card stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label>Current password <input type="password" name="current" required
    autocomplete="current-password"></label>
  <label>New password (at least {{ min_length }} characters) <input type="password" name="new"
    required autocomplete="new-password"></label>
  <label>Repeat the new password <input type="password" name="repeat" required
    autocomplete="new-password"></label>
  <button type="submit">Change password</button>
</form>
{% endblock %}
"""

_ERROR = """{% extends "base.html" %}
{% block title %}{{ status }}{% endblock %}
{% block main %}
<h1>{{ status }} {{ title }}</h1>
<p>{{ message }}</p>
<p><a href="/recordings">Back to the recordings</a></p>
{% endblock %}
"""


def environment() -> Environment:
    return Environment(
        loader=DictLoader(
            {
                "base.html": _BASE,
                "login.html": _LOGIN,
                "list.html": _LIST,
                "detail.html": _DETAIL,
                "audit.html": _AUDIT,
                "password.html": _CHANGE_PAGE,
                "error.html": _ERROR,
            }
        ),
        autoescape=True,  # every template, whatever its name
        undefined=StrictUndefined,
        auto_reload=False,
    )
