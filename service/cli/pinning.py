"""What a partner has agreed to, kept on the partner's machine: the pinned enclave key
and the disclosure policy it accepted, one small JSON file per project.

``<config dir>/projects/<project id>.json`` (mode 0600) holds the service URL, the enclave
key fingerprint and the policy fingerprint. It is written only on a confirmed first use
(``--trust`` or ``--enclave-fingerprint``) and when the partner accepts a changed policy
(``--accept-policy``); afterwards a different key or policy is refused, so an operator
who swaps the enclave key or the policy cannot get an extract sealed under it unnoticed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Pin", "config_root", "load_pin", "save_pin"]


@dataclass(frozen=True)
class Pin:
    """The enclave key and policy a partner confirmed for one project."""

    url: str
    project_id: str
    project_name: str
    enclave_key_fingerprint: str
    policy_fingerprint: str


def config_root(configured: Path | None) -> Path:
    """``PPRL_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/pprl``, else ``~/.config/pprl``."""
    if configured is not None:
        return configured
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pprl"


def _path(root: Path, project_id: str) -> Path:
    safe = "".join(c for c in project_id if c.isalnum() or c in "-_")[:80]
    return root / "projects" / f"{safe}.json"


def load_pin(root: Path, project_id: str) -> Pin | None:
    """The saved pin of a project, or None if there is none yet."""
    path = _path(root, project_id)
    try:
        data = json.loads(path.read_text())
        return Pin(**{k: str(data[k]) for k in Pin.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"{path}: not a pprl project pin (delete it and confirm the fingerprint again)"
        ) from None


def save_pin(root: Path, pin: Pin) -> Path:
    """Write the pin (0600, atomically); returns its path."""
    path = _path(root, pin.project_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(pin), fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
