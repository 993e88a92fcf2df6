"""Who may do what: bearer tokens, roles (admin, partner, analyst, dpo), membership."""

from service.auth.principals import (
    ROLES,
    Authenticated,
    authenticate,
    create_principal,
    find_project,
    is_member,
    revoke_principal,
)

__all__ = [
    "ROLES",
    "Authenticated",
    "authenticate",
    "create_principal",
    "find_project",
    "is_member",
    "revoke_principal",
]
