"""The MQTT topic scheme of vitalcore (docs/protocol.md §12) and filter coverage.

Devices publish binary frames to ``vc/v1/dev/<id>/up`` and JSON frames to
``vc/v1/dev/<id>/up/json``, and receive binary COMMAND frames on ``vc/v1/dev/<id>/cmd``,
where ``<id>`` is the device id as exactly 16 lower-case hexadecimal digits. The MQTT
user name of a device is the same 16-digit id.
"""

from __future__ import annotations

from ..errors import UsageError
from ..mqtt.topics import split_shared

__all__ = [
    "PREFIX",
    "device_name",
    "parse_device_name",
    "up_topic",
    "up_json_topic",
    "cmd_topic",
    "uplink_kind",
    "filter_covers",
]

PREFIX = "vc/v1/dev/"
_HEX = frozenset("0123456789abcdef")


def device_name(device_id: int) -> str:
    """The 16-hex-digit name of ``device_id`` (its MQTT user name and topic level)."""
    if not 0 < device_id < 1 << 64:
        raise UsageError(f"device id must be in 1..2^64-1, got {device_id!r}")
    return f"{device_id:016x}"


def parse_device_name(name: str) -> int | None:
    """The device id named by ``name`` (16 lower-case hex digits, non-zero), else None."""
    if len(name) != 16 or not _HEX.issuperset(name):
        return None
    value = int(name, 16)
    return value or None


def up_topic(device_id: int) -> str:
    """Topic on which ``device_id`` publishes binary frames."""
    return f"{PREFIX}{device_name(device_id)}/up"


def up_json_topic(device_id: int) -> str:
    """Topic on which ``device_id`` publishes JSON frames."""
    return f"{PREFIX}{device_name(device_id)}/up/json"


def cmd_topic(device_id: int) -> str:
    """Topic on which ``device_id`` receives COMMAND frames."""
    return f"{PREFIX}{device_name(device_id)}/cmd"


def uplink_kind(topic: str) -> tuple[int, bool] | None:
    """``(device_id, is_json)`` if ``topic`` is a device uplink topic, else None."""
    if not topic.startswith(PREFIX):
        return None
    rest = topic[len(PREFIX):]
    name, _, tail = rest.partition("/")
    if tail == "up":
        json = False
    elif tail == "up/json":
        json = True
    else:
        return None
    device = parse_device_name(name)
    return None if device is None else (device, json)


def filter_covers(grant: str, flt: str) -> bool:
    """Whether every topic matched by filter ``flt`` is matched by filter ``grant``.

    Both must be valid topic filters; a ``$share/{group}/`` prefix of ``flt`` is
    ignored (the group does not change which topics it receives). A wildcard at the
    first level of ``grant`` does not cover a ``flt`` whose first level starts with
    ``$`` (MQTT §4.7.2).
    """
    _, flt = split_shared(flt)
    f_levels = flt.split("/")
    g_levels = grant.split("/")
    for i, g in enumerate(g_levels):
        if i == 0 and g in ("+", "#") and f_levels[0].startswith("$"):
            return False
        if g == "#":
            return True  # covers this level and every level below, including none
        if i >= len(f_levels):
            return False
        f = f_levels[i]
        if f == "#":
            return False  # flt reaches below anything but '#' covers
        if g == "+":
            continue
        if f != g:  # a '+' in flt against a literal, or two different literals
            return False
    return len(f_levels) == len(g_levels)
