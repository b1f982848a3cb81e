"""Lark's long connection (``lark.ws.Client``) run in a thread of its own, acking after commit.

How the SDK acks: it reads an event frame, calls the event handler *synchronously*, and only
when the handler has returned writes the frame back with ``{"code": 200}`` — that reply is
the ack. A handler that raises makes it reply ``{"code": 500}``, and Lark pushes the event
again. So the handler here blocks until the bridge's ``ctx.ingest`` (on the bridge's loop)
has committed, and raises when it failed: ingest before ack, by the SDK's own rule.

Why a thread: the SDK keeps its event loop in a module global (``lark_oapi.ws.client.loop``),
its ``start()`` blocks forever, and a synchronous handler cannot await the bridge's loop
from inside it. The thread gets a fresh loop, points that global at it and runs ``start()``;
so it is one long connection per process. The SDK has no ``stop()``: ``close`` does what
its own ``FeishuChannel`` does (reconnects off, stop the loop), then cancels the SDK's tasks
and closes the socket from the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import lark_oapi as lark
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)
from lark_oapi.event.custom import CustomizedEvent
from lark_oapi.ws import client as ws_module

log = logging.getLogger(__name__)
#: the SDK's logger prints to stdout through a handler of its own; the bridge's handlers
#: (it propagates to them) are enough, and one place to configure is better than two
logging.getLogger("Lark").handlers.clear()

#: the events the channel takes; the app subscribes to these in the developer console
EVENT_TYPES = ("im.message.receive_v1",)
#: Lark pushes an event again when it is not acked within about 3 s; ingest takes ms
ACK_WAIT = 10.0

EventHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
#: a button click → the toast the clicker sees
ClickHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, str]]


class LongConnection:
    """The SDK's WebSocket client in its own thread; events go to ``on_event`` on ``loop``."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        base_url: str,
        loop: asyncio.AbstractEventLoop,
        on_event: EventHandler,
        on_reconnected: Callable[[], None],
        on_click: ClickHandler | None = None,
    ) -> None:
        self._app = (app_id, app_secret, base_url)
        self._bridge = loop
        self._on_event = on_event
        self._on_reconnected = on_reconnected
        self._on_click = on_click
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self.fatal: str | None = None
        self.events = 0

    def start(self) -> None:
        """Start the thread (it connects, and reconnects, by itself)."""
        self._thread = threading.Thread(target=self._run, name="lark-long-connection", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_module.loop = loop
        self._loop = loop
        builder = lark.EventDispatcherHandler.builder("", "")
        for event_type in EVENT_TYPES:
            builder = builder.register_p2_customized_event(event_type, self._handle)
        if self._on_click is not None:
            builder = builder.register_p2_card_action_trigger(self._handle_click)
        app_id, secret, base_url = self._app
        try:
            self._client = ws_module.Client(
                app_id,
                secret,
                log_level=lark.LogLevel.WARNING,  # INFO logs the endpoint URL (its ticket)
                event_handler=builder.build(),
                domain=base_url,
                auto_reconnect=True,
            )
            self._client.on_reconnected = self._reconnected
            self._client.start()
        except RuntimeError:
            pass  # ``close`` stopped the loop under ``start()``
        except Exception as exc:  # a refused app (bad id/secret): reconnecting cannot help
            self.fatal = f"lark: the long connection was refused: {exc}"
            log.error("%s", self.fatal)
        finally:
            self._wind_down(loop)

    def _wind_down(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the SDK's tasks (the receive loop ends quietly on a cancel, where a closed
        socket would make it log an error), then close the socket and the loop."""
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        conn = getattr(self._client, "_conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(conn.close(), 2.0))
            self._client._conn = None
        loop.close()

    def _reconnected(self) -> None:
        with contextlib.suppress(RuntimeError):  # the bridge's loop is closing
            self._bridge.call_soon_threadsafe(self._on_reconnected)

    def _handle(self, data: CustomizedEvent) -> None:
        """The SDK's handler (its thread): return only after the commit; raise = no ack."""
        header = data.header
        payload = {
            "schema": data.schema,
            "header": {
                "event_id": getattr(header, "event_id", None),
                "event_type": getattr(header, "event_type", None),
                "tenant_key": getattr(header, "tenant_key", None),
                "create_time": getattr(header, "create_time", None),
            },
            "event": data.event if isinstance(data.event, dict) else {},
        }
        self._wait(self._on_event(payload))
        self.events += 1

    def _handle_click(self, data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        """A button click (the SDK's thread): the toast after the commit; raise = no ack."""
        assert self._on_click is not None
        payload = json.loads(lark.JSON.marshal(data) or "{}")
        toast = self._wait(self._on_click(payload))
        return P2CardActionTriggerResponse({"toast": {"type": "info", "content": toast}})

    def _wait(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the bridge's loop and block this thread until it is done."""
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            coro, self._bridge
        )
        try:
            return future.result(timeout=ACK_WAIT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def reconnect(self) -> None:
        """Drop the socket (after a sleep it is likely dead without knowing): the SDK's
        receive loop sees it closed and reconnects, then ``on_reconnected`` fires."""
        loop, client = self._loop, self._client
        conn = getattr(client, "_conn", None)
        if loop is not None and conn is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(conn.close(), loop)

    @property
    def connected(self) -> bool:
        """Is the WebSocket open right now?"""
        return self._client is not None and getattr(self._client, "_conn", None) is not None

    def close(self, timeout: float = 5.0) -> None:
        """Close the WebSocket and end the thread (blocking; call it from a worker thread)."""
        loop, client, thread = self._loop, self._client, self._thread
        if loop is not None and client is not None and loop.is_running():
            client._auto_reconnect = False
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)
        self._thread = None
