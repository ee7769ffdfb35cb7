"""Tests for searcherd._websocket (through WebSocketTransport) against a real local server.

The server is a TCP listener on 127.0.0.1 port 0 driven by wsproto's server side, so a test can
put bytes on the wire the way it needs: fragments, a frame in the same segment as the upgrade
response, a ping, a close, or an answer that is not HTTP at all.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from searcherd.connection import ConnectionSettings
from searcherd.transport import ConnectFailed, HandshakeRejected, SocketClosed, WebSocketTransport

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


class Peer:
    """The server end of one connection: a wsproto server over the accepted stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)
        self.received: list[Event] = []

    async def handshake(self) -> None:
        """Read the upgrade request and accept it."""
        request = await self.next_event()
        assert isinstance(request, Request)
        await self.send(AcceptConnection())

    async def send(self, *events: Event) -> None:
        """Frame ``events`` and send them in one write."""
        await self.stream.send_all(b"".join(self.ws.send(e) for e in events))

    async def next_event(self) -> Event:
        """The next event from the client (its request, messages, pongs or close)."""
        while True:
            for event in self.ws.events():
                self.received.append(event)
                return event
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)


async def start_peer(
    nursery: trio.Nursery, script: Callable[[Peer], Awaitable[None]]
) -> tuple[str, list[Peer]]:
    """Serve ``script`` for every connection; return the URL and the peers so far."""
    peers: list[Peer] = []

    async def handler(stream: trio.SocketStream) -> None:
        peer = Peer(stream)
        peers.append(peer)
        await script(peer)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    port = listeners[0].socket.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws", peers


async def test_frames_behind_the_upgrade_response_are_delivered(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame that shares a segment with the 101 response is read, not left in a buffer."""

    async def script(peer: Peer) -> None:
        request = await peer.next_event()
        assert isinstance(request, Request)
        accept = peer.ws.send(AcceptConnection())
        await peer.stream.send_all(accept + peer.ws.send(TextMessage("first")))
        await trio.sleep_forever()

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)) as sock:
        with trio.fail_after(5):
            assert await sock.get_message() == "first"


async def test_fragments_are_joined_and_types_kept(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A message in three frames arrives whole; binary messages arrive as bytes."""

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(
            TextMessage("ab", message_finished=False),
            TextMessage("cd", message_finished=False),
            TextMessage("ef"),
            BytesMessage(b"\x00\x01"),
        )
        await trio.sleep_forever()

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)) as sock:
        with trio.fail_after(5):
            assert await sock.get_message() == "abcdef"
            assert await sock.get_message() == b"\x00\x01"


async def test_fragmented_message_over_the_limit_closes_1009(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The size limit counts a message's frames together: 3 x 400 bytes over 1000 is closed."""
    closes: list[CloseConnection] = []

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(*(TextMessage("x" * 400, message_finished=i == 2) for i in range(3)))
        while True:
            event = await peer.next_event()
            if isinstance(event, CloseConnection):
                closes.append(event)
                await peer.send(event.response())
                return

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(
        url, [], ConnectionSettings(url, max_message_size=1000)
    ) as sock:
        with trio.fail_after(5), pytest.raises(SocketClosed) as closed:
            await sock.get_message()
    assert closed.value.code == 1009
    assert [c.code for c in closes] == [1009]


async def test_server_ping_is_answered_while_reading(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A ping from the server gets a pong with its payload while the client reads."""
    pongs: list[bytes] = []

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(Ping(b"are you there"))
        event = await peer.next_event()
        assert isinstance(event, Pong)
        pongs.append(bytes(event.payload))
        await peer.send(TextMessage("after the pong"))
        await trio.sleep_forever()

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)) as sock:
        with trio.fail_after(5):
            assert await sock.get_message() == "after the pong"
    assert pongs == [b"are you there"]


async def test_ping_returns_on_pong_and_raises_when_the_link_drops(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ping() returns once the reader sees a pong; a ping left waiting raises on a TCP drop."""
    answer = trio.Event()

    async def script(peer: Peer) -> None:
        await peer.handshake()
        ping = await peer.next_event()
        assert isinstance(ping, Ping)
        await peer.send(ping.response())
        assert isinstance(await peer.next_event(), Ping)
        await answer.wait()
        await peer.stream.aclose()  # the second ping is never answered: the link drops

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)) as sock:

        async def read() -> None:
            with pytest.raises(SocketClosed) as dropped:
                await sock.get_message()
            assert dropped.value.code == 1006

        async with trio.open_nursery() as inner:
            inner.start_soon(read)
            with trio.fail_after(5):
                await sock.ping()
                answer.set()
                with pytest.raises(SocketClosed):
                    await sock.ping()


async def test_concurrent_senders_each_frame_arrives_whole(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Twenty tasks sending large messages at once: no busy stream, no torn frame."""
    got: list[str] = []
    all_in = trio.Event()

    async def script(peer: Peer) -> None:
        await peer.handshake()
        parts: list[str] = []  # a large frame comes in chunks
        while len(got) < 20:
            event = await peer.next_event()
            assert isinstance(event, TextMessage)
            parts.append(event.data)
            if event.message_finished:
                got.append("".join(parts))
                parts.clear()
        all_in.set()
        await trio.sleep_forever()

    url, _ = await start_peer(nursery, script)
    messages = [str(i) * 200_000 for i in range(10)] + [f"small {i}" for i in range(10)]
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)) as sock:
        async with trio.open_nursery() as senders:
            for message in messages:
                senders.start_soon(sock.send_message, message)
        with trio.fail_after(5):
            await all_in.wait()
    assert sorted(got) == sorted(messages)


async def test_peer_close_delivers_earlier_messages_then_its_code(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Messages before the server's Close are read first; then SocketClosed with its code."""
    echoed: list[CloseConnection] = []

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(TextMessage("one"), TextMessage("two"), CloseConnection(4001, "bye"))
        reply = await peer.next_event()
        assert isinstance(reply, CloseConnection)
        echoed.append(reply)

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)) as sock:
        with trio.fail_after(5):
            assert await sock.get_message() == "one"
            assert await sock.get_message() == "two"
            with pytest.raises(SocketClosed) as closed:
                await sock.get_message()
            assert (closed.value.code, closed.value.reason) == (4001, "bye")
            with pytest.raises(SocketClosed):
                await sock.send_message("too late")
    assert [(c.code, c.reason) for c in echoed] == [(4001, "bye")]


@pytest.mark.parametrize(("reply_after", "waited"), [(1.0, 1.0), (30.0, 2.0)])
async def test_leaving_the_block_closes_1000_and_waits_for_the_reply(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    reply_after: float,
    waited: float,
) -> None:
    """On exit the client sends Close 1000, reads past a message that crossed it, and waits
    for the server's Close, at most ``disconnect_timeout`` (2 s); then it closes the stream."""
    closes: list[CloseConnection] = []
    ended = trio.Event()

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(TextMessage("never read"))
        close = await peer.next_event()
        assert isinstance(close, CloseConnection)
        closes.append(close)
        await trio.sleep(reply_after)
        with contextlib.suppress(trio.BrokenResourceError):
            await peer.send(close.response())
            assert await peer.stream.receive_some(65536) == b""
        ended.set()

    url, _ = await start_peer(nursery, script)
    async with WebSocketTransport().open(url, [], ConnectionSettings(url)):
        opened_at = trio.current_time()
    assert trio.current_time() - opened_at == pytest.approx(waited)
    with trio.fail_after(60):
        await ended.wait()
    assert [c.code for c in closes] == [1000]


async def test_rejection_keeps_status_body_and_retry_after(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """An HTTP answer to the upgrade is HandshakeRejected with its status, body and Retry-After."""

    async def script(peer: Peer) -> None:
        request = await peer.next_event()
        assert isinstance(request, Request)
        reject = RejectConnection(
            status_code=429,
            headers=[(b"retry-after", b"7"), (b"content-length", b"12")],
            has_body=True,
        )
        await peer.send(reject, RejectData(b"slow down!\r\n"))

    url, _ = await start_peer(nursery, script)
    with trio.fail_after(5), pytest.raises(HandshakeRejected) as rejected:
        async with WebSocketTransport().open(url, [], ConnectionSettings(url)):
            pass
    assert (rejected.value.status, rejected.value.body) == (429, "slow down!")
    assert rejected.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not a WebSocket handshake response"),
        (b"", "connection closed during the WebSocket handshake"),
    ],
)
async def test_not_a_websocket_server_is_connect_failed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, answer: bytes, message: str
) -> None:
    """Garbage or a closed stream instead of an upgrade response is ConnectFailed, at once."""

    async def script(peer: Peer) -> None:
        await peer.stream.receive_some(65536)
        await peer.stream.send_all(answer)
        await peer.stream.aclose()

    url, _ = await start_peer(nursery, script)
    with trio.fail_after(5), pytest.raises(ConnectFailed, match=message):
        async with WebSocketTransport().open(url, [], ConnectionSettings(url)):
            pass


async def test_upgrade_request_carries_host_resource_and_headers(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The upgrade goes to the URL's path and query with the given headers."""
    requests: list[Request] = []

    async def script(peer: Peer) -> None:
        request = await peer.next_event()
        assert isinstance(request, Request)
        requests.append(request)
        await peer.stream.send_all(peer.ws.send(AcceptConnection()))
        await trio.sleep_forever()

    url, _ = await start_peer(nursery, script)
    full = url + "?chain=solana"
    async with WebSocketTransport().open(
        full, [("Authorization", "Bearer t0ken")], ConnectionSettings(full)
    ):
        pass
    (request,) = requests
    assert request.target == "/ws?chain=solana"
    assert request.host == url.removeprefix("ws://").removesuffix("/ws")
    assert (b"authorization", b"Bearer t0ken") in [(k.lower(), v) for k, v in request.extra_headers]
