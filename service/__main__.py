"""`python -m service [--host H] [--port P]`: serve the app with uvicorn."""

import argparse
import sys

import uvicorn
from uvicorn.main import STARTUP_FAILURE

from service.app import create_app
from service.limits import ConnectionLimitMiddleware
from service.logging_setup import setup_logging
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = Settings()
    setup_logging(settings.log_level)
    app = create_app(settings)
    # log_config=None keeps our JSON handler; service.logging_setup.log_access writes access lines.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    # Outermost, so a request past the limit costs nothing more; our 503 replaces uvicorn's
    # plain-text limit_concurrency one.
    app.add_middleware(
        ConnectionLimitMiddleware,
        max_connections=settings.max_connections,
        open_connections=lambda: len(server.server_state.connections),
    )
    server.run()
    if not server.started:  # as uvicorn.run: service.launch retries another port on this code
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
