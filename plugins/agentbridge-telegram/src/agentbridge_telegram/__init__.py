"""agentbridge's Telegram channel (a separate distribution, loaded by entry point)."""

from agentbridge_telegram.channel import TelegramChannel
from agentbridge_telegram.outbound import message_key
from agentbridge_telegram.settings import TelegramSettings, parse_settings

__all__ = ["TelegramChannel", "TelegramSettings", "message_key", "parse_settings"]
