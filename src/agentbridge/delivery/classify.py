"""How the relay classes a failed send: the plugin hook, then the channel, then these rules.

Kept apart from ``relay.py`` (which acts on the answer) so the contract suite and channels'
tests ask exactly the question the relay asks.
"""

from __future__ import annotations

import re
import socket

import pluggy

from agentbridge.plugin.protocols import Channel, DeliveryError, ErrorClass

__all__ = ["NOT_SENT", "PERMANENT_PATTERNS", "classify"]

#: errors that will not get better by retrying (conservative: anything else is transient)
PERMANENT_PATTERNS = re.compile(
    r"chat not found|user not found|bot was blocked|bot was kicked|forbidden|chat_id is empty|"
    r"no conversation reference|ambiguous.*recipient|user is deactivated|unknown channel",
    re.IGNORECASE,
)
#: built-in exceptions that prove the request never left (refused, DNS): safe to retry
NOT_SENT: tuple[type[BaseException], ...] = (ConnectionRefusedError, socket.gaierror)


def classify(
    error: BaseException, channel: Channel | None, pm: pluggy.PluginManager | None
) -> tuple[ErrorClass, float | None]:
    """(class, retry_after): the plugin hook first, then the channel, then the built-in rules.

    Built in: a ``DeliveryError`` says its own class (a "transient" one whose text names a
    permanent condition is permanent); any other exception is permanent by its text,
    transient only if it proves nothing was sent (``NOT_SENT``), and otherwise ``unknown``.
    """
    retry_after = error.retry_after if isinstance(error, DeliveryError) else None
    if pm is not None and channel is not None:
        answer = pm.hook.classify_delivery_error(channel=channel.name, error=error)
        if answer is not None:
            return ErrorClass(answer), retry_after
    if isinstance(error, DeliveryError) and error.error_class != ErrorClass.TRANSIENT:
        return error.error_class, retry_after
    if channel is not None and not isinstance(error, DeliveryError):
        try:
            answer = channel.classify_error(error)
        except Exception:
            answer = None
        if answer is not None:
            return ErrorClass(answer), retry_after
    if PERMANENT_PATTERNS.search(str(error)):
        return ErrorClass.PERMANENT, retry_after
    if isinstance(error, (DeliveryError, *NOT_SENT)):
        return ErrorClass.TRANSIENT, retry_after
    return ErrorClass.UNKNOWN, retry_after
