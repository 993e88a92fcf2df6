"""Domain errors of the linkage core.

Every error the core raises derives from :class:`LinkageError`, so callers (the CLI, the
service, the enclave worker) can catch one base. Messages are one clear sentence naming
the file, row, column or spec path where one applies, and NEVER contain a record's values:
they may be shown to users and written to logs outside the enclave.
"""

from __future__ import annotations


class LinkageError(Exception):
    """Base of every error raised by the linkage core."""


class SpecError(LinkageError):
    """The linkage spec is invalid; the message names the path inside the spec."""


class SecretError(LinkageError):
    """The project secret file is missing, the wrong size or readable by others."""


class InputError(LinkageError):
    """A partner's input extract cannot be read or does not fit the spec."""


class ManifestError(LinkageError):
    """A hashed extract's manifest is missing, malformed or does not match the project."""


class MatchError(LinkageError):
    """Linkage inside the enclave failed; the message is safe to show (no values)."""


class DisclosureError(LinkageError):
    """A release was refused by disclosure control (for example a spent privacy budget)."""
