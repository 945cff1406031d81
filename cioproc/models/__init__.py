"""Plain data the other packages exchange: commands, settings, user state. No I/O here."""

from cioproc.models.commands import Command, CommandKind, decode_command, encode_command
from cioproc.models.settings import MappingSettings, UserIdType

__all__ = [
    "Command",
    "CommandKind",
    "MappingSettings",
    "UserIdType",
    "decode_command",
    "encode_command",
]
