"""pprl's pure linkage core: spec, normalisation, partner-side encoding, matching,
statistics and disclosure control. It never imports the service, a web framework or an
ORM, and never reads the environment.
"""

from linkage.errors import (
    DisclosureError,
    InputError,
    LinkageError,
    ManifestError,
    MatchError,
    SecretError,
    SpecError,
)
from linkage.spec import Spec, fingerprint, load_spec, output_schema, parse_spec, token_columns

__all__ = [
    "DisclosureError",
    "InputError",
    "LinkageError",
    "ManifestError",
    "MatchError",
    "SecretError",
    "Spec",
    "SpecError",
    "fingerprint",
    "load_spec",
    "output_schema",
    "parse_spec",
    "token_columns",
]

__version__ = "0.1.0"
