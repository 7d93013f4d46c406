"""Typed errors of the shroud client.

Every failure of an API call is a :class:`ShroudError` carrying the HTTP
``status``, the server's human ``error`` text and its ``errors`` list
(``[{"name": ..., "error": ...}]``, for requests where several items can
fail). The server never puts a secret value in these texts, and this client
never adds one: no message or ``repr`` here holds a value, a token or a
request body.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Type

__all__ = [
    "ShroudError",
    "ShroudConnectionError",
    "ValidationError",
    "PartialSetError",
    "PayloadTooLargeError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "ServerError",
    "CommandExitError",
    "error_for_status",
]


class ShroudError(Exception):
    """Base class of every error raised by this package.

    Attributes:
        status: the HTTP status (``None`` when no answer came, or for errors
            that are not HTTP answers, like :class:`CommandExitError`).
        error: the server's text (it names things, never values).
        errors: the per-item failures, ``[{"name": ..., "error": ...}]``.
        body: the whole JSON error body (``{}`` when there was none).
    """

    status: Optional[int]
    error: str
    errors: List[Dict[str, Any]]
    body: Dict[str, Any]

    def __init__(
        self,
        error: str,
        status: Optional[int] = None,
        errors: Optional[List[Dict[str, Any]]] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.errors = list(errors or [])
        self.body = dict(body or {})

    def __str__(self) -> str:
        text = self.error
        if self.status is not None:
            text = f"{text} (HTTP {self.status})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, error={self.error!r}, errors={self.errors!r})"


class ShroudConnectionError(ShroudError):
    """The server could not be reached, or the connection broke mid-answer."""


class ValidationError(ShroudError):
    """400, 413 or 422: the request was refused as invalid (nothing, or only part, was done)."""


class PartialSetError(ValidationError):
    """``POST /api/vaults/secrets`` answered 400: some secrets failed, the others are set.

    ``errors`` names each one that failed; ``set_secrets`` and ``versions``
    tell what did succeed.
    """

    set_secrets: List[str]
    versions: Dict[str, int]

    def __init__(
        self,
        error: str,
        status: Optional[int] = None,
        errors: Optional[List[Dict[str, Any]]] = None,
        body: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(error, status, errors, body)
        self.set_secrets = list(self.body.get("set_secrets") or [])
        self.versions = dict(self.body.get("versions") or {})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error={self.error!r}, "
            f"errors={self.errors!r}, set_secrets={self.set_secrets!r}, versions={self.versions!r})"
        )


class PayloadTooLargeError(ValidationError):
    """413: too much data, e.g. ``sandbox.files.write`` to a sandbox whose disk is full (nothing was written)."""


class AuthenticationError(ShroudError):
    """401: the token is unknown, revoked or malformed."""


class PermissionDeniedError(ShroudError):
    """403: no token, a vault beyond the token's grants, or a refused fetch destination."""


class NotFoundError(ShroudError):
    """404: no such secret, sandbox, deployment, run or route."""


class ConflictError(ShroudError):
    """409: e.g. this server does not supervise deployments, or the sandbox lives on another node."""


class RateLimitError(ShroudError):
    """429: too many sandbox commands or agent runs at once; try again later."""

    retry_after: Optional[float]

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(ShroudError):
    """5xx: the server failed (503: its store is unavailable; try again shortly)."""

    retry_after: Optional[float]

    def __init__(self, *args: Any, retry_after: Optional[float] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class CommandExitError(ShroudError):
    """Raised by ``sandbox.commands.run`` (E2B style) when the command exits non-zero.

    ``result`` is the whole :class:`~shroud.ExecResult`; ``exit_code``,
    ``stdout`` and ``stderr`` (masked by the server) are copied here. The
    message holds the exit code only.
    """

    def __init__(self, result: Any) -> None:
        super().__init__(f"the command exited with code {result.exit_code}")
        self.result = result
        self.exit_code: int = result.exit_code
        self.stdout: str = result.stdout
        self.stderr: str = result.stderr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(exit_code={self.exit_code!r})"


_BY_STATUS: Dict[int, Type[ShroudError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def error_for_status(
    status: int,
    body: Optional[Mapping[str, Any]],
    fallback: str = "",
    retry_after: Optional[str] = None,
) -> ShroudError:
    """The typed error of an HTTP answer with a non-2xx ``status``."""
    body = dict(body or {})
    text = body.get("error")
    if not isinstance(text, str) or not text:
        text = fallback or f"the server answered {status}"
    errors = body.get("errors")
    if not isinstance(errors, list):
        errors = []
    if status in (400, 422) and "set_secrets" in body:
        return PartialSetError(text, status, errors, body)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ShroudError
    if cls in (RateLimitError, ServerError):
        return cls(text, status, errors, body, retry_after=_retry_after(retry_after))
    return cls(text, status, errors, body)
