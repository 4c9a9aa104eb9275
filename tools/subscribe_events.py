#!/usr/bin/env python3
"""Follow the gateway's event stream and print it; resumes after any disconnect.

    python tools/subscribe_events.py [--addr 127.0.0.1:50051] [--kinds order,session_status]
        [--symbols XBT/USD] [--sessions ...] [--accounts ...] [--from-sequence N | --from-oldest]
        [--include-raw] [--json] [--state-file PATH] [--tls-ca ca.pem]
        [--cert-file client.pem --key-file client.key] [--strict] [--max-events N]

This is the reference for how a client should consume EventService: remember the last sequence
processed; after a disconnect (gateway restart, network, RESOURCE_EXHAUSTED because we were too
slow, UNAVAILABLE at shutdown) subscribe again from `last + 1` and nothing is lost or repeated.
A live start asks the gateway for its next sequence first (GetLogInfo), so even a disconnect
before the first event resumes where the stream began instead of live again. Only OUT_OF_RANGE
means events were lost (we were away longer than the gateway retains); it is reported loudly and
the stream continues from the oldest retained event (or exits with `--strict`). DATA_LOSS (the
gateway's journal cannot be read at our position) is not retried: it would fail the same way
forever, so the client stops and says so. With `--state-file` the position also survives
restarts of this client. `--target` and `--kind` are accepted for `--addr` and `--kinds`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from gateway._proto.fixgw.v1 import common_pb2, events_pb2, events_pb2_grpc  # noqa: E402

Event = events_pb2.Event
SOH = b"\x01"


class EventsLost(RuntimeError):
    """The gateway no longer has the events we need (OUT_OF_RANGE)."""

    def __init__(self, wanted: int, oldest: int) -> None:
        super().__init__(f"events {wanted}..{oldest - 1} are no longer retained by the gateway")
        self.wanted = wanted
        self.oldest = oldest


class EventsUnreadable(RuntimeError):
    """The gateway's journal cannot be read at our position (DATA_LOSS): retrying from the same
    sequence fails the same way, so an operator has to look at the journal."""

    def __init__(self, sequence: int, details: str, gap_end: int | None = None) -> None:
        if gap_end is not None:
            # Sequences the gateway lost for good (its event process died after its journal
            # had failed): nothing to repair, but skipping them is still the user's decision.
            msg = (f"the gateway lost events {sequence}..{gap_end - 1} ({details}); alert the "
                   f"gateway's operator. Skipping them is a decision: restart with "
                   f"--from-sequence {gap_end} to take it")
        else:
            msg = (f"the gateway cannot read event {sequence} from its journal "
                   f"({details}); alert the gateway's operator. Skipping it is a decision: "
                   f"restart with --from-sequence {sequence + 1} to take it")
        super().__init__(msg)
        self.sequence = sequence
        self.gap_end = gap_end


def _trailing(err: grpc.RpcError) -> dict[str, str]:
    md = err.trailing_metadata() if isinstance(err, grpc.Call) else None
    return {k: v if isinstance(v, str) else v.decode() for k, v in (md or ())}


def follow(
    target: str,
    request: events_pb2.SubscribeRequest,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    skip_lost: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    max_backoff_s: float = 10.0,
) -> Iterator[Event]:
    """Yield events forever, in sequence order, resuming after every disconnect.

    `request.from_sequence` is the starting point (0 = live); it is advanced as events are
    yielded, so the caller can persist `request.from_sequence` as its position. A live start is
    turned into a position first (GetLogInfo's `next_sequence`): subscribing with 0 again after a
    disconnect would start at the events published after the reconnect and silently skip those
    published while we were away.

    Raises `EventsLost` (OUT_OF_RANGE, with `skip_lost=False`), `EventsUnreadable` (DATA_LOSS),
    and `grpc.RpcError` for INVALID_ARGUMENT / UNIMPLEMENTED; retries everything else.
    """
    backoff = 0.2
    while True:
        channel = (
            grpc.secure_channel(target, credentials)
            if credentials is not None
            else grpc.insecure_channel(target)
        )
        try:
            stub = events_pb2_grpc.EventServiceStub(channel)
            if request.from_sequence == 0:
                info = stub.GetLogInfo(events_pb2.GetLogInfoRequest(), wait_for_ready=True,
                                       timeout=30)
                request.from_sequence = info.next_sequence
            for batch in stub.Subscribe(request, wait_for_ready=True):
                backoff = 0.2
                for ev in batch.events:
                    request.from_sequence = ev.sequence + 1
                    yield ev
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            md = _trailing(err)
            if code == grpc.StatusCode.OUT_OF_RANGE and "oldest-sequence" in md:
                oldest = int(md["oldest-sequence"])
                if request.from_sequence >= int(md.get("next-sequence", "0")) > 0:
                    # Ahead of the gateway: its journal was reset. Start over from its oldest.
                    log(f"[subscribe] gateway is behind our position ({details}); restarting")
                elif not skip_lost:
                    raise EventsLost(request.from_sequence, oldest) from err
                else:
                    log(f"[subscribe] LOST events {request.from_sequence}..{oldest - 1}: {details}")
                request.from_sequence = oldest
                continue
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "resume-sequence" in md:
                # We were too slow: resume at once, from where the gateway says (== ours).
                request.from_sequence = int(md["resume-sequence"])
                log(f"[subscribe] {details}")
                continue
            if code == grpc.StatusCode.DATA_LOSS:
                raise EventsUnreadable(
                    int(md.get("resume-sequence", request.from_sequence)), details or "",
                    int(md["gap-end"]) if "gap-end" in md else None,
                ) from err
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED):
                raise
            log(f"[subscribe] {code}: {details}; retrying in {backoff:.1f}s")
            time.sleep(backoff)
            backoff = min(max_backoff_s, backoff * 2)
        finally:
            channel.close()


def summarize(ev: Event) -> str:
    """One human line per event: sequence, kind, source, symbol/account, then the payload."""
    kind = ev.WhichOneof("payload") or "?"
    src = common_pb2.SourceKind.Name(ev.source.kind).removeprefix("SOURCE_KIND_").lower()
    if ev.source.session:
        src += f":{ev.source.session}"
    payload = getattr(ev, kind) if kind != "?" else None
    body = (
        json_format.MessageToJson(payload, indent=None, preserving_proto_field_name=True)
        if payload is not None
        else "{}"
    )
    parts = [str(ev.sequence), kind, src, ev.symbol, f"acct={ev.account}" if ev.account else ""]
    parts.append(body)
    if ev.raw_fix:
        parts.append("raw=" + ev.raw_fix.replace(SOH, b"|").decode(errors="replace"))
    return " ".join(x for x in parts if x)


def _kind_values(names: str) -> list[int]:
    out = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        upper = name.upper()
        full = upper if upper.startswith("EVENT_KIND_") else f"EVENT_KIND_{upper}"
        out.append(events_pb2.EventKind.Value(full))
    return out


def _split(values: str | None) -> list[str]:
    return [v for v in (values or "").split(",") if v]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--addr", "--target", dest="addr", default="127.0.0.1:50051",
                   help="the gateway's gRPC event port, HOST:PORT")
    p.add_argument("--kinds", "--kind", default="",
                   help="comma list: order,trade,book_delta,session_status")
    p.add_argument("--symbols", help="comma list")
    p.add_argument("--sessions", help="comma list of session names")
    p.add_argument("--accounts", help="comma list")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-sequence", type=int, default=None, help="first sequence (0 = live)")
    start.add_argument("--from-oldest", action="store_true", help="everything the gateway retains")
    p.add_argument("--include-raw", action="store_true", help="also print the raw FIX message")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--state-file", type=Path, help="remember the position across client restarts")
    p.add_argument("--tls-ca", type=Path, help="CA certificate: connect with TLS")
    p.add_argument("--cert-file", type=Path,
                   help="client certificate (PEM) for a gateway that requires mutual TLS "
                        "([grpc] tls_client_ca_file); with --key-file")
    p.add_argument("--key-file", type=Path, help="the client certificate's private key (PEM)")
    p.add_argument("--strict", action="store_true", help="exit 2 if events were lost")
    p.add_argument("--max-events", type=int, default=0, help="exit after N events (0 = never)")
    args = p.parse_args(argv)

    request = events_pb2.SubscribeRequest(
        kinds=_kind_values(args.kinds),  # type: ignore[arg-type]
        symbols=_split(args.symbols),
        sessions=_split(args.sessions),
        accounts=_split(args.accounts),
        include_raw=args.include_raw,
    )
    if args.from_sequence is not None:
        request.from_sequence = args.from_sequence
    elif args.state_file is not None and args.state_file.exists():
        request.from_sequence = int(args.state_file.read_text().strip() or 0)
    if (args.cert_file is None) != (args.key_file is None):
        p.error("--cert-file and --key-file go together")
    creds = None
    if args.tls_ca is not None or args.cert_file is not None:
        # Without --tls-ca the server is verified against the system's trust store.
        creds = grpc.ssl_channel_credentials(
            root_certificates=args.tls_ca.read_bytes() if args.tls_ca else None,
            private_key=args.key_file.read_bytes() if args.key_file else None,
            certificate_chain=args.cert_file.read_bytes() if args.cert_file else None,
        )
    if args.from_oldest and not request.from_sequence:
        with (
            grpc.secure_channel(args.addr, creds) if creds else grpc.insecure_channel(args.addr)
        ) as ch:
            info = events_pb2_grpc.EventServiceStub(ch).GetLogInfo(
                events_pb2.GetLogInfoRequest(), wait_for_ready=True, timeout=30
            )
        request.from_sequence = info.oldest_sequence

    n = 0
    try:
        for ev in follow(
            args.addr,
            request,
            credentials=creds,
            skip_lost=not args.strict,
        ):
            if args.json:
                print(json.dumps(json_format.MessageToDict(ev, preserving_proto_field_name=True)))
            else:
                print(summarize(ev))
            sys.stdout.flush()
            n += 1
            if args.state_file is not None:
                args.state_file.write_text(f"{request.from_sequence}\n")
            if args.max_events and n >= args.max_events:
                break
    except EventsLost as exc:
        print(f"[subscribe] {exc}", file=sys.stderr)
        return 2
    except EventsUnreadable as exc:
        print(f"[subscribe] DATA_LOSS: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
