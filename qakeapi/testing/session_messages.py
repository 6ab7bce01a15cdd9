"""The typed ways a test session sends and receives: text, bytes and JSON (the client's side)."""

from __future__ import annotations

from typing import Any

from qakeapi.core.codec import decode_json, encode_json
from qakeapi.types import Message

__all__ = ["SessionMessages"]


class SessionMessages:
    """Text, bytes and JSON over a test session (mixed into :class:`~qakeapi.testing.WebSocketTestSession`)."""

    async def receive(self, timeout: float | None = None) -> Message:
        """Receive the next raw ASGI message the application sent (the session implements it)."""
        raise NotImplementedError

    def _put(self, message: Message) -> None:
        """Hand ``message`` to the application (the session implements it)."""
        raise NotImplementedError

    async def receive_text(self, timeout: float | None = None) -> str:
        """Receive a text message (see :meth:`receive`); :class:`TypeError` if the application sent bytes."""
        text = (await self.receive(timeout)).get("text")
        if text is None:
            raise TypeError("expected a text message, got a binary one")
        return str(text)

    async def receive_bytes(self, timeout: float | None = None) -> bytes:
        """Receive a binary message (see :meth:`receive`); :class:`TypeError` if the application sent text."""
        data = (await self.receive(timeout)).get("bytes")
        if data is None:
            raise TypeError("expected a binary message, got a text one")
        return bytes(data)

    async def receive_json(self, timeout: float | None = None) -> Any:
        """Receive a message and decode it as JSON (see :meth:`receive`).

        Raises:
            ValueError: The message is not JSON.
        """
        message = await self.receive(timeout)
        text = message.get("text")
        return decode_json(text if text is not None else message.get("bytes") or b"")

    async def send_text(self, data: str) -> None:
        """Send a text message to the application.

        Raises:
            WebSocketClosedError: The session is closed.
            Exception: The application raised it (see the session's description).
        """
        self._put({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary message to the application (raises as :meth:`send_text` does)."""
        self._put({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """Send ``data`` as JSON, in a text (default) or binary message.

        Raises:
            WebSocketClosedError: The session is closed.
            ValueError: ``mode`` is neither ``"text"`` nor ``"binary"``.
            Exception: The application raised it (see the session's description).
        """
        if mode not in ("text", "binary"):
            raise ValueError(f"mode must be 'text' or 'binary', not {mode!r}")
        text = encode_json(data)
        if mode == "binary":
            await self.send_bytes(text.encode())
        else:
            await self.send_text(text)
