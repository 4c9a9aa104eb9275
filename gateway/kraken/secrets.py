"""Loading API credentials and keeping them out of logs.

Why this exists: the gateway holds a spot key, a futures key and a FIX key, each with a base64
secret. They come from the environment (containers, CI) or from a file (systemd credentials,
Kubernetes secrets). Every error names *where* we looked, never *what* we found, and every logger
that may print a raw FIX message (a Logon carries ``553`` API key and ``554`` password) runs its
text through :func:`mask` first.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ENV_NAME", "MASK", "SecretError", "SecretMaskingFilter", "load_secret", "mask",
           "open_to_others", "shown"]

MASK = "***"

# A FIX 553 (Username = API key) or 554 (Password) field, at the start of the text or right after
# a field separator: SOH on the wire, '|' in human-readable logs. The value runs to the next
# separator. The lookbehind keeps e.g. "1553=" or "x554=" from matching.
_FIX_CREDENTIAL_FIELD = re.compile(r"(?<![^\x01|])(55[34])=[^\x01|]*")


# What an environment variable's name may be (POSIX: letters, digits, _, not a digit first).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(ValueError):
    """A credential could not be loaded; the message names the source, never the value."""


def load_secret(env: str | None = None, file: str | os.PathLike[str] | None = None) -> str:
    """Return a credential from environment variable ``env`` or else from ``file``, stripped.

    The variable wins when it is set and non-blank, so an operator can override a mounted file for
    one run; the file is the fallback. Surrounding whitespace is stripped because files written
    with ``echo`` end in a newline, which would otherwise change every signature.
    """
    if env is None and file is None:
        raise SecretError("no credential source configured: give an environment variable or a file")
    tried: list[str] = []
    if env is not None:
        value = os.environ.get(env)
        if value is not None and value.strip():
            return _one_token(value.strip(), f"environment variable {shown(env)}")
        tried.append(f"environment variable {shown(env)} is "
                     f"{'blank' if value is not None else 'not set'}")
    if file is not None:
        path = Path(file)
        name = shown(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            tried.append(f"file {name} does not exist")
        except PermissionError:
            tried.append(f"file {name} is not readable by this user")
        except IsADirectoryError:
            tried.append(f"{name} is a directory, not a file")
        except UnicodeDecodeError:
            tried.append(f"file {name} is not UTF-8 text")
        except OSError as exc:
            tried.append(f"file {name} could not be read ({exc.strerror or type(exc).__name__})")
        else:
            if text.strip():
                return _one_token(text.strip(), f"file {name}")
            tried.append(f"file {name} is empty")
    raise SecretError("credential not found: " + "; ".join(tried))


def _one_token(value: str, source: str) -> str:
    """`value` if it holds no whitespace: a key or secret is one token, and one with a newline
    or space inside (a file of two lines, a pasted key wrapped) would go into the logon's 553
    or the signature as it is, refused by the venue on every retry with no word of why."""
    if any(c.isspace() for c in value):
        lines = value.count("\n") + 1
        raise SecretError(f"{source} holds whitespace inside the value"
                          f"{f' ({lines} lines)' if lines > 1 else ''}: a key or secret is one "
                          "token on one line")
    return value


# What a pasted key or secret looks like (base64, no extension), as opposed to a file name.
_KEY_LIKE = re.compile(r"[A-Za-z0-9+/=_-]{20,}")
# An environment variable's name as people write them: one case (KRAKEN_API_SECRET,
# my_secret), mostly letters. A random key of 20+ characters mixes cases, or (hex) is mostly
# digits.
_ONE_CASE_NAME = re.compile(r"[A-Z0-9_]+|[a-z0-9_]+")


def looks_like_a_key(text: str) -> bool:
    """Whether `text`, given where a file name or an environment variable's name goes, is
    more likely the key or secret itself (`file = "kQH5…=="`, `--secret-env kQH5…`)."""
    if not _KEY_LIKE.fullmatch(text) or text.startswith("/"):
        return False
    letters = sum(c.isalpha() for c in text)
    return not (_ONE_CASE_NAME.fullmatch(text) and letters * 2 >= len(text))


def shown(name: str | os.PathLike[str]) -> str:
    """A file name or environment variable name for a message, unless it looks like a key
    pasted where the name belongs: an error must not print the secret it was given."""
    text = os.fspath(name)
    if looks_like_a_key(text):
        return "named (not shown: it looks like a key or secret itself, not a name)"
    return text


def open_to_others(file: str | os.PathLike[str]) -> str | None:
    """What is wrong with the mode of a credential file that group or others may use, or None.

    One check for every file a credential is read from (venue key and secret, admin tokens):
    a file others can read hands the credential to every local account that can, and the
    gateway says so at start and in ``fixgw run --check`` rather than refusing to start (it
    does not change a file it did not make). A file that cannot be looked at is None here:
    reading it reports that."""
    try:
        mode = os.stat(file).st_mode
    except OSError:
        return None
    if not mode & 0o077:
        return None
    who = "others" if mode & 0o007 else "its group"
    return (f"{shown(file)} can be used by {who} (mode {mode & 0o777:04o}): every local "
            "account that can read it has the credential; chmod 600 it")


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret, and every FIX 553/554 value, with ``***``.

    Longest secrets are replaced first so that a secret containing another (a key and its prefix)
    is masked whole. Empty strings are ignored: they would match everywhere.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _FIX_CREDENTIAL_FIELD.sub(lambda m: f"{m.group(1)}={MASK}", text)


class SecretMaskingFilter(logging.Filter):
    """A logging filter applying :func:`mask` to the fully formatted message.

    It formats ``record.msg % record.args`` itself and clears ``args``, because a secret can hide
    in an argument as easily as in the format string.
    """

    def __init__(self, secrets: Iterable[str], name: str = "") -> None:
        super().__init__(name)
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask(record.getMessage(), self._secrets)
        record.args = None
        return True
