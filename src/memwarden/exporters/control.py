"""The local control socket: ``memwarden top PID`` and ``memwarden status PID`` without ptrace or a web server.

::

    import memwarden
    from memwarden.exporters.control import serve_control
    memwarden.start(interval=10)
    serve_control()                 # $XDG_RUNTIME_DIR/memwarden/<pid>.sock (or /tmp/memwarden-<uid>/)

The socket is a Unix stream socket in a directory only its owner may enter (0700), with mode
0600; every connection's peer credentials (``SO_PEERCRED``) are checked, and a process of another
user (root included) is answered with one refusal line and closed. The protocol is one JSON line
each way: ``{"get": "readings" | "verdict" | "timeline" | "census", "last": N}``. It answers from
the same views as the HTTP endpoint, with the same bounds (a census at most once per
``costly_min_interval_s``). A forked worker (gunicorn) serves its own socket under its own pid.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import stat
import struct
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import MemwardenError, UsageError
from ._readings import MonitorReadings
from .endpoint import Response, Views, _CostlyGate

if TYPE_CHECKING:
    from .._monitor import Monitor

__all__ = ["ControlError", "ControlSocket", "control_dir", "control_path", "query", "serve_control"]

MAX_REQUEST = 4096


class ControlError(MemwardenError, OSError):
    """The control socket of a process could not be reached or answered badly."""


def control_dir() -> Path:
    """Where control sockets live: ``$XDG_RUNTIME_DIR/memwarden``, else ``/tmp/memwarden-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "memwarden"
    return Path("/tmp") / f"memwarden-{os.getuid()}"


def control_path(pid: int | None = None) -> Path:
    """The socket path of process ``pid`` (default: this one)."""
    return control_dir() / f"{os.getpid() if pid is None else int(pid)}.sock"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UsageError(
            f"{path} must be a directory of this user with mode 0700 (it is {oct(st.st_mode & 0o777)})"
        )


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


_serving: weakref.WeakSet[ControlSocket] = weakref.WeakSet()
_fork_hook = threading.Lock()
_fork_hooked: list[bool] = []


class ControlSocket:
    """Serves a monitor's views on a Unix socket in a daemon thread. ``close()`` removes the socket."""

    def __init__(
        self,
        monitor: Monitor | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        costly_min_interval_s: float = 30.0,
        readings: MonitorReadings | None = None,
        allowed_uids: tuple[int, ...] | None = None,
    ) -> None:
        self._explicit_path = Path(path) if path is not None else None
        self.views = Views(readings or MonitorReadings(monitor, gc_histogram=False))
        self.gate = _CostlyGate(costly_min_interval_s, time.monotonic)
        self.allowed_uids = allowed_uids if allowed_uids is not None else (os.getuid(),)
        self.refused = 0
        """Connections refused because their peer was another user."""
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.path = self._explicit_path or control_path()

    def start(self) -> ControlSocket:
        if self._sock is not None:
            return self
        self.path = self._explicit_path or control_path()
        _private_dir(self.path.parent)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # a stale socket of a dead process with our pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._serve, name="memwarden-control", daemon=True)
        self._thread.start()
        _serving.add(self)
        _hook_fork()
        return self

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def __enter__(self) -> ControlSocket:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ValueError):
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        uid = _peer_uid(conn)
        if uid is None or uid not in self.allowed_uids:
            self.refused += 1
            conn.sendall(b'{"status":403,"error":"this control socket answers its own user only"}\n')
            return
        data = b""
        while b"\n" not in data and len(data) < MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
        response = self.respond(data.split(b"\n", 1)[0])
        conn.sendall(json.dumps({"status": response.status, **response.body}, default=str).encode() + b"\n")

    def respond(self, line: bytes) -> Response:
        try:
            request = json.loads(line or b"{}")
            what = str(request.get("get", "readings"))
        except (ValueError, AttributeError):
            return Response(400, {"error": 'send one JSON object per line, like {"get": "readings"}'})
        if what == "readings":
            return Response(200, self.views.readings_json())
        if what == "verdict":
            return Response(200, self.views.verdict_json())
        if what == "timeline":
            return Response(200, self.views.timeline_json(int(request.get("last", 100))))
        if what == "census":
            busy = self.gate.enter("census")
            if busy is not None:
                return busy
            try:
                return Response(200, self.views.census_json())
            finally:
                self.gate.leave()
        return Response(
            404,
            {"error": f"unknown request {what!r}", "requests": ["readings", "verdict", "timeline", "census"]},
        )

    def _after_fork_in_child(self) -> None:
        old = self._sock
        self._sock, self._thread = None, None
        if old is not None:
            with contextlib.suppress(OSError):
                old.close()  # our copy of the parent's socket; its path stays (never unlinked here)
            if self._explicit_path is None:
                with contextlib.suppress(Exception):
                    self.start()


def _at_exit() -> None:
    for cs in list(_serving):
        if cs._sock is not None and getattr(cs, "_pid", None) == os.getpid():
            cs.close()


def _in_child() -> None:
    for cs in list(_serving):
        cs._after_fork_in_child()


def _hook_fork() -> None:
    with _fork_hook:
        if not _fork_hooked:
            _fork_hooked.append(True)
            os.register_at_fork(after_in_child=_in_child)
            atexit.register(
                _at_exit
            )  # a normal exit removes the socket; after a kill the next start replaces it


def serve_control(monitor: Monitor | None = None, **options: Any) -> ControlSocket:
    """Start serving ``monitor`` (default: :func:`memwarden.start`'s) on this process's control socket."""
    return ControlSocket(monitor, **options).start()


def query(
    target: int | str | os.PathLike[str], what: str = "readings", *, timeout: float = 5.0, **params: Any
) -> dict[str, Any]:
    """Ask the control socket of process ``target`` (a pid, or a socket path) for one view."""
    path = control_path(target) if isinstance(target, int) else Path(target)
    if not path.exists():
        raise ControlError(
            f"no control socket at {path} (did the process call memwarden.exporters.control.serve_control()?)"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # a refusal can come (and the server close) before the request is read: read it anyway
                sock.sendall(json.dumps({"get": what, **params}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
    try:
        answer: dict[str, Any] = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: not a memwarden control socket (bad answer)") from None
    if answer.get("status") != 200:
        raise ControlError(f"{path}: {answer.get('error', 'refused')}")
    return answer
