"""`python -m b2bua.portal --config C`: the portal as its own process."""

from __future__ import annotations

import sys

from b2bua.portal.cli import main

if __name__ == "__main__":
    sys.exit(main())
