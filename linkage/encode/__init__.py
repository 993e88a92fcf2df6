"""Partner-side encoding: normalise, derive variants, HMAC-hash, write a hashed extract.

Runs on the partner's machine (``pprl hash``). The output holds keyed tokens, optional
Bloom filters and coarse attributes, never a plaintext identifier nor a row number (those
go to an optional local row map, see ``hash_file``).
"""


from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linkage.encode.file import hash_file, read_manifest
    from linkage.encode.secret import SECRET_BYTES, load_secret, new_secret, write_secret
    from linkage.encode.table import Encoder, EncodeResult, encode_table
    from linkage.encode.tokens import TokenMaker

# Imported on first use (PEP 562): the API serves the partner kit from
# linkage.encode.kit, and importing this package must not load the encoder's numpy,
# pyarrow and pandas into the API process.
_WHERE = {
    "hash_file": "file",
    "read_manifest": "file",
    "SECRET_BYTES": "secret",
    "load_secret": "secret",
    "new_secret": "secret",
    "write_secret": "secret",
    "Encoder": "table",
    "EncodeResult": "table",
    "encode_table": "table",
    "TokenMaker": "tokens",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)

__all__ = [
    "SECRET_BYTES",
    "EncodeResult",
    "Encoder",
    "TokenMaker",
    "encode_table",
    "hash_file",
    "load_secret",
    "new_secret",
    "read_manifest",
    "write_secret",
]
