"""Python client of the shroud HTTP API (``shroud serve``).

    from shroud import Shroud

    rt = Shroud()                      # $SHROUD_URL, $SHROUD_TOKEN
    rt.secrets.set("DATABASE_URL", "postgres://...")
    with rt.sandboxes.create(template="bash") as sandbox:
        print(sandbox.exec("echo $DATABASE_URL", secrets=["DATABASE_URL"]).stdout)
        # <secret:database_url>

Standard library only. See the README for the whole API.
"""

from ._transport import LineStream
from ._version import __version__
from .client import (
    DEFAULT_URL,
    PURPOSES,
    Agents,
    Deployments,
    References,
    Runs,
    Secrets,
    Shroud,
    Vars,
    aws_v4_auth,
    basic_auth,
    bearer_auth,
)
from .errors import (
    AuthenticationError,
    CommandExitError,
    ConflictError,
    NotFoundError,
    PartialSetError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ShroudConnectionError,
    ShroudError,
    ValidationError,
)
from ._transport import ByteStream
from .sandboxes import CommandHandle, Commands, ExecStream, Files, Sandbox, Sandboxes
from .types import (
    ExecResult,
    ExitEvent,
    FetchResponse,
    FileEntry,
    Health,
    OutputEvent,
    ProcessInfo,
    Rendered,
    RenderedSecret,
    Run,
    SandboxInfo,
    SecretMetadata,
    SecretRef,
    SetResult,
)

#: E2B's name for a command's result.
CommandResult = ExecResult

__all__ = [
    "__version__",
    "Shroud",
    "DEFAULT_URL",
    "PURPOSES",
    "Secrets",
    "Vars",
    "References",
    "Deployments",
    "Agents",
    "Runs",
    "Sandboxes",
    "Sandbox",
    "Commands",
    "CommandHandle",
    "Files",
    "ExecStream",
    "LineStream",
    "ByteStream",
    "bearer_auth",
    "basic_auth",
    "aws_v4_auth",
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
    "ExecResult",
    "CommandResult",
    "ExitEvent",
    "OutputEvent",
    "FetchResponse",
    "FileEntry",
    "ProcessInfo",
    "Health",
    "Rendered",
    "RenderedSecret",
    "Run",
    "SandboxInfo",
    "SecretMetadata",
    "SecretRef",
    "SetResult",
]
