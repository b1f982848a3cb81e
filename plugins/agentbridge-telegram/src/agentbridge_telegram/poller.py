"""Long polling: getUpdates forever, each update handled in order, the offset moved on only
after the handler returned (i.e. after the ledger commit).

The offset is how Telegram learns an update was received; a crash before it moved means
Telegram hands the update out again and the idempotent ingest turns the copy into a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from agentbridge_telegram.api import BotApi, TelegramApiError, get_logger
from agentbridge_telegram.webhook import UpdateHandler

log = get_logger(__name__)


class Poller:
    """The getUpdates loop of one channel; ``reconnect`` aborts a (probably dead) poll."""

    def __init__(self, api: BotApi, poll_timeout: float, handle: UpdateHandler) -> None:
        self._api = api
        self._timeout = poll_timeout
        self._handle = handle
        self._fetch: asyncio.Task[Any] | None = None
        self._wake = asyncio.Event()
        #: next getUpdates offset (None until the first update was committed)
        self.offset: int | None = None

    def reconnect(self) -> None:
        """Abort the long poll in flight and any backoff: ask again at once."""
        if self._fetch is not None and not self._fetch.done():
            self._fetch.cancel()
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Back off, but wake at once on ``reconnect``."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def run(self) -> None:
        """Poll forever; nothing but cancellation ends it (a dead poller = a deaf bridge)."""
        failures = 0
        while True:
            try:
                failures = 0 if await self.poll_once() else failures + 1
            except Exception:
                log.exception("telegram: poll loop error")
                failures += 1
            if failures:
                await self._pause(min(2.0 ** (failures - 1), 60.0))

    async def poll_once(self) -> bool:
        """One getUpdates and its updates, in order; False when something must be retried."""
        fetch = asyncio.ensure_future(
            self._api.call(
                "getUpdates",
                http_timeout=self._timeout + 15,
                offset=self.offset,
                timeout=int(self._timeout),
                allowed_updates=["message", "edited_message", "callback_query"],
            )
        )
        self._fetch = fetch
        try:
            await asyncio.wait({fetch})
        except asyncio.CancelledError:
            fetch.cancel()
            raise
        if fetch.cancelled():  # a reconnect: ask again at once, same offset
            return True
        exc = fetch.exception()
        if isinstance(exc, TelegramApiError) and exc.retry_after:
            log.warning("telegram: getUpdates rate limited for %ss", exc.retry_after)
            await self._pause(exc.retry_after)
            return True
        if isinstance(exc, TelegramApiError) and exc.status == 409:
            log.error(
                "telegram: getUpdates refused (%s): a webhook is set (use mode = 'webhook', or "
                "deleteWebhook) or another process polls this bot",
                exc,
            )
            return False
        if exc is not None:
            log.warning("telegram: getUpdates failed, will retry: %s", exc)
            return False
        for update in fetch.result() or []:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            try:
                await self._handle(update if isinstance(update, dict) else {})
            except Exception:
                # not committed: keep the offset, so Telegram hands this update out again
                log.exception("telegram: update %s not stored; will retry", update_id)
                return False
            if isinstance(update_id, int):
                # the ledger has it: only now may Telegram forget it (at the next getUpdates)
                self.offset = update_id + 1
        return True
