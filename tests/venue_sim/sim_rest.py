"""One signed private spot REST request, handled by a `SpotRestServer` in process (no socket):
for tests that drive the simulator's REST face next to its engine."""

from __future__ import annotations

import itertools
import json
import urllib.parse
from typing import Any

from gateway.kraken.auth import spot_api_sign
from gateway.venue_sim.spot_rest import SpotRestServer

_nonce = itertools.count(1)


def private_call(srv: SpotRestServer, key: str, secret: str, method: str,
                 **params: str) -> dict[str, Any]:
    """The whole answer (``error`` and ``result``) of one signed ``/0/private/<method>``;
    asserts HTTP 200 (Kraken answers errors in the body)."""
    path = f"/0/private/{method}"
    n = next(_nonce)
    body = urllib.parse.urlencode([("nonce", str(n)), *params.items()])
    status, text = srv.handle("POST", path, {"API-Key": key,
                                             "API-Sign": spot_api_sign(secret, path, n, body)},
                              body)
    assert status == 200, text
    out: dict[str, Any] = json.loads(text)
    return out
