"""Loopback TCP relays in front of a real server: one that can lose a COMMIT's acknowledgement
(PostgreSQL has committed, the client never hears so), one that is a slow link."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

# The server's CommandComplete message for a COMMIT: 'C', length 11, "COMMIT\0".
COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"


class Relay:
    """Passes every connection on to `server_port`; `passing(data, answers)` is told of each
    chunk (`answers`: from the server) and returns False to drop the connection instead."""

    def __init__(self, server_port: int) -> None:
        self._server_port = server_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def passing(self, data: bytes, answers: bool) -> bool:
        return True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(("127.0.0.1", self._server_port))
            for source, sink, answers in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if not self.passing(data, answers):
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._listener.close()


class CuttingRelay(Relay):
    def __init__(self, server_port: int) -> None:
        super().__init__(server_port)
        self.cut_next_commit = threading.Event()  # set: the next COMMIT's answer is not passed on
        self.cuts = 0

    def passing(self, data: bytes, answers: bool) -> bool:
        if answers and COMMIT_DONE in data and self.cut_next_commit.is_set():
            self.cut_next_commit.clear()
            self.cuts += 1
            return False  # committed on the server; the client's connection just drops
        return True


class SlowLink(Relay):
    """What a sender sends reaches the server at `bytes_per_s`, as over a slow link."""

    def __init__(self, server_port: int, bytes_per_s: float) -> None:
        self._rate = bytes_per_s
        super().__init__(server_port)

    def passing(self, data: bytes, answers: bool) -> bool:
        if not answers:
            time.sleep(len(data) / self._rate)
        return True
