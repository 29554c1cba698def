"""The stub client's 0x20 (what ``resolver query +trace`` asks authorities with): the name goes
out in a random case, and a reply must echo it, else the exchange ends with CaseMismatch as
the daemon's transport ends it. Against a blocking echo server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from support import free_port

from resolver.errors import CaseMismatch
from resolver.query import QueryOptions, Question
from resolver.stub import exchange
from resolver.wire import read_question

Rewrite = Callable[[bytes], bytes]
QUESTION = Question("www.example.com.", 1)
OPTIONS = QueryOptions(timeout=2.0, tries=1, recurse=False, ignore_tc=True)


def same(name: bytes) -> bytes:
    return name


def lowercase(name: bytes) -> bytes:
    return name.lower()


def swapcase(name: bytes) -> bytes:
    return name.swapcase()  # length bytes (at most 63) are no letters


def reply_to(query: bytes, rewrite: Rewrite) -> bytes:
    """An empty NOERROR reply to ``query``, its question's name passed through ``rewrite``."""
    question = read_question(query)
    header = struct.pack("!6H", struct.unpack("!H", query[:2])[0], 0x8400, 1, 0, 0, 0)
    return header + rewrite(question.name) + query[question.end - 4 : question.end]


class EchoServer:
    """Answers every query over UDP and TCP on one port; keeps the queries' names as sent."""

    def __init__(self, rewrite: Rewrite) -> None:
        self.rewrite = rewrite
        self.names: list[bytes] = []
        # A port below the ephemeral range (free_port): with port 0, the kernel could have
        # given the UDP socket a port some other socket already holds for TCP.
        self.address: tuple[str, int] = ("127.0.0.1", free_port())
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.udp.bind(self.address)
            self.tcp.bind(self.address)
        except OSError:
            self.udp.close()
            self.tcp.close()
            raise
        self.tcp.listen()
        self.threads = [
            threading.Thread(target=self._serve_udp, daemon=True),
            threading.Thread(target=self._serve_tcp, daemon=True),
        ]

    def _answer(self, query: bytes) -> bytes:
        self.names.append(read_question(query).name)
        return reply_to(query, self.rewrite)

    def _serve_udp(self) -> None:
        while True:
            try:
                query, source = self.udp.recvfrom(65535)
            except OSError:
                return  # closed
            if not query:
                return  # shut down
            self.udp.sendto(self._answer(query), source)

    def _serve_tcp(self) -> None:
        while True:
            try:
                connection, _ = self.tcp.accept()
            except OSError:
                return  # closed
            with connection:
                size = struct.unpack("!H", connection.recv(2))[0]
                query = connection.recv(size)
                reply = self._answer(query)
                connection.sendall(struct.pack("!H", len(reply)) + reply)

    def close(self) -> None:
        # shutdown wakes the thread blocked in accept(); close alone may not.
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[[Rewrite], EchoServer]]:
    servers: list[EchoServer] = []

    def start(rewrite: Rewrite) -> EchoServer:
        server = EchoServer(rewrite)
        for thread in server.threads:
            thread.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def ignore(line: str) -> None:
    raise AssertionError(f"no stray expected: {line}")


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_0x20_name_goes_out_in_random_case_and_its_echo_is_accepted(
    serve: Callable[[Rewrite], EchoServer], tcp: bool
) -> None:
    server = serve(same)
    options = QueryOptions(timeout=2.0, tries=1, tcp=tcp)
    for _ in range(4):
        done = exchange(server.address, QUESTION, options, ignore, randomize_case=True)
        assert read_question(done.data).name == server.names[-1]
    assert {name.lower() for name in server.names} == {QUESTION.wire_name}
    # 13 letters: four draws all in lower case happen once in 2**52.
    assert any(name != QUESTION.wire_name for name in server.names)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_a_reply_that_differs_in_case_only_ends_with_case_mismatch(
    serve: Callable[[Rewrite], EchoServer], tcp: bool
) -> None:
    server = serve(swapcase)
    options = QueryOptions(timeout=2.0, tries=1, tcp=tcp)
    with pytest.raises(CaseMismatch, match="differs in case only"):
        exchange(server.address, QUESTION, options, ignore, randomize_case=True)


def test_without_0x20_the_case_of_the_reply_is_not_compared(
    serve: Callable[[Rewrite], EchoServer],
) -> None:
    server = serve(lowercase)
    upper = Question("WWW.EXAMPLE.COM.", 1)
    done = exchange(server.address, upper, OPTIONS, ignore)
    assert read_question(done.data).name == QUESTION.wire_name
    assert server.names == [upper.wire_name]
