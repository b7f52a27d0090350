"""A loopback TCP relay in front of a real PostgreSQL server that can lose one COMMIT's
acknowledgement: the server has committed, the client never hears so (its connection drops)."""

from __future__ import annotations

import contextlib
import socket
import threading

# The server's CommandComplete message for a COMMIT: 'C', length 11, "COMMIT\0".
COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"


class CuttingRelay:
    def __init__(self, server_port: int) -> None:
        self._server_port = server_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.cut_next_commit = threading.Event()  # set: the next COMMIT's answer is not passed on
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

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
                if answers and COMMIT_DONE in data and self.cut_next_commit.is_set():
                    self.cut_next_commit.clear()
                    self.cuts += 1
                    break  # committed on the server; the client's connection just drops
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._listener.close()
