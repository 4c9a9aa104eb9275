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

__all__ = ["MASK", "SecretError", "SecretMaskingFilter", "load_secret", "mask"]

MASK = "***"

# A FIX 553 (Username = API key) or 554 (Password) field, at the start of the text or right after
# a field separator: SOH on the wire, '|' in human-readable logs. The value runs to the next
# separator. The lookbehind keeps e.g. "1553=" or "x554=" from matching.
_FIX_CREDENTIAL_FIELD = re.compile(r"(?<![^\x01|])(55[34])=[^\x01|]*")


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
            return value.strip()
        tried.append(f"environment variable {env} is {'blank' if value is not None else 'not set'}")
    if file is not None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            tried.append(f"file {_shown(path)} does not exist")
        except PermissionError:
            tried.append(f"file {path} is not readable by this user")
        except IsADirectoryError:
            tried.append(f"{path} is a directory, not a file")
        except UnicodeDecodeError:
            tried.append(f"file {path} is not UTF-8 text")
        except OSError as exc:
            tried.append(f"file {path} could not be read ({exc.strerror or type(exc).__name__})")
        else:
            if text.strip():
                return text.strip()
            tried.append(f"file {path} is empty")
    raise SecretError("credential not found: " + "; ".join(tried))


# What a pasted key or secret looks like (base64, no extension), as opposed to a file name.
_KEY_LIKE = re.compile(r"[A-Za-z0-9+/=_-]{20,}")


def _shown(path: Path) -> str:
    """`path` for an error message, unless it looks like a key pasted where a file name
    belongs (`file = "kQH5…=="`): an error must not print the secret it was given."""
    text = str(path)
    if _KEY_LIKE.fullmatch(text) and not text.startswith("/"):
        return "named (not shown: it looks like a key or secret itself, not a file name)"
    return text


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
