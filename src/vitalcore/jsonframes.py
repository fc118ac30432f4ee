"""JSON form of wire-format v1 frames, for devices that cannot build binary frames.

A JSON document is one frame object or an array of them (schema in
``docs/protocol.md``, section "JSON form"). Each object is validated with msgspec,
turned into the binary frame it stands for and fed to a :class:`~vitalcore.codec.FrameDecoder`,
so JSON and binary devices go through exactly the same checks and produce the same
columns. A document that is not valid JSON or does not fit the schema is rejected
whole (reason ``bad_json``); a frame whose values are out of range is rejected alone
(``value_range``) and the other frames of the document go on.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from . import codec
from . import protocol as P
from .errors import UsageError

__all__ = ["JsonFrameDecoder", "parse", "to_binary", "from_binary"]

U8 = Annotated[int, msgspec.Meta(ge=0, le=0xFF)]
U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]
DeviceId = Annotated[int, msgspec.Meta(ge=1)]  # <= 2**64-1, checked by the encoder
Stamp = Annotated[int, msgspec.Meta(ge=P.TS_MIN_US, lt=P.TS_MAX_US)]
Sample = Annotated[int, msgspec.Meta(ge=-32768, le=32767)]

_LEADS = {lead.name.lower(): int(lead) for lead in P.EcgLead}
_PLETH = {c.name.lower(): int(c) for c in P.PlethChannel}
_CODES = {c.name.lower(): int(c) for c in P.NumericCode}
_NSTATUS = {s.name.lower(): int(s) for s in P.NumericStatus}
_CARRIERS = {c.name.lower(): int(c) for c in P.Carrier}
_ACC = {k.name.lower(): int(k) for k in P.AccessoryKind}
_CMDS = {k.name.lower(): int(k) for k in P.CommandKind}
_ACKS = {s.name.lower(): int(s) for s in P.AckStatus}
_FLAGS = {f.name.lower(): int(f) for f in P.StatusFlag}


class _Frame(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    device: DeviceId
    seq: U32
    ts_us: Stamp
    v: Literal[1] = 1


class _Wave(_Frame):
    fs: Annotated[int, msgspec.Meta(ge=1, le=P.MAX_FS_HZ)] = 0
    samples: Annotated[list[Sample], msgspec.Meta(min_length=1, max_length=P.MAX_SAMPLES)] = []
    gain: float = 1.0
    offset: float = 0.0


class Ecg(_Wave, tag="ecg"):
    lead: str = "ii"


class Pleth(_Wave, tag="pleth"):
    channel: Literal["red", "ir"] = "red"


class Cuff(_Wave, tag="cuff"):
    pass


class Numeric(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    value: float | None = None
    status: str = "valid"


class Numerics(_Frame, tag="numerics"):
    values: Annotated[list[Numeric], msgspec.Meta(min_length=1, max_length=P.MAX_NUMERICS)] = []


class Accessory(msgspec.Struct, forbid_unknown_fields=True):
    kind: str | U8
    serial: str
    powered_s: U32 = 0


class Status(_Frame, tag="status"):
    battery: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    flags: list[str | U8] = []  # names, or raw bits for flags this version has no name for
    carrier: str | U8 = "none"
    rssi: Annotated[int, msgspec.Meta(ge=-127, le=127)] | None = None
    leads_off: U16 = 0
    fault: U16 = 0
    powered_s: U32 = 0
    accessories: Annotated[list[Accessory], msgspec.Meta(max_length=P.MAX_ACCESSORIES)] = []


class Ack(_Frame, tag="ack"):
    command_id: U32 = 0
    kind: str | U8 = "start_nibp"
    status: str = "accepted"
    detail: U16 = 0


class Command(_Frame, tag="command"):
    command_id: U32 = 0
    kind: str | U8 = "start_nibp"
    arg: U32 = 0


JsonFrame = Ecg | Pleth | Cuff | Numerics | Status | Ack | Command
_decoder = msgspec.json.Decoder(JsonFrame | list[JsonFrame])


def parse(document: bytes | str) -> JsonFrame | list[JsonFrame]:
    """Parse and validate a JSON document (msgspec.ValidationError/DecodeError if bad)."""
    try:
        return _decoder.decode(document)
    except UnicodeDecodeError as exc:  # msgspec's error for ill-formed UTF-8 in a string
        raise msgspec.DecodeError(f"invalid UTF-8 in a JSON string: {exc}") from exc


def _lookup(table: dict[str, int], name: str | int, what: str) -> int:
    if isinstance(name, int):
        return name
    try:
        return table[name.lower()]
    except KeyError:
        raise UsageError(f"unknown {what} {name!r}; expected one of {sorted(table)}") from None


def to_binary(frame: JsonFrame) -> bytes:
    """The binary v1 frame a JSON frame object stands for (UsageError if not encodable)."""
    head = (frame.device, frame.seq, frame.ts_us)
    if isinstance(frame, _Wave):
        if isinstance(frame, Ecg):
            ftype, channel = P.FrameType.ECG, _lookup(_LEADS, frame.lead, "ECG lead")
        elif isinstance(frame, Pleth):
            ftype, channel = P.FrameType.PLETH, _PLETH[frame.channel]
        else:
            ftype, channel = P.FrameType.CUFF, 0
        return codec.encode_waveform(
            ftype, *head, channel, frame.samples, frame.fs, frame.gain, frame.offset
        )
    if isinstance(frame, Numerics):
        entries = [
            (
                _lookup(_CODES, e.code, "numeric code"),
                float("nan") if e.value is None else e.value,
                _NSTATUS["unavailable"] if e.value is None else _lookup(_NSTATUS, e.status, "status"),
            )
            for e in frame.values
        ]
        return codec.encode_numerics(*head, entries)
    if isinstance(frame, Status):
        flags = 0
        for name in frame.flags:
            flags |= _lookup(_FLAGS, name, "status flag")
        return codec.encode_status(
            *head,
            battery=255 if frame.battery is None else frame.battery,
            flags=flags,
            carrier=_lookup(_CARRIERS, frame.carrier, "carrier"),
            rssi=-128 if frame.rssi is None else frame.rssi,
            leads_off=frame.leads_off,
            fault=frame.fault,
            powered_s=frame.powered_s,
            accessories=[
                (_lookup(_ACC, a.kind, "accessory kind"), a.serial, a.powered_s)
                for a in frame.accessories
            ],
        )
    if isinstance(frame, Ack):
        return codec.encode_ack(
            *head,
            frame.command_id,
            _lookup(_CMDS, frame.kind, "command kind"),
            _lookup(_ACKS, frame.status, "ack status"),
            frame.detail,
        )
    return codec.encode_command(
        *head, frame.command_id, _lookup(_CMDS, frame.kind, "command kind"), frame.arg
    )


def from_binary(frame: bytes) -> bytes:
    """The JSON document (one object) for one binary frame; the inverse of :func:`to_binary`.

    Meant for tools and tests (readable dumps of captured traffic), not the hot path.
    """
    b = codec.FrameDecoder().decode(frame)
    if b.n_frames != 1:
        raise UsageError(f"not exactly one valid frame: rejected {b.rejected()}")
    f = b["frames"]
    ftype, channel = int(f["frame_type"][0]), int(f["channel"][0])
    head = dict(device=int(f["device_id"][0]), seq=int(f["seq"][0]), ts_us=int(f["ts_us"][0]))
    names = {v: k for k, v in _CODES.items()}
    if ftype in P.WAVEFORM_TYPES:
        w = b["waveforms"]
        wave = dict(
            head,
            fs=int(w["fs_hz"][0]),
            samples=b.waveform_samples(0).tolist(),
            gain=float(w["gain"][0]),
            offset=float(w["offset"][0]),
        )
        if ftype == P.FrameType.ECG:
            obj: JsonFrame = Ecg(**wave, lead=P.EcgLead(channel).name.lower())
        elif ftype == P.FrameType.PLETH:
            obj = Pleth(**wave, channel=P.PlethChannel(channel).name.lower())
        else:
            obj = Cuff(**wave)
    elif ftype == P.FrameType.NUMERICS:
        n = b["numerics"]
        obj = Numerics(
            **head,
            values=[
                Numeric(
                    code=names[int(c)],
                    value=None if s == P.NumericStatus.UNAVAILABLE else float(v),
                    status=P.NumericStatus(int(s)).name.lower(),
                )
                for c, s, v in zip(n["code"], n["status"], n["value"], strict=True)
            ],
        )
    elif ftype == P.FrameType.STATUS:
        s, a = b["status"], b["accessories"]
        kinds = {v: k for k, v in _ACC.items()}
        carriers = {v: k for k, v in _CARRIERS.items()}
        obj = Status(
            **head,
            battery=None if s["battery"][0] == 255 else int(s["battery"][0]),
            flags=_flag_names(int(s["flags"][0])),
            carrier=carriers.get(int(s["carrier"][0]), int(s["carrier"][0])),
            rssi=None if s["rssi"][0] == -128 else int(s["rssi"][0]),
            leads_off=int(s["leads_off"][0]),
            fault=int(s["fault"][0]),
            powered_s=int(s["powered_s"][0]),
            accessories=[
                Accessory(kind=kinds.get(int(k), int(k)), serial=sr.decode(), powered_s=int(h))
                for k, sr, h in zip(a["kind"], a["serial"], a["powered_s"], strict=True)
            ],
        )
    elif ftype == P.FrameType.ACK:
        k = b["acks"]
        obj = Ack(
            **head,
            command_id=int(k["command_id"][0]),
            kind=_kind_name(int(k["kind"][0])),
            status=P.AckStatus(int(k["status"][0])).name.lower(),
            detail=int(k["detail"][0]),
        )
    else:
        c = b["commands"]
        obj = Command(
            **head, command_id=int(c["command_id"][0]), kind=_kind_name(int(c["kind"][0])),
            arg=int(c["arg"][0]),
        )
    return msgspec.json.encode(obj)


def _flag_names(flags: int) -> list[str | int]:
    names: list[str | int] = [name for name, bit in _FLAGS.items() if flags & bit]
    unnamed = flags & ~sum(_FLAGS.values())
    return names + [unnamed] if unnamed else names


def _kind_name(kind: int) -> str | int:
    try:
        return P.CommandKind(kind).name.lower()
    except ValueError:
        return kind


class JsonFrameDecoder:
    """Feeds JSON documents into a binary :class:`~vitalcore.codec.FrameDecoder`.

    Parameters
    ----------
    decoder : FrameDecoder, optional
        Where the frames go (and where rejects are counted); a new one by default.
        Binary and JSON traffic may share one decoder.
    """

    def __init__(self, decoder: codec.FrameDecoder | None = None) -> None:
        self.decoder = decoder if decoder is not None else codec.FrameDecoder()
        #: Message of the most recent reject; it may quote the offending value, so treat
        #: it as patient data (do not log it where patient data must not go).
        self.last_error = ""

    def feed(self, document: bytes | str, device_id: int = 0) -> int:
        """Decode one JSON document; return how many of its frames were accepted."""
        try:
            parsed = parse(document)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            data = document.encode() if isinstance(document, str) else bytes(document)
            self.decoder.count_reject(P.RejectReason.BAD_JSON, data, device_id)
            self.last_error = str(exc)
            return 0
        accepted = 0
        for frame in parsed if isinstance(parsed, list) else [parsed]:
            try:
                binary = to_binary(frame)
            except UsageError as exc:
                device = frame.device if frame.device < 2**64 else 0
                self.decoder.count_reject(
                    P.RejectReason.VALUE_RANGE, msgspec.json.encode(frame), device
                )
                self.last_error = str(exc)
                continue
            accepted += self.decoder.feed(binary, device_id)
        return accepted

    def take(self):
        """The pending batch of the underlying decoder (see FrameDecoder.take)."""
        return self.decoder.take()
