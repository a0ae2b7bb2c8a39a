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
.login-lang { max-width: 22rem; margin: -3.2rem auto 0; text-align: right; }
.login-lang form { display: inline; }
.login-lang button.link { color: #23395d; }
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
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{{ t("list_title") }}{% endblock %} – {{ t("title_suffix") }}</title>
<link rel="stylesheet" href="/static/portal.css">
</head>
<body>
{% if user %}
<header>
  <strong>{{ t("app_name") }}</strong>
  <a href="/recordings">{{ t("nav_recordings") }}</a>
  {% if user.role == "admin" %}<a href="/audit">{{ t("nav_audit") }}</a>{% endif %}
  <a href="/account/password">{{ t("nav_password") }}</a>
  <span class="who">{{ user.name }} ({{ t.value("role", user.role) }})</span>
  {% for other in languages if other != lang %}
  <form method="post" action="/language" class="lang">
    <input type="hidden" name="csrf" value="{{ csrf }}">
    <input type="hidden" name="language" value="{{ other }}">
    <input type="hidden" name="next" value="{{ here }}">
    <button class="link" type="submit" lang="{{ other }}" title="{{ t("language") }}">{{ t.endonym(other) }}</button>
  </form>
  {% endfor %}
  <form method="post" action="/logout">
    <input type="hidden" name="csrf" value="{{ csrf }}">
    <button class="link" type="submit">{{ t("logout") }}</button>
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
{% block title %}{{ t("login_title") }}{% endblock %}
{% block main %}
<form class="login" method="post" action="/login">
  <h1>{{ t("app_name") }}</h1>
  <input type="hidden" name="csrf" value="{{ login_csrf }}">
  <label>{{ t("login_username") }} <input name="username" autocomplete="username" required
    value="{{ username }}" autofocus></label>
  <label>{{ t("login_password") }} <input name="password" type="password" autocomplete="current-password"
    required></label>
  <button type="submit">{{ t("login_button") }}</button>
</form>
<div class="login-lang">
{% for other in languages if other != lang %}
<form method="post" action="/login/language" class="lang">
  <input type="hidden" name="csrf" value="{{ login_csrf }}">
  <input type="hidden" name="language" value="{{ other }}">
  <button class="link" type="submit" lang="{{ other }}" title="{{ t("language") }}">{{ t.endonym(other) }}</button>
</form>
{% endfor %}
</div>
{% endblock %}
"""

_LIST = """{% extends "base.html" %}
{% block main %}
<h1>{{ t("list_title") }}</h1>
<form class="filters" method="get" action="/recordings">
  <label>{{ t("filter_from") }} <input type="date" name="from" value="{{ q.from }}"></label>
  <label>{{ t("filter_to") }} <input type="date" name="to" value="{{ q.to }}"></label>
  <label>{{ t("filter_number") }} <input name="number" value="{{ q.number }}" size="14"></label>
  <label>{{ t("filter_extension") }} <input name="extension" value="{{ q.extension }}" size="6"></label>
  <label>{{ t("filter_direction") }} <select name="direction">
    <option value="">{{ t("filter_any") }}</option>
    {% for d in directions %}<option value="{{ d }}"{% if q.direction == d %} selected{% endif %}>{{ t.value("direction", d) }}</option>{% endfor %}
  </select></label>
  <label>{{ t("filter_consent") }} <select name="consent">
    <option value="">{{ t("filter_any") }}</option>
    {% for c in consents %}<option value="{{ c }}"{% if q.consent == c %} selected{% endif %}>{{ t.value("consent", c) }}</option>{% endfor %}
  </select></label>
  <button type="submit">{{ t("filter_search") }}</button>
  <a href="/recordings">{{ t("filter_reset") }}</a>
</form>
<table>
<thead><tr><th>{{ t("col_started") }}</th><th>{{ t("col_direction") }}</th><th>{{ t("col_caller") }}</th><th>{{ t("col_callee") }}</th>
<th>{{ t("col_extension") }}</th><th>{{ t("col_duration") }}</th><th>{{ t("col_consent") }}</th><th>{{ t("col_status") }}</th><th>{{ t("col_expires") }}</th><th></th></tr></thead>
<tbody>
{% for r in rows %}
<tr class="status-{{ r.status }}">
  <td>{{ r.started }}</td><td>{{ t.value("direction", r.direction) }}</td><td>{{ r.caller or "" }}</td>
  <td>{{ r.callee or "" }}</td><td>{{ r.extension or "" }}</td>
  <td class="num">{{ r.duration }}</td><td>{{ t.value("consent", r.consent) }}</td>
  <td>{{ t.value("status", r.status) }}{% if r.legal_hold %} <span class="hold">{{ t("badge_hold") }}</span>{% endif %}</td>
  <td>{{ r.expires }}</td>
  <td><a href="/recordings/{{ r.id }}" data-id="{{ r.id }}">{{ t("open") }}</a></td>
</tr>
{% else %}
<tr><td colspan="10">{{ t("no_match") }}</td></tr>
{% endfor %}
</tbody>
</table>
<div class="pager">
  {% if newer_url %}<a href="{{ newer_url }}">&larr; {{ t("newer") }}</a>{% endif %}
  <span>{{ t("page_number", page=page) }}</span>
  {% if older_url %}<a href="{{ older_url }}">{{ t("older") }} &rarr;</a>{% endif %}
</div>
{% endblock %}
"""

_DETAIL = """{% extends "base.html" %}
{% block title %}{{ t("detail_title", id=r.id) }}{% endblock %}
{% block main %}
<h1>{{ t("detail_heading") }} {{ r.started }} &middot; {{ r.caller or "?" }} &rarr; {{ r.callee or "?" }}</h1>
<div class="card">
{% if playable %}
  <audio controls preload="metadata" src="/recordings/{{ r.id }}/audio.wav"></audio>
  <img class="timeline" src="/recordings/{{ r.id }}/timeline.svg" alt="{{ t("timeline_alt") }}">
  <p><a class="button" href="/recordings/{{ r.id }}/download" download>{{ t("download") }}</a></p>
{% else %}
  <p>{{ t("no_audio") }} <strong>{{ t.value("status", r.status) }}</strong>{% if r.reason %} ({{ t.value("consent", r.reason) }}){% endif %}.</p>
{% endif %}
</div>
<div class="card">
<h2>{{ t("section_call") }}</h2>
<dl class="facts">
  <dt>{{ t("fact_id") }}</dt><dd><code>{{ r.id }}</code></dd>
  <dt>{{ t("fact_call_id") }}</dt><dd><code>{{ r.call_id or "" }}</code></dd>
  <dt>{{ t("fact_direction") }}</dt><dd>{{ t.value("direction", r.direction) }}</dd>
  <dt>{{ t("fact_caller") }}</dt><dd>{{ r.caller or "" }}{% if r.caller_e164 %} ({{ r.caller_e164 }}){% endif %}</dd>
  <dt>{{ t("fact_callee") }}</dt><dd>{{ r.callee or "" }}{% if r.callee_e164 %} ({{ r.callee_e164 }}){% endif %}</dd>
  <dt>{{ t("fact_extension") }}</dt><dd>{{ r.extension or "" }}</dd>
  <dt>{{ t("fact_times") }}</dt><dd>{{ r.started }} / {{ r.ended }}</dd>
  <dt>{{ t("fact_recorded") }}</dt><dd>{{ r.duration }}</dd>
  <dt>{{ t("fact_status") }}</dt><dd>{{ t.value("status", r.status) }}{% if r.legal_hold %} <span class="hold">{{ t("fact_on_hold") }}</span>{% endif %}</dd>
  <dt>{{ t("fact_expires") }}</dt><dd>{{ r.expires }}</dd>
  <dt>{{ t("fact_sha256") }}</dt><dd><code>{{ r.sha256 or "" }}</code></dd>
</dl>
</div>
<div class="card">
<h2>{{ t("section_consent") }}</h2>
{% if consent %}
<dl class="facts">
  {% for label, value, code in consent %}<dt>{{ label }}</dt><dd>{% if code %}<code>{{ value }}</code>{% else %}{{ value }}{% endif %}</dd>{% endfor %}
</dl>
{% else %}<p>{{ t("no_consent") }}</p>{% endif %}
</div>
{% if user.role == "admin" and r.status != "deleted" %}
<div class="card">
<h2>{{ t("section_admin") }}</h2>
<form method="post" action="/recordings/{{ r.id }}/hold" class="stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <input type="hidden" name="hold" value="{{ "0" if r.legal_hold else "1" }}">
  <label>{{ t("admin_reason") }} <input name="reason" required></label>
  <button type="submit">{{ t("admin_release_hold") if r.legal_hold else t("admin_set_hold") }}</button>
</form>
{% if r.status != "recording" %}
<form method="post" action="/recordings/{{ r.id }}/delete" class="stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label>{{ t("admin_delete_reason") }} <input name="reason" required></label>
  <button class="danger" type="submit">{{ t("admin_delete") }}</button>
</form>
{% endif %}
</div>
{% endif %}
{% endblock %}
"""

_AUDIT = """{% extends "base.html" %}
{% block title %}{{ t("audit_title") }}{% endblock %}
{% block main %}
<h1>{{ t("audit_title") }}</h1>
<p>{{ t("audit_chain_ok" if verified.ok else "audit_chain_broken", entries=verified.entries) }}
<code>{{ verified.head_seq }}:{{ verified.head_hash }}</code>.</p>
{% for p in verified.problems %}<div class="error">{{ p }}</div>{% endfor %}
<table>
<thead><tr><th>#</th><th>{{ t("audit_col_at") }}</th><th>{{ t("audit_col_actor") }}</th><th>{{ t("audit_col_action") }}</th><th>{{ t("audit_col_target") }}</th>
<th>{{ t("audit_col_source") }}</th><th>{{ t("audit_col_details") }}</th></tr></thead>
<tbody>
{% for e in entries %}
<tr><td class="num">{{ e.seq }}</td><td>{{ t.datetime(e.at) }}</td><td>{{ e.actor }}</td>
<td>{{ e.action }}</td><td>{{ e.target or "" }}</td><td>{{ e.source or "" }}</td>
<td><code>{{ e.details_text }}</code></td></tr>
{% endfor %}
</tbody>
</table>
<div class="pager">
  {% if newer_url %}<a href="{{ newer_url }}">&larr; {{ t("newer") }}</a>{% endif %}
  {% if older_url %}<a href="{{ older_url }}">{{ t("older") }} &rarr;</a>{% endif %}
</div>
{% endblock %}
"""

_CHANGE_PAGE = """{% extends "base.html" %}
{% block title %}{{ t("password_title") }}{% endblock %}
{% block main %}
<h1>{{ t("password_title") }}</h1>
<form method="post" action="/account/password" class="card stack">
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <label>{{ t("password_current") }} <input type="password" name="current" required
    autocomplete="current-password"></label>
  <label>{{ t("password_new", min_length=min_length) }} <input type="password" name="new"
    required autocomplete="new-password"></label>
  <label>{{ t("password_repeat") }} <input type="password" name="repeat" required
    autocomplete="new-password"></label>
  <button type="submit">{{ t("password_button") }}</button>
</form>
{% endblock %}
"""

_ERROR = """{% extends "base.html" %}
{% block title %}{{ status }}{% endblock %}
{% block main %}
<h1>{{ status }} {{ title }}</h1>
<p>{{ message }}</p>
<p><a href="/recordings">{{ t("error_back") }}</a></p>
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
