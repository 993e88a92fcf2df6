"""Run one benchmark step in a fresh spawned process, so its peak RSS is its own."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

__all__ = ["run_in_child"]


def run_in_child(target: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Call ``target(*args, queue)`` in a spawned child; return what it puts on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=5)
            break
        except Exception:
            if not proc.is_alive():
                raise RuntimeError(f"{target.__name__} died (exit code {proc.exitcode})") from None
    proc.join()
    return result
