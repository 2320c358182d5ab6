"""`python -m server` / `emoney-server`: run one gRPC server process until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from server.bootstrap import build_application
from server.config import ConfigurationError, load_settings
from server.logs import configure_logging

logger = logging.getLogger("emoney.server")


async def serve() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    application = await build_application(settings)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop_requested.set)
    await application.start()
    await stop_requested.wait()
    await application.stop()


def main() -> int:
    try:
        uvloop.run(serve())
    except ConfigurationError as error:
        print(f"emoney-server: configuration error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
