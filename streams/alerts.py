"""`python -m streams.alerts`: the contract's command to follow the alerts topic.

The follower itself is a tool beside the worker (:mod:`tools.alerts`); this name stays
because users and scripts call it.
"""

from __future__ import annotations

import sys

from tools.alerts import follow, format_alert, main

__all__ = ["follow", "format_alert", "main"]

if __name__ == "__main__":
    sys.exit(main())
