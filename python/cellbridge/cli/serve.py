"""`cellbridge serve`: the py4j server QuPath's extension starts (docs/protocol.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path

log = logging.getLogger("cellbridge.server")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the command's parser."""
    parser = subparsers.add_parser(
        "serve", help="run the py4j server for the QuPath extension",
        description="Listen on 127.0.0.1 for the QuPath extension (py4j with an auth token). Prints one JSON line "
                    "when ready: port, pid, version. Exits when its parent process dies, after --idle-timeout "
                    "seconds without calls, or on shutdown().")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default 0: any free port)")
    parser.add_argument("--token-file", help="write the random auth token here (mode 0600)")
    parser.add_argument("--device", default="auto", help="default device: auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="exit after this many idle seconds "
                        "(0: never)")
    parser.add_argument("--parent-pid", type=int, help="exit when this process ends (default: the parent)")
    parser.set_defaults(func=run)


def _write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    os.chmod(path, 0o600)


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
    from py4j.clientserver import JavaParameters, PythonParameters

    from cellbridge import __version__
    from cellbridge.engines.device import resolve_device
    from cellbridge.server.requests import PROTOCOL_VERSION
    from cellbridge.server.service import CellBridgeService
    from cellbridge.server.transport import GuardedClientServer, entry_point

    resolve_device(args.device)  # an absent device fails now, not at the first job
    if logging.getLogger().level > logging.INFO:  # the server logs its life to stderr for the launcher
        logging.getLogger("cellbridge").setLevel(logging.INFO)
    token = secrets.token_urlsafe(32)
    if args.token_file:
        _write_token(Path(args.token_file), token)
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
    if not args.token_file:
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
