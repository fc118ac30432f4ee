"""Frame decoder throughput: the Cython FrameDecoder against a plain struct decoder.

Prints frames/s, samples/s and MB/s of input for several realistic frame mixes, and in
the same run the same figures for a straightforward pure-Python decoder (``struct``
for headers, ``numpy.frombuffer`` for raw samples, a Python loop for DELTA8) that is
given our C CRC-32C, so the ratio measures decoding work, not a slow checksum.

Usage: python benchmarks/bench_decode.py [--seconds 2] [--devices 200]
"""

from __future__ import annotations

import argparse
import math
import struct
import time

import numpy as np

from vitalcore import codec
from vitalcore import protocol as P

TS0 = 1_764_115_200_000_000


def ecg_like(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """ECG-shaped int16 signal at 2.5 µV/LSB: QRS spikes, P/T waves, wander, noise."""
    t = np.arange(n) / fs
    rr = 60 / rng.uniform(55, 95)
    phase = (t % rr) / rr
    mv = (
        1.1 * np.exp(-(((phase - 0.30) / 0.012) ** 2))
        - 0.15 * np.exp(-(((phase - 0.285) / 0.01) ** 2))
        + 0.12 * np.exp(-(((phase - 0.15) / 0.03) ** 2))
        + 0.25 * np.exp(-(((phase - 0.55) / 0.06) ** 2))
        + 0.1 * np.sin(2 * np.pi * 0.25 * t)
        + rng.normal(0, 0.01, n)
    )
    return np.round(mv * 1000 / 2.5).astype(np.int16)


def pleth_like(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    f = rng.uniform(1.0, 1.5)
    return np.round(20000 + 1500 * np.sin(2 * np.pi * f * t) + rng.normal(0, 20, n)).astype(np.int16)


def make_frames(mix: str, devices: int, seconds: int, encoding: int) -> list[bytes]:
    """Frames of `devices` devices for `seconds` s; waveform frames carry 1/4 s."""
    rng = np.random.default_rng(1)
    frames = []
    for d in range(1, devices + 1):
        ecg_fs = 500 if mix == "ecg500" else 250
        ecg = ecg_like(ecg_fs * seconds, ecg_fs, rng)
        red, ir = pleth_like(100 * seconds, 100, rng), pleth_like(100 * seconds, 100, rng)
        for q in range(4 * seconds):
            ts = TS0 + q * 250_000
            n = ecg_fs // 4
            frames.append(codec.encode_waveform(1, d, q, ts, 1, ecg[q * n : (q + 1) * n], ecg_fs, 2.5, 0.0, encoding))
            if mix == "mixed":
                for ch, sig in ((0, red), (1, ir)):
                    frames.append(codec.encode_waveform(2, d, q, ts, ch, sig[q * 25 : (q + 1) * 25], 100, 1.0, 0.0, encoding))
                if q % 4 == 0:
                    frames.append(codec.encode_numerics(d, q // 4, ts, [(1, 72.0), (2, 71.0), (3, 97.0), (7, 16.0)]))
                if q % 20 == 0:
                    frames.append(codec.encode_status(d, q // 20, ts, battery=80, carrier=2, rssi=-70, powered_s=3600 * 100, accessories=[(1, "LW-000001", 3600), (2, "BAT-000001", 7200)]))
    return frames


# ------------------------------------------------------------------------------ baseline
_HEADER = struct.Struct("<2sBBBBHQIq")
_WAVE = struct.Struct("<BBHHHff")


def struct_decode(buf: bytes) -> tuple[int, int]:
    """A straightforward pure-Python decoder: returns (frames, samples) decoded."""
    crc = codec.crc32c
    frames = samples = 0
    p, n = 0, len(buf)
    out_samples = []
    out_rows = []
    while p + P.MIN_FRAME_SIZE <= n:
        magic, major, _minor, ftype, _flags, plen, dev, seq, ts = _HEADER.unpack_from(buf, p)
        end = p + P.MIN_FRAME_SIZE + plen
        if magic != b"VC" or major != 1 or end > n:
            break
        (stored,) = struct.unpack_from("<I", buf, end - 4)
        if crc(memoryview(buf)[p : end - 4]) != stored:
            p = end
            continue
        pl = p + P.HEADER_SIZE
        if ftype in (1, 2, 3):
            ch, enc, fs, ns, _, gain, off = _WAVE.unpack_from(buf, pl)
            if enc == 0:
                x = np.frombuffer(buf, "<i2", ns, pl + 16)
            else:
                x = np.empty(ns, np.int16)
                prev, i = struct.unpack_from("<h", buf, pl + 16)[0], pl + 18
                x[0] = prev
                for k in range(1, ns):
                    b = buf[i]
                    if b == 0x80:
                        prev = struct.unpack_from("<h", buf, i + 1)[0]
                        i += 3
                    else:
                        prev += b - 256 if b > 127 else b
                        i += 1
                    x[k] = prev
            out_samples.append(x)
            out_rows.append((dev, ftype, ch, seq, ts, fs, gain, off, ns))
            samples += ns
        elif ftype == 0x10:
            count = buf[pl]
            for k in range(count):
                out_rows.append(struct.unpack_from("<BBHf", buf, pl + 4 + 8 * k))
        else:
            out_rows.append((dev, ftype, seq, ts, buf[pl : end - 4]))
        frames += 1
        p = end
    return frames, samples


def measure(fn, seconds: float) -> tuple[float, object]:
    """Best time of repeated calls within `seconds` (at least 3 calls)."""
    best, result, t_end, calls = math.inf, None, time.perf_counter() + seconds, 0
    while calls < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time budget per measurement")
    ap.add_argument("--devices", type=int, default=200)
    args = ap.parse_args()
    print(f"CRC-32C on the CPU's crc32 instruction: {codec.crc32c_hardware()}")
    print(f"{'mix':<16}{'decoder':<12}{'MB/s':>10}{'frames/s':>14}{'samples/s':>16}{'ratio':>9}")
    for mix, encoding in (("ecg250", 0), ("ecg250", 1), ("ecg500", 1), ("mixed", 1)):
        frames = make_frames(mix, args.devices, 5, encoding)
        buf = b"".join(frames)
        dec = codec.FrameDecoder()

        def ours(buf=buf, dec=dec):
            dec.feed(buf)
            return dec.take()

        t_ours, batch = measure(ours, args.seconds)
        assert batch.n_frames == len(frames) and not batch.rejected()
        t_base, (nf, ns) = measure(lambda buf=buf: struct_decode(buf), args.seconds)
        assert nf == len(frames) and ns == len(batch.samples)
        label = f"{mix}/{'raw16' if encoding == 0 else 'delta8'}"
        for name, t in (("cython", t_ours), ("struct", t_base)):
            print(
                f"{label:<16}{name:<12}{len(buf) / t / 1e6:>10.0f}{len(frames) / t:>14,.0f}"
                f"{ns / t:>16,.0f}{t_base / t if name == 'cython' else 1.0:>8.0f}x"
            )
        # the server's shape: one feed per MQTT message (one frame), one take per batch
        def per_message(frames=frames, dec=dec):
            for f in frames:
                dec.feed(f)
            return dec.take()

        t_msg, _ = measure(per_message, args.seconds)
        print(
            f"{label:<16}{'cython/msg':<12}{len(buf) / t_msg / 1e6:>10.0f}{len(frames) / t_msg:>14,.0f}"
            f"{ns / t_msg:>16,.0f}{t_base / t_msg:>8.0f}x   (one feed() per frame)"
        )


if __name__ == "__main__":
    main()
