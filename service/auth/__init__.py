"""Who may do what: bearer tokens, roles (admin, partner, analyst, dpo), membership."""

from service.auth.partners import create_partner, find_partner
from service.auth.principals import (
    ROLES,
    Authenticated,
    authenticate,
    create_principal,
    find_project,
    is_member,
    revoke_principal,
    rotate_token,
)

__all__ = [
    "ROLES",
    "Authenticated",
    "authenticate",
    "create_partner",
    "create_principal",
    "find_partner",
    "find_project",
    "is_member",
    "revoke_principal",
    "rotate_token",
]
