"""Small helpers about local processes (used to sweep what a killed process left)."""

from __future__ import annotations

import os

__all__ = ["owned_by_other_live_process", "pid_alive"]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owned_by_other_live_process(name: str) -> bool:
    """Whether ``name`` ends in ``-<pid>`` of a live process other than this one.

    Scratch files and directories carry their creator's pid so that a restarted process
    can sweep what a killed one left, and leave alone what a running one still uses.
    """
    pid = name.rsplit("-", 1)[-1]
    return pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid))
