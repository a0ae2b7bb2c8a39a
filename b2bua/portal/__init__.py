"""The web portal: login, search, play, download, audit (see docs/portal.md).

Runs in its own process (`b2bua portal`, or started by `b2bua serve`): it is one of the
two places that read the age identity, and the recorder never imports it.
"""
