"""Whether a scratch directory still belongs to someone (the core cannot import service)."""

from __future__ import annotations

import os
import socket

__all__ = ["owned_by_live_process_or_other_host"]


def owned_by_live_process_or_other_host(name: str) -> bool:
    """For ``run-<host>-<uid>-<pid>``: True unless <host> is this host and <pid> is dead.

    On shared storage another host's process ids mean nothing here, so its directories
    are left for that host to sweep.
    """
    parts = name.split("-")
    if len(parts) < 4 or not parts[-1].isdigit():
        return True  # not ours: leave it
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:24] or "host"
    if parts[1] != host:
        return True
    pid = int(parts[-1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
