"""A worker host of its own: a network namespace joined to this machine by a veth pair.

Processes started under :meth:`IsolatedHost.wrap` see only the namespace's loopback and its end of
the veth link; they reach Postgres, Redis and S3 through :class:`TcpForwarder`s listening on this
machine's end. :meth:`IsolatedHost.cut` takes the link down: packets vanish, connections hang
rather than reset, as when a host drops off the network. Needs root and iproute2.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@dataclass
class IsolatedHost:
    name: str
    host_link: str
    ns_link: str
    host_ip: str
    ns_ip: str

    def wrap(self) -> list[str]:
        """The argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        _ip("link", "set", self.host_link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_link, "up")


@contextlib.contextmanager
def isolated_host() -> Iterator[IsolatedHost]:
    tag = uuid.uuid4().hex[:6]
    subnet = random.Random().randrange(0, 64 * 256)  # a /30 in 10.213.0.0/16
    base = f"10.213.{subnet // 64}.{(subnet % 64) * 4}"
    prefix = base.rsplit(".", 1)[0]
    last = int(base.rsplit(".", 1)[1])
    host = IsolatedHost(f"scr-{tag}", f"vh{tag}", f"vn{tag}", f"{prefix}.{last + 1}", f"{prefix}.{last + 2}")
    _ip("netns", "add", host.name)
    try:
        _ip("link", "add", host.host_link, "type", "veth", "peer", "name", host.ns_link)
        _ip("link", "set", host.ns_link, "netns", host.name)
        _ip("addr", "add", f"{host.host_ip}/30", "dev", host.host_link)
        _ip("link", "set", host.host_link, "up")
        for command in (
            ["addr", "add", f"{host.ns_ip}/30", "dev", host.ns_link],
            ["link", "set", host.ns_link, "up"],
            ["link", "set", "lo", "up"],
        ):
            _ip("netns", "exec", host.name, "ip", *command)
        yield host
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", host.host_link)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", host.name)


class TcpForwarder:
    """Listens on ``listen_host`` and relays every connection to ``127.0.0.1:target_port``."""

    def __init__(self, listen_host: str, target_port: int) -> None:
        self._listen_host = listen_host
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> TcpForwarder:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, self._listen_host, 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
