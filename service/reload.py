"""Hot reload: notice a new CURRENT version, load and check it off the request path, swap it in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from models.bundle import BundleError, current_version, read_manifest
from models.classifier import Classifier, check_compatible
from models.manifest import Manifest
from service.settings import Settings
from service.state import ModelHolder, load_classifier

log = logging.getLogger("service.reload")


@dataclass(frozen=True)
class ReloadOutcome:
    status: str  # "reloaded", "unchanged" or "refused"
    serving: str | None  # the version in service after this check
    current: str | None  # the version CURRENT points at
    error: str | None = None


class Reloader:
    """Swaps ModelHolder.current to the version CURRENT names, once it has loaded and passed
    every check; a request keeps the classifier it started with, so in-flight requests finish
    on the old version."""

    def __init__(
        self,
        holder: ModelHolder,
        settings: Settings,
        model_lock: threading.Lock,
        on_swap: Callable[[Classifier], None] | None = None,
    ):
        self._holder = holder
        self._settings = settings
        self._model_lock = model_lock  # the serving model's: a reused model warms up under it
        self._on_swap = on_swap
        self._lock = threading.Lock()  # one load at a time: a model build is seconds of CPU
        self._refused: dict[str, str] = {}  # a published version does not change: don't retry

    def reload(self, *, retry_refused: bool = False) -> ReloadOutcome:
        """Blocking (file reads, maybe a model build): call from a worker thread."""
        with self._lock:
            old = self._holder.current
            serving = old.version if old else None
            target = current_version(self._settings.artifacts_uri)
            if target is None or target == serving:
                return ReloadOutcome("unchanged", serving, target)
            if target in self._refused and not retry_refused:
                return ReloadOutcome("refused", serving, target, self._refused[target])
            try:
                if old is not None:
                    # A hot reload swaps data, never the model: a version that needs another
                    # featurizer, image size or weights is refused (changing models is a deploy).
                    _same_model(read_manifest(self._settings.artifacts_uri, target), old)
                new = load_classifier(
                    self._settings,
                    target,
                    reuse=old.featurizer if old else None,
                    model_lock=self._model_lock,
                )
            except Exception as exc:  # noqa: BLE001 - any failure means: keep the old version
                # Logged once per version and reason, whoever asked first (poller or admin).
                if self._refused.get(target) != str(exc):
                    log.error("refused bundle %s: %s; still serving %s", target, exc, serving)
                self._refused[target] = str(exc)
                return ReloadOutcome("refused", serving, target, str(exc))
            self._refused.pop(target, None)
            self._holder.current = new  # one reference assignment: atomic for every reader
            if self._on_swap:
                self._on_swap(new)
            log.info("hot reload: now serving bundle %s (was %s)", target, serving)
            return ReloadOutcome("reloaded", target, target)


def _same_model(manifest: Manifest, serving: Classifier) -> None:
    try:
        check_compatible(manifest, serving.featurizer)
    except BundleError as exc:
        raise BundleError(f"{exc}; restart the service to change models") from None


async def _poll(reloader: Reloader, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(reloader.reload)
        except Exception as exc:  # noqa: BLE001 - e.g. the store is unreachable: keep serving
            log.warning("reload check failed, still serving the loaded version: %s", exc)


@contextlib.asynccontextmanager
async def polling(reloader: Reloader, interval_s: float) -> AsyncIterator[None]:
    """Check CURRENT every `interval_s` seconds while the app runs (0: never)."""
    task = asyncio.create_task(_poll(reloader, interval_s)) if interval_s > 0 else None
    try:
        yield
    finally:
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
