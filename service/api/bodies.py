"""The base of every JSON request body: unknown fields refused, no NUL characters.

PostgreSQL text cannot hold NUL (U+0000) and SQLite would store it silently, so the same
request would fail differently on the two databases; refusing it at the edge gives one
clear 422 naming the field on both.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["RequestBody"]


def _nul_at(value: Any, path: str) -> str | None:
    """The path of the first string holding a NUL character, if any (keys included)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                return where
            found = _nul_at(item, where)
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_at(item, f"{path}[{i}]")
            if found:
                return found
    return None


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        where = _nul_at(data, "")
        if where is not None:
            raise ValueError(f"{where or 'body'}: text may not contain NUL (U+0000) characters")
        return data
