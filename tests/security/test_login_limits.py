"""Failed-login rate limiting, proved with bounded brute-force loops on the real server.

``python -m vitalcore serve`` with its defaults (MQTT and CoAP: a token bucket of 20
password checks per source address, refilled at 1/s, refunded on success). A guessing
client is cut off (MQTT 5 CONNACK 0x9F Connection rate exceeded; CoAP 4.29) after about
the burst, even with the right password; a device that logged in before keeps
reconnecting (verified-login cache); the address recovers as the bucket refills.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import aiocoap
from aiocoap import Code, Message
from security_helpers import Mqtt, free_port, serving

from vitalcore import codec
from vitalcore.server import Accounts, device_name

DEV, DEV2 = 0x0A01, 0x0A02
SECRET, SECRET2 = "a01-secret", "a02-secret"
TS = 1_764_115_200_000_000
BURST = 20  # LoginLimiter's default
MAX_TRIES = 60  # bound of each loop


EXTRA = range(0x0A10, 0x0A15)
SECRETS = {d: f"{d:x}-secret" for d in EXTRA}


def _accounts(tmp) -> str:
    acc = Accounts(log2_n=10)
    acc.add_device(DEV, SECRET)
    acc.add_device(DEV2, SECRET2)
    for d, s in SECRETS.items():
        acc.add_device(d, s)
    acc.add_user("nurse", "nurse-pw", "viewer", devices=[DEV])
    path = tmp / "accounts.json"
    acc.save(path)
    return str(path)


def _connack(port: int, user: str, password: str) -> int:
    with Mqtt(port, user, password, client_id="") as c:
        return c.connect()


def _guesses(port: int, n: int, tag: str) -> list[int]:
    """``n`` wrong passwords for DEV2, 8 connections at a time (faster than the refill
    even on a loaded machine); the CONNACK codes."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: _connack(port, device_name(DEV2), f"{tag}-{i}"),
                             range(n)))


def test_mqtt_brute_force_is_cut_off(tmp_path):
    """At most burst + elapsed x rate guesses are checked; the rest are refused unchecked."""
    port = free_port()
    with serving(tmp_path, "--data", str(tmp_path / "data"), "--port", str(port),
                 "--accounts", _accounts(tmp_path)) as log:
        assert _connack(port, device_name(DEV), SECRET) == 0  # verified before the attack
        t0 = time.monotonic()
        codes = _guesses(port, MAX_TRIES, "guess")
        elapsed = time.monotonic() - t0
        assert set(codes) <= {0x86, 0x9F}, codes  # never accepted
        checked = codes.count(0x86)
        assert BURST - 1 <= checked <= BURST + elapsed * 1.0 + 1, (checked, elapsed, codes)
        assert codes.count(0x9F) >= MAX_TRIES - BURST - elapsed - 1, (elapsed, codes)
        # right secrets are refused too while the address is limited (not even checked):
        # five devices never seen before, each logging in once amid wrong guesses (a
        # token may refill at 1/s meanwhile and let one of them in)
        mixed = [(device_name(d), SECRETS[d] if j == 4 else f"again-{j}")
                 for d in EXTRA for j in range(5)]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda up: _connack(port, *up), mixed))
        right = [rc for (_, pw), rc in zip(mixed, got, strict=True) if not pw.startswith("again-")]
        assert set(got) <= {0, 0x86, 0x9F} and 0x9F in right, right
        # a device verified before keeps reconnecting: its login is in the cache
        assert _connack(port, device_name(DEV), SECRET) == 0
        time.sleep(2.5)  # two tokens refill at 1/s
        assert _connack(port, device_name(DEV2), SECRET2) == 0
    text = log.read_text()
    assert SECRET2 not in text and "guess-" not in text


async def _post(ctx, port: int, name: str, secret: str) -> Code:
    uri = f"coap://127.0.0.1:{port}/vc/v1/up?d={name}&k={secret}"
    payload = codec.encode_numerics(DEV2, int(time.monotonic_ns() % 2**31), TS, [(1, 70.0)])
    req = Message(code=Code.POST, uri=uri, payload=payload)
    return (await asyncio.wait_for(ctx.request(req).response, 20)).code


def test_coap_brute_force_is_cut_off(tmp_path):
    """The same over CoAP (the endpoint has a limiter by default since this suite found
    it had none), and user accounts never post uplinks."""
    port, coap = free_port(), free_port(__import__("socket").SOCK_DGRAM)

    async def attack() -> tuple[list[Code], Code, Code, Code]:
        ctx = await aiocoap.Context.create_client_context()
        try:
            user = await _post(ctx, coap, "nurse", "nurse-pw")
            codes = []
            for i in range(MAX_TRIES):
                codes.append(await _post(ctx, coap, device_name(DEV2), f"guess-{i}"))
                if codes[-1] == Code.TOO_MANY_REQUESTS:
                    break
            right = await _post(ctx, coap, device_name(DEV2), SECRET2)
            await asyncio.sleep(2.5)
            later = await _post(ctx, coap, device_name(DEV2), SECRET2)
            return codes, user, right, later
        finally:
            await ctx.shutdown()

    with serving(tmp_path, "--data", str(tmp_path / "data"), "--port", str(port),
                 "--coap-port", str(coap), "--accounts", _accounts(tmp_path),
                 ready="CoAP endpoint listening"):
        codes, user, right, later = asyncio.run(attack())
    assert user == Code.UNAUTHORIZED
    assert set(codes) <= {Code.UNAUTHORIZED, Code.TOO_MANY_REQUESTS}, codes
    assert codes[-1] == Code.TOO_MANY_REQUESTS, f"no rate limit after {len(codes)}: {codes}"
    assert len(codes) >= BURST - 1  # the user's failed post took one token
    assert right == Code.TOO_MANY_REQUESTS
    assert later == Code.CHANGED
