"""Hot reload: notice a new CURRENT version, load and check it off the request path, swap it in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass

from models.bundle import POINTER, BundleError, BundleUnavailable, current_version, read_manifest
from models.classifier import Classifier, check_compatible
from models.manifest import Manifest
from models.storage import Storage, storage_for
from service.settings import Settings
from service.state import ModelHolder, load_classifier

log = logging.getLogger("service.reload")


@dataclass(frozen=True)
class ReloadOutcome:
    status: str  # "reloaded", "unchanged", "refused" or "unavailable" (store down: try later)
    serving: str | None  # the version in service after this check
    current: str | None  # the version CURRENT points at (None: none, or unreadable)
    error: str | None = None  # for a refusal: the reason, safe to show (no path, no library text)


# What a client is told when a load failed for a reason that is not a BundleError (a library's
# exception): its text may hold paths, so it goes to the log only.
UNEXPECTED_REFUSAL = "the bundle could not be loaded (the service log has the details)"


class Reloader:
    """Swaps ModelHolder.current to the version CURRENT names, once it has loaded and passed
    every check; a request keeps the classifier it started with, so in-flight requests finish
    on the old version.

    Single-flight: a check asked for while one runs (the poller and the admin endpoint) waits
    for that one and shares its outcome, so a version is never loaded twice at once. A version
    refused for a reason that will repeat (checksum, shapes, another model) is remembered; one
    that could not be read (store unreachable, I/O error) is tried again at the next check."""

    def __init__(
        self,
        holder: ModelHolder,
        settings: Settings,
        model_lock: threading.Lock,
        on_swap: Callable[[Classifier], None] | None = None,
        storage: Storage | None = None,
    ):
        self._holder = holder
        self._settings = settings
        self._model_lock = model_lock  # the serving model's: a reused model warms up under it
        self._on_swap = on_swap
        self._given_storage = storage  # default: the one storage_for() gives, at the first check
        self._flight_lock = threading.Lock()
        self._flight: Future[ReloadOutcome] | None = None
        self.joined = 0  # checks that shared a running one's outcome instead of running again
        self._refused: dict[str, str] = {}  # a published version does not change: don't retry

    def reload(self, *, retry_refused: bool = False) -> ReloadOutcome:
        """Blocking (file reads, maybe a model build): call from a worker thread."""
        with self._flight_lock:
            running = self._flight
            if running is not None:
                self.joined += 1
            else:
                flight = self._flight = Future()
        if running is not None:
            return running.result()
        try:
            outcome = self._check(retry_refused)
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(outcome)
            return outcome
        finally:
            with self._flight_lock:
                self._flight = None

    @property
    def _storage(self) -> Storage:
        return self._given_storage or storage_for(self._settings.artifacts_uri)

    def _check(self, retry_refused: bool) -> ReloadOutcome:
        old = self._holder.current
        serving = old.version if old else None
        root = self._settings.artifacts_uri
        try:
            target = current_version(root, self._storage)
        except Exception as exc:  # noqa: BLE001 - store down or CURRENT unreadable: keep serving
            log.warning("cannot read CURRENT, still serving %s: %s", serving, exc)
            reason = str(exc) if isinstance(exc, BundleError) else f"cannot read {POINTER}"
            return ReloadOutcome("unavailable", serving, None, reason)
        if target is None or target == serving:
            return ReloadOutcome("unchanged", serving, target)
        if target in self._refused and not retry_refused:
            return ReloadOutcome("refused", serving, target, self._refused[target])
        try:
            if old is not None:
                # A hot reload swaps data, never the model: a version that needs another
                # featurizer, image size or weights is refused (changing models is a deploy).
                _same_model(read_manifest(root, target, self._storage), old)
            new = load_classifier(
                self._settings,
                target,
                reuse=old.featurizer if old else None,
                model_lock=self._model_lock,
                storage=self._storage,
            )
        except BundleUnavailable as exc:
            log.warning("bundle %s unreadable now (%s), retried next check; serving %s", target, exc, serving)
            return ReloadOutcome("unavailable", serving, target, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure means: keep the old version
            reason = str(exc) if isinstance(exc, BundleError) else UNEXPECTED_REFUSAL
            # Logged once per version and reason, whoever asked first (poller or admin).
            if self._refused.get(target) != reason:
                log.error("refused bundle %s: %s; still serving %s", target, exc, serving)
            self._refused[target] = reason
            return ReloadOutcome("refused", serving, target, reason)
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
