"""A small organisation and service desk for the service tests.

Built on the clinical tests' world (two hospitals, wards W1-W3, staff, six devices):
adds a vendor company ``ACME`` with user ``acme.tech`` and a second vendor user, and a
ServiceDesk on a :class:`~vitalcore.clinical.FakeClock` with a recording notifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinical_world import DEVICES, LOG2_N, MIN, ROOT, T0
from clinical_world import build_world as build_clinical

from vitalcore.clinical import ClinicalStore, FakeClock, open_store
from vitalcore.service import CallbackNotifier, DeskConfig, Notice, ServiceDesk

__all__ = ["World", "build_world", "T0", "MIN", "DEVICES", "ROOT", "PNG", "JPEG"]

#: a 1x1 PNG and a minimal JPEG header, enough for the magic-byte check
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00"
       b"\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\x00\x05\x00\x01"
       b"\xff\x89\x99=\x1d\x00\x00\x00\x00IEND\xaeB`\x82")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)


@dataclass
class World:
    store: ClinicalStore
    desk: ServiceDesk
    clock: FakeClock
    notices: list[Notice] = field(default_factory=list)
    fail_notify: bool = False

    def close(self) -> None:
        self.store.close()

    def kinds(self, kind: str) -> list[Notice]:
        return [n for n in self.notices if n.kind == kind]


def build_world(target: str, *, config: DeskConfig | None = None) -> World:
    clock = FakeClock(T0 + 10 * MIN)
    store = open_store(target, log2_n=LOG2_N, clock=clock.now_us)
    build_clinical(store)
    for user in ("acme.tech", "acme.boss", "other.tech"):
        store.create_user(ROOT, user, f"{user}-pw", at_us=T0)
    box: list[World] = []

    def record(n: Notice) -> None:
        if box[0].fail_notify:
            raise ConnectionError("pager gateway down")
        box[0].notices.append(n)

    desk = ServiceDesk(store.db, clock=clock, notifier=CallbackNotifier(record), config=config)
    w = World(store, desk, clock)
    box.append(w)
    desk.invite_vendor(ROOT, "ACME", "Acme Medical Service", "hotline +1 555 0100",
                       ["acme.tech", "acme.boss"], at_us=T0)
    desk.invite_vendor(ROOT, "OTHER", "Other Service Co", "other@example.com",
                       ["other.tech"], at_us=T0)
    return w
