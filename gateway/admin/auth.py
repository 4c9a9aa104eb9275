"""Bearer tokens for the admin service: where they come from, and the interceptor that checks them.

Two roles: ``operator`` may call everything; ``read-only`` may call only the RPCs that change
nothing. A token comes from a file or an environment variable named in config, or, when none is
configured, is generated at ``<data-dir>/admin.token`` (mode 0600) for the operator and that path
is printed at startup. Tokens are compared with ``hmac.compare_digest`` against every configured
token, so the time a check takes says nothing about which token or how much of it matched.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from gateway.admin.audit import AuditLog
from gateway.durable import fsync_dir
from gateway.kraken.secrets import shown

log = logging.getLogger("fixgw.admin")

OPERATOR: Final = "operator"
READ_ONLY: Final = "read-only"

SERVICE: Final = "/fixgw.v1.AdminService/"
# Listed explicitly: a new RPC is read-only only when someone decides it is.
MUTATING_RPCS: Final = frozenset({
    "Logon", "Logout", "Disconnect", "ResetSequence", "SetSequence", "KillSwitch", "SetGateRule",
    "ForceTransport", "CancelOrders",
})
READ_ONLY_RPCS: Final = frozenset({"ListSessions", "GetSession", "GateRules", "Health",
                                   "ListOrders"})

# The metadata key the role and fingerprint travel under from the interceptor to the servicer.
PRINCIPAL_KEY: Final = "x-fixgw-principal"


class TokenError(Exception):
    """A configured token cannot be read (message says which source and why)."""


def fingerprint(token: str) -> str:
    """First 8 hex digits of the token's SHA-256: names a token in logs without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def read_token(*, file: str | Path | None = None, env: str | None = None) -> str:
    """A token from a file (first line, stripped) or an environment variable.

    Only printable ASCII is a token: gRPC metadata carries nothing else, so a client could
    never present any other (fixgwctl's call would fail as "Invalid metadata"). Refused here,
    at start and by `fixgw run --check`, not found out by the first operator who needs it."""
    if (file is None) == (env is None):
        raise TokenError("give exactly one of a token file or an environment variable")
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise TokenError(f"admin token environment variable {shown(env)} is not set or "
                             "empty")
        return _printable(value, f"admin token environment variable {shown(env)}")
    path = Path(file)  # type: ignore[arg-type]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenError(f"cannot read admin token file {shown(path)}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TokenError(f"admin token file {shown(path)} is not UTF-8 text (byte {exc.start}): "
                         "a token is printable ASCII") from None
    value = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise TokenError(f"admin token file {shown(path)} is empty")
    return _printable(value, f"admin token file {shown(path)}")


def _printable(token: str, source: str) -> str:
    """`token` when it is printable ASCII; the error names the source and the position, never
    the token."""
    bad = next((i for i, c in enumerate(token) if not (c.isascii() and c.isprintable())), None)
    if bad is not None:
        raise TokenError(f"{source}: character {bad + 1} of the token is not printable ASCII; "
                         "gRPC metadata carries nothing else, so no client could present it: "
                         "use letters, digits, - and _ (as the generated tokens do)")
    return token


def ensure_token_file(path: Path) -> str:
    """The token in ``path``, generating one (``secrets.token_urlsafe(32)``, mode 0600) when the
    file does not exist. An existing file with group/other permissions is tightened to 0600.

    The file appears whole or not at all (written aside, synced, linked into place): a crash
    mid-write must not leave an empty token file that fails every later start. An empty one
    left by an older version is generated again, said in the log."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        if path.stat().st_size > 0:
            return read_token(file=path)
        log.warning("generated admin token file %s is empty (a crash while it was written): "
                    "generating a new token", path)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600 already
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # unlike a rename, fails if another start made one meanwhile
        except FileExistsError:
            return read_token(file=path)
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return token


@dataclass(frozen=True)
class Principal:
    role: str
    fingerprint: str

    def __str__(self) -> str:
        return f"{self.role}:{self.fingerprint}"


class TokenTable:
    """The configured tokens and their roles."""

    def __init__(self, operator_token: str, read_only_token: str | None = None) -> None:
        if not operator_token:
            raise TokenError("the operator token is empty")
        if read_only_token is not None and hmac.compare_digest(operator_token.encode(),
                                                               read_only_token.encode()):
            raise TokenError("the read-only token must differ from the operator token")
        self._tokens: list[tuple[bytes, Principal]] = [
            (operator_token.encode(), Principal(OPERATOR, fingerprint(operator_token)))]
        if read_only_token:
            self._tokens.append((read_only_token.encode(),
                                 Principal(READ_ONLY, fingerprint(read_only_token))))

    def lookup(self, presented: str) -> Principal | None:
        """The principal for a presented token; every token is compared (no early exit)."""
        p = presented.encode()
        found: Principal | None = None
        for token, principal in self._tokens:
            if hmac.compare_digest(p, token):
                found = principal
        return found


def bearer(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _audit_name(rpc: str) -> str:
    """The audit log's name of an RPC, as the servicer writes it: KillSwitch -> kill_switch."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


def _deny(code: grpc.StatusCode, details: str, method: str, token: str | None,
          audit: AuditLog | None = None, role: str = "unknown") -> grpc.RpcMethodHandler:
    """A handler that refuses the call, logged at WARNING with who asked (peer, the token's
    fingerprint, never the token) and for what: a stolen or guessed token being tried, or a
    read-only token used for a change, is something ops must be able to see. Logged in the
    handler, where the peer is known (the interceptor only has the method and metadata).

    A refused change also goes to the audit log (ok false, the reason): the log is where an
    auditor looks for who tried to change what, and a change that was tried and refused
    belongs there as much as one that ran. Reads are not audited, refused or not."""
    name = method.removeprefix(SERVICE)
    fp = "none" if token is None else fingerprint(token)

    def abort(_request: Any, context: grpc.ServicerContext) -> None:
        peer = context.peer()
        log.warning("admin call denied (%s): %s from %s, token %s", code.name, name, peer,
                    "none" if token is None else f"fingerprint {fp}")
        if audit is not None and method.startswith(SERVICE) and name in MUTATING_RPCS:
            try:
                audit.record(who=f"{role}:{fp}", what=_audit_name(name), args={"peer": peer},
                             ok=False, message=f"denied ({code.name}): {details}")
            except Exception as exc:  # the refusal stands; the record goes to the log
                log.error("admin audit record NOT written to %s (%s): denied %s from %s, "
                          "token %s (%s)", audit.path, exc, name, peer, fp, code.name)
        context.abort(code, details)

    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """UNAUTHENTICATED without a known bearer token, PERMISSION_DENIED for a read-only token on a
    mutating RPC (or on any RPC of this service not listed as read-only). On success the principal
    is handed to the servicer through ``current_principal``."""

    def __init__(self, tokens: TokenTable, audit: AuditLog | None = None) -> None:
        self._tokens = tokens
        self._audit = audit  # where refused changes are recorded (see _deny)

    def intercept_service(self, continuation: Callable[[Any], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails
                          ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        token = bearer(handler_call_details.invocation_metadata)
        if token is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED,
                         "admin call without a bearer token: pass the token from the gateway's "
                         "admin token file (fixgwctl --token-file / FIXGW_TOKEN_FILE)",
                         method, None, self._audit)
        principal = self._tokens.lookup(token)
        if principal is None:
            return _deny(grpc.StatusCode.UNAUTHENTICATED,
                         "admin token rejected: it is not one this gateway was started with",
                         method, token, self._audit)
        name = method.removeprefix(SERVICE)
        if principal.role != OPERATOR and (method.startswith(SERVICE)
                                           and name not in READ_ONLY_RPCS):
            return _deny(grpc.StatusCode.PERMISSION_DENIED,
                         f"{name} changes the gateway; the token given is read-only "
                         "(use an operator token)", method, token, self._audit,
                         principal.role)
        handler = continuation(handler_call_details)
        return _with_principal(handler, principal)


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "fixgw_admin_principal", default=None)


def _with_principal(handler: grpc.RpcMethodHandler | None, principal: Principal
                    ) -> grpc.RpcMethodHandler | None:
    """Wrap a unary-unary handler so the servicer can read the caller's principal
    (``current_principal()``): the interceptor and the handler may run on different threads, so
    the principal is set by the wrapper, on the handler's own thread, for the call's duration."""
    if handler is None or handler.unary_unary is None:
        return handler
    inner = handler.unary_unary

    def call(request: Any, context: grpc.ServicerContext) -> Any:
        token = _current.set(principal)
        try:
            return inner(request, context)
        finally:
            _current.reset(token)

    return grpc.unary_unary_rpc_method_handler(
        call, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


def current_principal() -> Principal:
    """The caller of the admin RPC running on this thread."""
    return _current.get() or Principal("unknown", "--------")


@dataclass(frozen=True)
class AdminTokens:
    operator: str
    read_only: str | None
    # Set when the operator token was generated (or reused from a generated file): print it.
    generated_file: Path | None


def resolve_tokens(data_dir: Path, *, operator_file: Path | None = None,
                   operator_env: str | None = None, read_only_file: Path | None = None,
                   read_only_env: str | None = None) -> AdminTokens:
    """The admin tokens for `fixgw run`: the operator token from the configured file or env var,
    else generated at ``<data_dir>/admin.token`` (0600); the read-only token only if configured.
    Raises TokenError naming the source when a configured token cannot be read."""
    generated: Path | None = None
    if operator_file is not None or operator_env is not None:
        if operator_file is not None and operator_env is not None:
            raise TokenError("admin operator token: give a file or an env var, not both")
        operator = read_token(file=operator_file) if operator_file is not None else read_token(
            env=operator_env)
    else:
        generated = data_dir / "admin.token"
        operator = ensure_token_file(generated)
    read_only: str | None = None
    if read_only_file is not None or read_only_env is not None:
        if read_only_file is not None and read_only_env is not None:
            raise TokenError("admin read-only token: give a file or an env var, not both")
        read_only = read_token(file=read_only_file) if read_only_file is not None else read_token(
            env=read_only_env)
    return AdminTokens(operator, read_only, generated)
