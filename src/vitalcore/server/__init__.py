"""The embedded MQTT 3.1.1/5.0 server: device ingest with acknowledgements after durability.

- :class:`Server` (:mod:`.app`): listeners (TCP, optional TLS) around one broker.
- :class:`Broker`, :class:`Limits` (:mod:`.broker`): sessions, routing, retained
  messages, wills, limits and counters; :class:`IngestSink` (:mod:`.ingest`) is what it
  needs from storage.
- :class:`Accounts`, :class:`Principal`, :class:`LoginLimiter`, :func:`may_publish`,
  :func:`may_subscribe` (:mod:`.auth`): accounts, password hashes and the ACL.
- :class:`CommandCenter`, :class:`CommandResult`, :class:`CommandStatus`
  (:mod:`.commands`): commands to one device or a group, tracked to their ACK or timeout.
- Topic scheme helpers (:mod:`.topics`): :func:`up_topic`, :func:`up_json_topic`,
  :func:`cmd_topic`, :func:`device_name`.

See docs/server.md and docs/protocol.md §12.
"""

from __future__ import annotations

from .app import Server
from .auth import Accounts, LoginLimiter, Principal, hash_secret, may_publish, may_subscribe
from .broker import Broker, Limits
from .commands import CommandCenter, CommandResult, CommandStatus
from .ingest import IngestSink
from .topics import cmd_topic, device_name, up_json_topic, up_topic

__all__ = [
    "Server",
    "Broker",
    "Limits",
    "CommandCenter",
    "CommandResult",
    "CommandStatus",
    "IngestSink",
    "Accounts",
    "Principal",
    "LoginLimiter",
    "hash_secret",
    "may_publish",
    "may_subscribe",
    "device_name",
    "up_topic",
    "up_json_topic",
    "cmd_topic",
]
