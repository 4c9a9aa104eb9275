"""Security: credentials never reach a log, an event or a file the gateway writes.

Admin authentication (no token, wrong token, read-only token on a mutating call) is covered in
test_admin.py::test_unauthenticated_and_permission_denied and test_fixgwctl.py::test_auth_failures;
ForceTransport's read-only refusal in test_transport_events.py.

Here: a real `fixgw run` (fix_message_log on, JSON logs) against the simulator, one order from an
OMS, a clean stop, then everything the run produced is searched for the API key, the API secret
and any unmasked 554 (Password) value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import Oms, make_client
from tests.procs import Credentials, GatewayProcess, SimProcess

UNMASKED_CREDENTIAL = re.compile(r"(?<![0-9])55[34]=(?!\*\*\*(?:[|\x01\s\"]|$))")


def _everything(gw: GatewayProcess) -> dict[str, str]:
    """Every text the run produced: stdout, stderr and each file under the gateway's data dir."""
    out = {"<stdout>": gw.out.text(), "<stderr>": gw.err.text()}
    for path in sorted((gw.data_dir / "var").rglob("*")):
        if path.is_file():
            out[str(path.relative_to(gw.data_dir))] = path.read_bytes().decode("latin-1")
    return out


def test_no_credential_in_any_log_event_or_file(tmp_path: Path) -> None:
    creds = Credentials()
    sim = SimProcess(tmp_path / "sim", creds)
    gw: GatewayProcess | None = None
    try:
        gw = GatewayProcess(tmp_path / "gw", sim, creds,
                            gateway_toml='fix_message_log = true\nlog_format = "json"')
        client = make_client(tmp_path / "oms", gw.oms_port, "OMS", "FIXGW")
        client.start()
        try:
            oms = Oms(client)
            cl = oms.buy("0.01", "30000.0")
            oms.report(cl, "0")
        finally:
            client.stop()
        assert gw.stop() == 0
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()

    produced = _everything(gw)
    msg_log = produced.get("var/log/fix-messages.log", "")
    # The message log is there and has the venue Logon with its credentials masked.
    assert "35=A|" in msg_log and "553=***" in msg_log and "554=***" in msg_log, msg_log[:2000]
    assert "35=D|" in msg_log and cl in msg_log
    assert not (gw.data_dir / "var" / "log" / "venue").exists()  # no QuickFIX FileLog any more
    # JSON log lines on stderr: every line is one object with ts, level, logger, msg.
    for line in gw.err.text().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            assert {"ts", "level", "logger", "msg"} <= rec.keys()
    assert any(line.startswith("{") for line in gw.err.text().splitlines())
    # The event process (a child) logs in the same format, its lines tagged with its name.
    assert any(line.startswith("{") and json.loads(line).get("process") == "event process"
               for line in gw.err.text().splitlines()), gw.err.text()[-2000:]
    assert "[event process]" not in gw.err.text()

    leaks = []
    for where, text in produced.items():
        for secret, what in ((creds.api_key, "API key"), (creds.api_secret, "API secret")):
            if secret in text:
                leaks.append(f"{what} in {where}")
        for mt in UNMASKED_CREDENTIAL.finditer(text):
            leaks.append(f"unmasked {text[mt.start():mt.start() + 3]}=... in {where}")
    # QuickFIX's file stores included: the venue trading session keeps no messages
    # (PersistMessages=N), so not its Logon (553 key, 554 signature) either.
    assert not leaks, leaks
