"""Service errors. Each carries its HTTP status; one handler in ``service.app`` turns any
of them into ``{"error": ..., "detail": ...}``. Messages are safe to show: they never
contain record values, tokens or secrets.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
]


class ServiceError(Exception):
    status = 400
    error = "bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        # set by ``service.api.deps.deny``: the refusal is audited by the error handler,
        # after the request's own transaction has been rolled back
        self.audit: dict[str, object] | None = None


class BadRequest(ServiceError):
    status, error = 400, "bad request"


class Unauthorized(ServiceError):
    status, error = 401, "unauthorized"


class Forbidden(ServiceError):
    status, error = 403, "forbidden"


class NotFound(ServiceError):
    status, error = 404, "not found"


class Conflict(ServiceError):
    status, error = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status, error = 413, "payload too large"


class Unprocessable(ServiceError):
    status, error = 422, "unprocessable"


class TooManyRequests(ServiceError):
    status, error = 429, "too many requests"


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI documentation of the ``{"error", "detail"}`` bodies a route may return."""
    from pydantic import BaseModel

    class ErrorBody(BaseModel):
        error: str
        detail: str

    described = {400: "bad request", 401: "missing, unknown, expired or revoked token",
                 403: "the caller's role may not do this", 404: "not found (or not visible to the caller)",
                 409: "conflicts with the current state", 413: "upload too large",
                 422: "invalid request or unacceptable upload",
                 429: "a project's rate limit (runs or resubmissions per period) is reached"}  # fmt: skip
    return {s: {"model": ErrorBody, "description": described[s]} for s in statuses}
