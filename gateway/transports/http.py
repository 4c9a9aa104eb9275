"""One HTTP exchange for the venue REST clients: any HTTP answer (4xx and 5xx included) is a
(status, body) the caller decodes, because Kraken puts its error strings in those bodies; only
"no answer at all" is an exception, which callers turn into a retryable transport error."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request


class NoAnswer(Exception):
    """The request got no HTTP answer (refused, reset, timed out); `reason` says why."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


def exchange(opener: urllib.request.OpenerDirector, request: urllib.request.Request,
             timeout_s: float) -> tuple[int, bytes]:
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        try:
            raw = exc.read()
        except (OSError, http.client.HTTPException):
            raw = b""
        finally:
            exc.close()
        return int(exc.code), raw
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise NoAnswer(exc.reason if isinstance(exc, urllib.error.URLError) else exc) from exc
