"""SIP signalling and call control of the consent-aware recording B2BUA."""

__version__ = "0.1.0"
