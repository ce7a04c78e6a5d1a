"""`cellbridge serve`: the py4j server QuPath's extension starts (docs/protocol.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import stat
import threading
import time
from pathlib import Path

from cellbridge.errors import CellBridgeError

log = logging.getLogger("cellbridge.server")
TOKEN_ENV = "CELLBRIDGE_TOKEN"
MIN_TOKEN_LENGTH = 16


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "serve", help="run the py4j server for the QuPath extension",
        description="Listen on 127.0.0.1 for the QuPath extension (py4j with an auth token). Prints one JSON line "
                    "when ready: port, pid, version. Exits when its parent process dies, after --idle-timeout "
                    "seconds without calls, or on shutdown().")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: any free port)")
    parser.add_argument("--token-file", help="write the auth token here (mode 0600; a missing folder is made, "
                        "mode 0700): a new file or an empty one of this user, never a symbolic link; removed when "
                        "the server exits")
    parser.add_argument("--device", default="auto", help="default device: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many idle seconds "
                        "(0: never)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process ends (default: the parent)")
    parser.set_defaults(func=run)


def write_token_file(path: Path, token: str) -> tuple[int, int]:
    """Write the token into `path` with mode 0600: a new file, or an empty regular file of this user (as the
    launcher creates it), in a folder made private (0700) when it does not exist yet (`~/.cellbridge/token`).
    Never follows a symlink and never overwrites a file holding anything; returns the file's (device, inode) so
    that it can be removed on exit."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        reason = "is a symbolic link" if path.is_symlink() else error.strerror
        raise CellBridgeError(f"--token-file {path}: {reason}; refused") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != 0 or info.st_nlink != 1 or \
                (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            raise CellBridgeError(f"--token-file {path}: not a new or empty file of this user (it has content, "
                                  "other names or another owner); refused to overwrite it")
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, token.encode("ascii"))
        return info.st_dev, info.st_ino
    finally:
        os.close(fd)


def remove_token_file(path: Path, identity: tuple[int, int]) -> None:
    """Remove the token file written by `write_token_file`, if it is still that file."""
    try:
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == identity and stat.S_ISREG(info.st_mode):
            path.unlink()
    except OSError:
        pass


def server_token() -> str:
    """`CELLBRIDGE_TOKEN` when set (at least MIN_TOKEN_LENGTH characters), else a new random token."""
    given = os.environ.get(TOKEN_ENV)
    if given is None:
        return secrets.token_urlsafe(32)
    if len(given) < MIN_TOKEN_LENGTH or not given.isascii() or not given.isprintable() or given.strip() != given:
        raise CellBridgeError(f"{TOKEN_ENV} must be at least {MIN_TOKEN_LENGTH} printable ASCII characters")
    return given


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(args: argparse.Namespace) -> int:
    """Start the server and block until it should stop."""
    from cellbridge.device import resolve_device

    resolve_device(args.device)  # an absent device fails now, not at the first job
    if logging.getLogger().level > logging.INFO:  # the server logs its life to stderr for the launcher
        logging.getLogger("cellbridge").setLevel(logging.INFO)
    token = server_token()
    token_file = Path(args.token_file) if args.token_file else None
    identity = write_token_file(token_file, token) if token_file else None
    if threading.current_thread() is threading.main_thread():  # SIGTERM ends the server through `finally`
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return _serve(args, token)
    finally:
        if token_file is not None and identity is not None:
            remove_token_file(token_file, identity)


def _serve(args: argparse.Namespace, token: str) -> int:
    from py4j.clientserver import JavaParameters, PythonParameters

    from cellbridge import __version__
    from cellbridge.server.requests import PROTOCOL_VERSION
    from cellbridge.server.service import CellBridgeService
    from cellbridge.server.transport import GuardedClientServer, entry_point

    stop = threading.Event()
    service = CellBridgeService(args.device, on_shutdown=stop.set)
    server = GuardedClientServer(
        java_parameters=JavaParameters(auth_token=token, auto_convert=True),
        python_parameters=PythonParameters(address="127.0.0.1", port=args.port, auth_token=token,
                                           daemonize=True, daemonize_connections=True),
        python_server_entry_point=entry_point(service))
    port = server.get_callback_server().get_listening_port()
    ready = {"event": "ready", "port": port, "pid": os.getpid(), "version": __version__,
             "protocol": PROTOCOL_VERSION, "token_file": args.token_file}
    if not args.token_file and TOKEN_ENV not in os.environ:
        ready["token"] = token
    print(json.dumps(ready), flush=True)
    service.touch()  # the idle clock starts when the launcher can first call
    parent = args.parent_pid or os.getppid()
    log.info("cellbridge server %s listening on 127.0.0.1:%d (parent pid %d)", __version__, port, parent)
    try:
        while not stop.wait(1.0):
            if not _alive(parent):
                log.info("parent process %d ended: stopping", parent)
                break
            idle = time.monotonic() - service.last_call
            if args.idle_timeout > 0 and idle > args.idle_timeout and not service.busy:
                log.info("idle for %.0f s: stopping", idle)
                break
    finally:
        server.stop()  # also with clients still connected
    return 0
