"""A peer that accepts TCP connections and never says a word: an SMTP server that never
sends its 220 greeting keeps a delivery attempt running (until a timeout or a cancel)."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    """Accepts connections and never says a word (no 220 greeting)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.accepted:
            connection.close()
