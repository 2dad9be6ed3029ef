"""Adds X-Model-Version (the bundle version that served the request) to every HTTP response."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-model-version"


class ModelVersionHeader:
    """Pure ASGI, so streaming and background tasks are untouched. Routes record the version
    they used in request.state; otherwise the version in service when the response starts."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                version = scope.get("state", {}).get("model_version")
                if version is None:
                    current = scope["app"].state.holder.current
                    version = current.version if current else None
                if version:
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (HEADER, version.encode())]
            await send(message)

        await self.app(scope, receive, send_with_version)
