"""Local stand-ins for the alert channels, each on a thread of its own.

SmtpRecorder   a small SMTP server (stdlib socketserver): EHLO/HELO, MAIL, RCPT, DATA,
               RSET, NOOP, QUIT; it keeps every message received, parsed
SlackRecorder  an HTTP server (stdlib http.server) answering the Slack Web API's
               chat.postMessage as Slack does ({"ok": true}), or with an error when told,
               and keeping each request's path, Authorization header and body
"""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qsl


@dataclass
class Envelope:
    """One e-mail as the server received it."""

    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        return str(part.get_content()) if part is not None else ""


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: SmtpRecorder

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 localhost ESMTP recorder")
        sender, recipients = "", []
        while line := self.rfile.readline():
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 localhost")
            elif verb == "MAIL":
                sender, recipients = command.split(":", 1)[1].strip().strip("<>"), []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                self.server.keep(Envelope(sender, recipients, self._data()))
                self.reply("250 OK queued")
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")

    def _data(self) -> EmailMessage:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return cast(EmailMessage, message_from_bytes(b"".join(lines), policy=policy.default))


class SmtpRecorder(socketserver.ThreadingTCPServer):
    """An SMTP server on 127.0.0.1 keeping every message; a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.received: list[Envelope] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def keep(self, envelope: Envelope) -> None:
        with self._lock:
            self.received.append(envelope)

    def __enter__(self) -> SmtpRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class SlackPost:
    """One request to the stand-in Slack Web API."""

    path: str
    authorization: str
    body: dict[str, Any]


@dataclass
class _SlackState:
    posts: list[SlackPost] = field(default_factory=list)
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _SlackHandler(BaseHTTPRequestHandler):
    state: _SlackState

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = self.headers.get("Content-Type", "")
        body = json.loads(raw) if "json" in kind else dict(parse_qsl(raw.decode()))
        state = type(self).state
        with state.lock:
            state.posts.append(SlackPost(self.path, self.headers.get("Authorization", ""), body))
            error = state.error
        answer = {"ok": False, "error": error} if error else {"ok": True, "ts": "1.0"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


class SlackRecorder:
    """A stand-in for the Slack Web API on 127.0.0.1; a context manager."""

    def __init__(self) -> None:
        self._state = _SlackState()
        handler = type("Handler", (_SlackHandler,), {"state": self._state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """What ECOSYNC_SLACK_BASE_URL points at (slack_sdk appends the method name)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    @property
    def posts(self) -> list[SlackPost]:
        with self._state.lock:
            return list(self._state.posts)

    def messages(self) -> list[SlackPost]:
        """The chat.postMessage requests received."""
        return [p for p in self.posts if p.path.endswith("/chat.postMessage")]

    def fail_with(self, error: str | None) -> None:
        """Answer every request with ``{"ok": false, "error": error}`` (None: succeed)."""
        with self._state.lock:
            self._state.error = error

    def __enter__(self) -> SlackRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
