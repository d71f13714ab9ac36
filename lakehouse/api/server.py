"""Run the plan API with uvicorn on api.host (127.0.0.1; 0.0.0.0 only in a container): as the
server (`lakehouse api serve`), or in a thread of the calling process (`running`: the tests
and the benchmark)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from lakehouse.config import Config

# A stop lets the requests in flight finish for this long.
GRACEFUL_STOP_S = 20


def _server(config: Config, port: int):  # type: ignore[no-untyped-def]
    import uvicorn

    from lakehouse.api.app import create_app
    from lakehouse.api.context import ApiContext

    context = ApiContext.open(config)
    settings = uvicorn.Config(
        create_app(context),
        host=config.api.host,
        port=port,
        # one process: the context's store pool is per process, and 2 cores need no more
        workers=1,
        log_level="info",
        timeout_graceful_shutdown=GRACEFUL_STOP_S,
    )
    return uvicorn.Server(settings), context


def serve(config: Config) -> None:
    """Serve until SIGINT / SIGTERM (uvicorn finishes the requests in flight, then returns)."""
    server, context = _server(config, config.api.port)
    try:
        server.run()
    finally:
        context.close()


@contextlib.contextmanager
def running(config: Config, port: int, timeout_s: float = 30.0) -> Iterator[str]:
    """The API served from a thread of this process while the block runs; yields its URL."""
    server, context = _server(config, port)
    thread = threading.Thread(target=server.run, name="plan-api", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the plan API did not start on {config.api.host}:{port}")
            time.sleep(0.02)
        yield f"http://{config.api.host}:{port}"
    finally:
        server.should_exit = True
        thread.join(GRACEFUL_STOP_S + 5)
        context.close()
