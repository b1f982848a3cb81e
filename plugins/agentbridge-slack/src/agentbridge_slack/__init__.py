"""agentbridge-slack: a Slack channel (Socket Mode) for agentbridge."""

from agentbridge_slack.channel import SlackChannel
from agentbridge_slack.settings import SlackSettings, parse_settings

__all__ = ["SlackChannel", "SlackSettings", "parse_settings"]
