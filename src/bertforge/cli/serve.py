"""`bertforge serve`: a model directory over HTTP (FastAPI + uvicorn), with dynamic batching.

Every flag, the model directory and the address are checked before torch or the web framework is
imported: a missing directory or a port in use is one line and exit status 2, in well under a second.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import threading

from bertforge.cli.commands import Command, model_dir
from bertforge.errors import UsageError
from bertforge.options import add_arguments, from_namespace
from bertforge.serve.settings import ServeSettings


def _arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, ServeSettings, required=("model",))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port), or a UsageError naming the flag at fault."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"cannot resolve {host!r}: {e.strerror}", flag="--host") from None
    family, _, proto, _, address = infos[0]
    # The protocol must say TCP: asyncio sets TCP_NODELAY only on connections whose socket does, and without it
    # every answer on a kept-alive connection waits ~40 ms (Nagle's algorithm against the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"{host}:{port} is already in use", flag="--port", hint="stop the server using it, "
                             "or choose another port (--port 0 picks a free one)") from None
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}",
                         flag="--port" if e.errno == errno.EACCES else "--host") from None
    return sock


def lower_this_thread(increment: int) -> int | None:
    """Run the calling thread ``increment`` nice levels lower; its new nice value, or None where it is not done.

    Called from the HTTP event loop's thread once the model thread and its OpenMP team exist (threads inherit
    the nice value of the thread that creates them, so theirs stays). On a CPU whose cores the model's
    threads fill, the loop then takes a core mostly when they leave it, between forward passes, instead of
    preempting one thread of the team mid-pass while its partner spins at the next barrier (benchmarks/serve.py
    measures it: docs/serving.md). Linux only: elsewhere a nice value belongs to the whole process."""
    if increment <= 0 or not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return None
    return nice


def _serve(args: argparse.Namespace) -> None:
    from bertforge.export.layout import find_export

    settings = from_namespace(ServeSettings, args)
    path = (model_dir(settings.model) if settings.backend == "torch"
            else find_export(settings.model, settings.backend, flag="--model"))
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise UsageError(f"serving needs {e.name}, which is not installed",
                         hint="pip install 'bertforge[serve]'") from None
    sock = bind(settings.host, settings.port)
    from bertforge.serve.app import create_app
    from bertforge.serve.batcher import model_thread
    from bertforge.serve.models import ServedModel

    thread = model_thread()  # loads the model and runs every batch: the one thread that runs torch
    model = thread.submit(ServedModel.load, path, backend=settings.backend).result()
    app = create_app(model, settings, thread)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(f"serving {path} (task: {model.task_name}; {', '.join('/' + r for r in model.routes)}) at {url}"
          f"  page: {url}/  API: {url}/docs", flush=True)
    if model.note:
        print(f"bertforge serve: note: {model.note}", flush=True)
    if settings.backend != "torch" or model.device.type == "cpu":
        lower_this_thread(settings.loop_nice)  # this thread runs the event loop (server.run below)
    server = uvicorn.Server(uvicorn.Config(app, log_level=settings.log_level, access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=int(settings.timeout) + 5))
    # uvicorn drains on SIGTERM and then raises it again; let that second one end the command normally.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("bertforge serve: stopped", flush=True)


COMMANDS = (
    Command("serve", "serve a model over HTTP: embed, classify, tag, qa, choice, fill-mask, attention, tokenize; a "
            "page at /",
            _arguments, _serve),
)
