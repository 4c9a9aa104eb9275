"""One HTTP exchange for the venue REST clients: any HTTP answer (4xx and 5xx included) is a
(status, body) the caller decodes, because Kraken puts its error strings in those bodies; only
"no answer at all" is an exception, which callers turn into a retryable transport error. And the
one opener they send it through (`opener_for`)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def opener_for(base_url: str) -> urllib.request.OpenerDirector:
    """Environment proxies apply to the real venue; a loopback simulator must never be sent
    through one (a CI runner with HTTP_PROXY set would otherwise fail every test)."""
    host = (urllib.parse.urlsplit(base_url).hostname or "").lower()
    proxies: dict[str, str] | None = {} if host in _LOOPBACK else None
    return urllib.request.build_opener(urllib.request.ProxyHandler(proxies))


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
