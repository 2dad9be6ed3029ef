"""`python -m service [--host H] [--port P]`: serve the app with uvicorn."""

import argparse
import logging

import uvicorn

from service.app import create_app
from service.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=args.host, port=args.port,
                log_level=settings.log_level.lower())


if __name__ == "__main__":
    main()
