"""Partner-side encoding: normalise, derive variants, HMAC-hash, write a hashed extract.

Runs on the partner's machine (``pprl hash``). The output holds keyed tokens, optional
Bloom filters and coarse attributes, never a plaintext identifier nor a row number (those
go to an optional local row map, see ``hash_file``).
"""

from linkage.encode.file import hash_file, read_manifest
from linkage.encode.secret import SECRET_BYTES, load_secret, new_secret, write_secret
from linkage.encode.table import Encoder, EncodeResult, encode_table
from linkage.encode.tokens import TokenMaker

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
