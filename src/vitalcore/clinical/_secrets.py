"""The server's scrypt functions, imported on first use.

``vitalcore.server`` pulls in the broker, the codec and the store; importing
``vitalcore.clinical`` (or its ``spans`` contract) must not, so the hash functions of
:mod:`vitalcore.server.auth` are reached through these thin wrappers.
"""

from __future__ import annotations


def hash_secret(secret: str | bytes, log2_n: int | None = None) -> str:
    """:func:`vitalcore.server.auth.hash_secret` (default cost if ``log2_n`` is None)."""
    from ..server import auth

    return auth.hash_secret(secret, auth.SCRYPT_LOG2_N if log2_n is None else log2_n)


def verify_secret(secret: str | bytes, encoded: str) -> bool:
    """:func:`vitalcore.server.auth.verify_secret`."""
    from ..server.auth import verify_secret as verify

    return verify(secret, encoded)


def is_device_name(name: str) -> bool:
    """Whether ``name`` is a device's MQTT user name (16 lower-case hex digits)."""
    from ..server.topics import parse_device_name

    return parse_device_name(name) is not None
