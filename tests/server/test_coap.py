"""The CoAP endpoint end to end: a real aiocoap client, a real Store on disk."""

from __future__ import annotations

import asyncio
import socket

import aiocoap
import pytest
from aiocoap import Code, Message
from helpers import DEV, DEV2, DEV_NAME, SECRET, TS, accounts, command, make_store, numerics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalcore import codec, jsonframes
from vitalcore.errors import UsageError
from vitalcore.protocol import FrameType
from vitalcore.server.coap import CoapEndpoint


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(coro, timeout: float = 20.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def with_endpoint(tmp_path, body, store_kw=None, **kw):
    """Run ``body(endpoint, post, store)`` against a started endpoint and a client."""
    store = make_store(tmp_path / "store", **(store_kw or {}))
    ep = CoapEndpoint(store, accounts(), port=free_udp_port(), **kw)
    await ep.start()
    client = await aiocoap.Context.create_client_context()

    async def post(payload: bytes, path: str = "up", query: str = f"d={DEV_NAME}&k={SECRET}",
                   content_format: int | None = 42) -> Message:
        uri = f"coap://127.0.0.1:{ep.port}/vc/v1/{path}?{query}"
        req = Message(code=Code.POST, uri=uri, payload=payload)
        if content_format is not None:
            req.opt.content_format = content_format
        return await asyncio.wait_for(client.request(req).response, 5.0)

    try:
        return await body(ep, post, store)
    finally:
        await client.shutdown()
        await ep.stop()
        store.close(flush=False)


def test_binary_post_is_stored_and_durable(tmp_path):
    async def body(ep, post, store):
        resp = await post(numerics(1) + numerics(2, hr=80.0))
        assert resp.code == Code.CHANGED, resp.payload
        assert resp.payload == b""
        assert store.wal.durable_lsn >= 1  # 2.04 only after durability
        table = store.read_numerics(DEV, TS, TS + 10_000)
        assert sorted(table.column("value").to_pylist()) == [72.0, 80.0]
        assert ep.stats()["stored"] == 1

    run(with_endpoint(tmp_path, body))


def test_waveform_post_reads_back(tmp_path):
    async def body(ep, post, store):
        frame = codec.encode_waveform(FrameType.ECG, DEV, 5, TS, 0, list(range(50)), 250, 1.0)
        resp = await post(frame)
        assert resp.code == Code.CHANGED, resp.payload
        table = store.read_waveforms(DEV, TS - 1, TS + 1_000_000)
        assert table.column("n_samples").to_pylist() == [50]
        assert table.column("seq").to_pylist() == [5]

    run(with_endpoint(tmp_path, body))


def test_json_post_is_stored(tmp_path):
    async def body(ep, post, store):
        doc = jsonframes.from_binary(numerics(7, hr=64.5))
        resp = await post(doc, path="up/json", content_format=50)
        assert resp.code == Code.CHANGED, resp.payload
        table = store.read_numerics(DEV, TS, TS + 10_000)
        assert table.column("value").to_pylist() == [64.5]

    run(with_endpoint(tmp_path, body))


def test_wrong_secret_unknown_device_and_missing_query_are_401(tmp_path):
    async def body(ep, post, store):
        for query in (f"d={DEV_NAME}&k=wrong", f"d={'0' * 15}9&k={SECRET}", "", f"d={DEV_NAME}"):
            resp = await post(numerics(1), query=query)
            assert resp.code == Code.UNAUTHORIZED, query
        assert store.read_numerics(DEV, TS, TS + 10_000).num_rows == 0
        assert ep.stats()["auth_failed"] == 4

    run(with_endpoint(tmp_path, body))


def test_garbage_body_is_400_and_the_next_post_works(tmp_path):
    async def body(ep, post, store):
        resp = await post(b"\x00garbage" * 10)
        assert resp.code == Code.BAD_REQUEST
        assert b"bad_magic" in resp.payload
        resp = await post(b"")
        assert resp.code == Code.BAD_REQUEST
        resp = await post(numerics(3))
        assert resp.code == Code.CHANGED, resp.payload
        assert store.read_numerics(DEV, TS, TS + 10_000).num_rows == 1

    run(with_endpoint(tmp_path, body))


def test_frames_of_another_device_are_rejected(tmp_path):
    async def body(ep, post, store):
        resp = await post(numerics(1, device=DEV2))
        assert resp.code == Code.BAD_REQUEST
        assert b"device_mismatch=1" in resp.payload
        assert store.read_numerics(DEV2, TS, TS + 10_000).num_rows == 0

    run(with_endpoint(tmp_path, body))


def test_oversized_body_is_413(tmp_path):
    async def body(ep, post, store):
        resp = await post(numerics(1) * 20)
        assert resp.code == Code.REQUEST_ENTITY_TOO_LARGE
        assert store.read_numerics(DEV, TS, TS + 10_000).num_rows == 0

    run(with_endpoint(tmp_path, body, max_body=len(numerics(1)) * 4))


def test_wrong_content_format_is_415(tmp_path):
    async def body(ep, post, store):
        resp = await post(numerics(1), content_format=50)
        assert resp.code == Code.UNSUPPORTED_CONTENT_FORMAT

    run(with_endpoint(tmp_path, body))


def test_queued_command_comes_back_in_the_next_response(tmp_path):
    async def body(ep, post, store):
        ep.queue_command(DEV, command(1))
        ep.queue_command(DEV, command(2))
        assert ep.queued(DEV) == 2
        resp = await post(numerics(1))
        assert resp.code == Code.CHANGED
        assert resp.payload == command(1) + command(2)
        batch = codec.FrameDecoder().decode(resp.payload, DEV)
        assert batch.n_frames == 2 and not batch.rejects.any()
        assert batch.tables["commands"]["command_id"].tolist() == [101, 102]
        assert ep.queued(DEV) == 0
        resp = await post(numerics(2))
        assert resp.code == Code.CHANGED and resp.payload == b""

    run(with_endpoint(tmp_path, body))


def test_queue_command_refuses_bad_frames_and_overflow(tmp_path):
    ep = CoapEndpoint(make_store(tmp_path / "s"), accounts(), max_queued=1)
    with pytest.raises(UsageError):
        ep.queue_command(DEV, numerics(1))  # not a COMMAND
    with pytest.raises(UsageError):
        ep.queue_command(DEV, command(1, device=DEV2))  # another device's
    with pytest.raises(UsageError):
        ep.queue_command(DEV, command(1)[:-1])  # truncated
    ep.queue_command(DEV, command(1))
    with pytest.raises(UsageError):
        ep.queue_command(DEV, command(2))
    assert ep.queued(DEV) == 1
    ep.store.close(flush=False)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bodies=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=15))
def test_hostile_bodies_never_break_the_endpoint(tmp_path_factory, bodies):
    """Random bodies get 4.00 (or 2.04 if they happen to hold a frame); then a good POST
    is still stored."""
    async def body(ep, post, store):
        for b in bodies:
            resp = await post(b)
            assert resp.code in (Code.BAD_REQUEST, Code.CHANGED), (b, resp)
        resp = await post(numerics(9, hr=99.0))
        assert resp.code == Code.CHANGED
        assert 99.0 in store.read_numerics(DEV, TS, TS + 10_000).column("value").to_pylist()

    run(with_endpoint(tmp_path_factory.mktemp("hostile"), body))


def test_back_pressure_is_503_with_max_age_1(tmp_path):
    async def body(ep, post, store):
        assert (await post(numerics(1))).code == Code.CHANGED
        resp = await post(numerics(2))  # the first commit now exceeds the 1-byte bound
        assert resp.code == Code.SERVICE_UNAVAILABLE
        assert resp.opt.max_age == 1
        assert store.read_numerics(DEV, TS, TS + 10_000).num_rows == 1

    run(with_endpoint(tmp_path, body, store_kw={"max_unflushed_bytes": 1}))


def test_mixed_message_stores_own_frames_only(tmp_path):
    async def body(ep, post, store):
        resp = await post(numerics(1) + numerics(2, device=DEV2))
        assert resp.code == Code.CHANGED
        assert store.read_numerics(DEV, TS, TS + 10_000).num_rows == 1
        assert store.read_numerics(DEV2, TS, TS + 10_000).num_rows == 0
        assert ep.stats()["partly_rejected"] == 1

    run(with_endpoint(tmp_path, body))


def test_serve_command_runs_mqtt_and_coap_on_one_store(tmp_path):
    """`python -m vitalcore serve --coap-port`: a CoAP uplink is confirmed only when durable
    and is in the store the server leaves behind after SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vitalcore.storage import Store

    accounts().save(str(tmp_path / "accounts.json"))
    mqtt_port, coap_port = free_tcp_port(), free_udp_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalcore", "serve", "--accounts", str(tmp_path / "accounts.json"),
         "--data", str(tmp_path / "data"), "--port", str(mqtt_port), "--coap-port", str(coap_port)],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "CoAP endpoint listening" not in proc.stderr.readline():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"

        async def post() -> aiocoap.Message:
            ctx = await aiocoap.Context.create_client_context()
            try:
                uri = f"coap://127.0.0.1:{coap_port}/vc/v1/up?d={DEV_NAME}&k={SECRET}"
                return await asyncio.wait_for(
                    ctx.request(Message(code=Code.POST, uri=uri, payload=numerics(7))).response, 20
                )
            finally:
                await ctx.shutdown()

        assert asyncio.run(post()).code == Code.CHANGED
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with Store(tmp_path / "data", flush_interval_s=0) as store:
        assert store.read_numerics(DEV, 0, 2**62).num_rows >= 1


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
