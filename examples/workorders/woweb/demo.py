"""A demo hospital for the work-order app: wards, staff, devices, a vendor, and orders in
every state (one escalated, one from telemetry, one with the vendor, one with a photo).

Passwords are ``<user>-pw``; this is demo data, never a deployment.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable

from vitalcore.clinical import ClinicalStore, Resource, Role, open_store
from vitalcore.service import CallbackNotifier, OrderRequest, ServiceDesk, VendorScope

__all__ = ["USERS", "seed", "demo_png", "pager"]

log = logging.getLogger("woweb.pager")


def pager() -> CallbackNotifier:
    """The demo's notification channel: logs each notice (a real one pages or publishes
    on MQTT: :class:`vitalcore.service.MqttNotifier`)."""
    return CallbackNotifier(lambda n: log.info("%s → %s: %s", n.kind, ", ".join(n.targets),
                                               n.text))

MIN = 60_000_000
DAY = 1440 * MIN
#: user → (role, scope)
USERS = {
    "nurse.li": (Role.WARD_NURSE, Resource.ward("W1")),
    "nurse.ma": (Role.WARD_NURSE, Resource.ward("W2")),
    "biomed.wu": (Role.BIOMEDICAL_ENGINEER, Resource.everything()),
    "acme.tech": None,  # acts for the vendor ACME (grants come with its device associations)
}
DEVICES = tuple(range(0x1001, 0x1009))


def demo_png(w: int = 48, h: int = 32) -> bytes:
    """A small PNG (a red bar on grey): a stand-in for a photo of a cracked screen."""
    rows = b"".join(b"\0" + b"".join(b"\xc0\x20\x20" if 10 < y < 20 else b"\xb0\xb0\xb0"
                                     for _ in range(w)) for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def seed(target: str, now_us: int, *, log2_n: int | None = None,
         desk_factory: Callable[[ClinicalStore], ServiceDesk] | None = None
         ) -> tuple[ClinicalStore, ServiceDesk]:
    """Create the demo organisation and orders in the (empty) store at ``target``."""
    store = open_store(target, log2_n=log2_n)
    desk = desk_factory(store) if desk_factory else ServiceDesk(store.db, notifier=pager())
    t0 = now_us - 400 * DAY
    store.bootstrap_administrator("admin", "admin-pw", at_us=t0)
    store.create_hospital("admin", "H1", "City General", at_us=t0)
    store.create_campus("admin", "C1", "H1", "North", at_us=t0)
    for ward, name in (("W1", "Cardiology, 3rd floor"), ("W2", "ICU, 2nd floor")):
        store.create_ward("admin", ward, "C1", name, at_us=t0)
        for n in (1, 2, 3):
            store.create_bed("admin", f"{ward}-B{n}", ward, f"room {ward[1]}0{n}", at_us=t0)
    for dev in DEVICES:
        store.register_device("admin", dev, "VC-W1" if dev < 0x1006 else "VC-W2", "H1",
                              at_us=t0)
    for user, grant in USERS.items():
        store.create_user("admin", user, f"{user}-pw", at_us=t0)
        if grant is not None:
            store.grant_role("admin", user, grant[0], grant[1], at_us=t0)
    for dev in DEVICES:
        store.record_function_check("biomed.wu", dev, True, "REF-SIM-7", at_us=t0 + MIN)
    desk.invite_vendor("admin", "ACME", "Acme Medical Service", "hotline +1 555 0100",
                       ["acme.tech"], at_us=t0)
    desk.associate_device("admin", "ACME", 0x1003, [VendorScope.VIEW_ARCHIVE,
                                                    VendorScope.REPAIR_RECORDS],
                          now_us - 355 * DAY, now_us + 10 * DAY, at_us=now_us - 355 * DAY)
    store.admit("nurse.li", "P-100", "W1", "W1-B2", display_name="demo patient",
                at_us=now_us - 2 * DAY)
    store.bind_device("nurse.li", "P-100", 0x1002, at_us=now_us - 2 * DAY)

    def steps(oid: int, t: int, *names: str) -> None:
        for i, name in enumerate(names, 1):
            at = t + i * 4 * MIN
            if name == "respond":
                desk.respond("biomed.wu", oid, "on my way", at_us=at)
            elif name == "start":
                desk.start_work("biomed.wu", oid, at_us=at)
            elif name == "fixed":
                desk.mark_fixed("biomed.wu", oid, "lead wire replaced", at_us=at)
            elif name == "verify":
                desk.verify("biomed.wu", oid, True, "REF-SIM-7", at_us=at)
            elif name == "sign_off":
                desk.sign_off("nurse.li", oid, "trace fine", at_us=at)
            elif name == "close":
                desk.close("biomed.wu", oid, at_us=at)

    t = now_us - 3 * DAY
    o = desk.create_order("nurse.li", OrderRequest(0x1001, "ECG trace noisy on all leads",
                                                   "nurse Li, ext 3301", ward_id="W1",
                                                   floor="3", room="301"), at_us=t)
    steps(o.order_id, t, "respond", "start", "fixed", "verify", "sign_off", "close")
    t = now_us - 40 * MIN
    desk.create_order("nurse.ma", OrderRequest(
        0x1007, "terminal dead, will not power on; patient on backup monitor",
        "nurse Ma, ext 2207", severity="serious", emergency=True, ward_id="W2", floor="2",
        room="203"), at_us=t)
    t = now_us - 20 * MIN
    auto = desk.open_from_telemetry(0x1002, "leads_off.repeated",
                                    {"alarm": "leads_off", "raised": 5, "within_s": 3600},
                                    at_us=t)
    steps(auto.order.order_id, t, "respond")
    t = now_us - 2 * 60 * MIN
    v = desk.create_order("nurse.li", OrderRequest(0x1003, "NIBP cuff does not inflate",
                                                   "nurse Li, ext 3301", ward_id="W1",
                                                   floor="3", room="303"), at_us=t)
    desk.respond("acme.tech", v.order_id, "engineer booked", at_us=t + 3 * MIN)
    desk.start_work("acme.tech", v.order_id, remote=True, note="diagnosing remotely",
                    at_us=t + 25 * MIN)
    t = now_us - 90 * MIN
    f = desk.create_order("nurse.ma", OrderRequest(0x1006, "SpO2 reads 0 intermittently",
                                                   "nurse Ma, ext 2207", ward_id="W2",
                                                   floor="2", room="202"), at_us=t)
    steps(f.order_id, t, "respond", "start", "fixed")
    desk.create_order("nurse.li", OrderRequest(
        0x1004, "screen cracked after a fall", "nurse Li, ext 3301", severity="minor",
        ward_id="W1", floor="3", room="302", photos=(demo_png(),)), at_us=now_us - 2 * MIN)
    desk.tick(now_us)
    return store, desk
