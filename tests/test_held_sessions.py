"""slipway's held WebSocket sessions against real WebSocket servers (the websockets
library's, on loopback): a server that answers keeps every session; one that ends
sessions with 1011, one that drops the TCP connection and one that refuses the
handshake are counted, named, and reopened; a normal close by the server is no drop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from websockets.sync.server import ServerConnection, serve

from slipway.config.model import WebSocketCheck
from slipway.health.sessions import HeldSessions


def answering(ws: ServerConnection) -> None:
    for message in ws:
        ws.send('{"type": "pong"}' if "ping" in str(message) else "?")


def ending(code: int) -> Callable[[ServerConnection], None]:
    def handler(ws: ServerConnection) -> None:
        ws.recv()
        ws.send('{"type": "pong"}')
        time.sleep(0.3)
        ws.close(code=code)

    return handler


def vanishing(ws: ServerConnection) -> None:
    ws.recv()
    ws.socket.close()  # no close frame: as a killed process


@contextmanager
def server(handler: Callable[[ServerConnection], None]) -> Iterator[str]:
    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{srv.socket.getsockname()[1]}/ws"
        srv.shutdown()


def hold(urls: dict[str, str], seconds: float = 1.6) -> HeldSessions:
    held = HeldSessions(WebSocketCheck(), urls, per_side=2, timeout=2.0)
    with held:
        time.sleep(seconds)
    held.join()
    return held


def test_sessions_on_an_answering_server_are_all_kept() -> None:
    with server(answering) as url:
        figures = hold({"stable": url})
    assert figures.figures()["stable"].sessions == 2
    assert figures.figures()["stable"].dropped == 0


def test_sessions_ended_abnormally_are_counted_named_and_reopened() -> None:
    with server(answering) as good, server(ending(1011)) as bad:
        figures = hold({"stable": good, "canary": bad}).figures()
    assert figures["stable"].dropped == 0 and figures["stable"].sessions == 2
    canary = figures["canary"]
    assert canary.dropped >= 2 and canary.sessions > 2  # reopened after each end
    assert canary.last == "closed 1011" and canary.drop_rate >= 0.5


def test_a_connection_dropped_without_a_close_frame_is_1006() -> None:
    with server(vanishing) as url:
        figures = hold({"canary": url}, seconds=1.0).figures()["canary"]
    assert figures.dropped >= 2 and figures.last == "closed 1006"


def test_a_normal_close_by_the_server_is_no_drop() -> None:
    with server(ending(1001)) as url:
        figures = hold({"canary": url}).figures()["canary"]
    assert figures.sessions > 2 and figures.dropped == 0


def test_a_refused_handshake_and_a_closed_port_are_drops() -> None:
    def refusing(ws: ServerConnection) -> None:
        raise AssertionError("never reached")

    with serve(refusing, "127.0.0.1", 0, process_request=lambda c, r: c.respond(403, "no")) as s:
        threading.Thread(target=s.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{s.socket.getsockname()[1]}/ws"
        refused = hold({"canary": url}, seconds=0.6).figures()["canary"]
        s.shutdown()
    assert refused.dropped >= 2 and refused.dropped == refused.sessions
    assert refused.last is not None and "403" in refused.last
    closed = hold({"canary": url}, seconds=0.6).figures()["canary"]
    assert closed.dropped >= 2 and closed.last is not None
    assert "ConnectionRefused" in closed.last
