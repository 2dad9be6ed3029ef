"""`python -m service [--host H] [--port P]`: serve the app with uvicorn."""

import argparse

import uvicorn

from service.app import create_app
from service.logging_setup import setup_logging
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = Settings()
    setup_logging(settings.log_level)
    # log_config=None keeps our JSON handler; service.logging_setup.log_access writes access lines.
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
        # Beyond this many connections or requests in progress, uvicorn answers 503 at once.
        limit_concurrency=settings.max_connections,
    )


if __name__ == "__main__":
    main()
