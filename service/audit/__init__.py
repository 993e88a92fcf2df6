"""The tamper-evident audit log: every state change and every release, hash-chained."""

from service.audit.record import SYSTEM, Actor, record

__all__ = ["SYSTEM", "Actor", "record"]
