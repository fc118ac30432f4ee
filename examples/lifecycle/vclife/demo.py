"""A demo hospital for the lifecycle app: organisation, fleet, hours of telemetry.

:func:`build_demo` creates, on a fresh clinical store: a hospital with two wards, six
terminals (registered in the clinical registry and the fleet), models with the contract
limits, users (``biomed`` biomedical engineer, ``nurse`` ward nurse; password
``<user>-pw``), and then simulates device time: patients admitted, transferred and
discharged (usage by ward), one terminal through cleaning and its function check, a
battery crossing its warning, a lead wire over its limit, a counter reset, a battery
moved between terminals and an unknown device. Everything the pages show comes from
STATUS frames of :class:`vitalcore.simulator.VirtualWearable` terminals.
"""

from __future__ import annotations

from pathlib import Path

from vitalcore import protocol as P
from vitalcore.clinical import ClinicalStore, Resource, Role, open_store
from vitalcore.fleet import FleetTracker, open_fleet
from vitalcore.simulator import Accessory, VirtualWearable
from vitalcore.storage import Store

from .feeder import SimulatedFleet

__all__ = ["build_demo", "T0", "DEVICES", "Demo"]

T0 = 1_764_547_200_000_000  # 2025-12-01T00:00Z, µs
H = 3600
H_US = 3_600_000_000
DEVICES = tuple(range(0x2001, 0x2007))
K = P.AccessoryKind


class Demo:
    """What :func:`build_demo` made."""

    def __init__(self, store: ClinicalStore, tracker: FleetTracker, frames: Store,
                 fleet: SimulatedFleet) -> None:
        self.store, self.tracker, self.frames, self.fleet = store, tracker, frames, fleet

    def close(self) -> None:
        self.fleet.close()
        self.frames.close()
        self.store.close()


def _wearable(dev: int, start_us: int, terminal_h: float, acc: list[tuple[int, str, float]]):
    return VirtualWearable(dev, start_us, signal_s=4, powered_s=int(terminal_h * H),
                           accessories=[Accessory(k, s, int(h * H)) for k, s, h in acc])


def build_demo(db: str, data_dir: str | Path, *, log2_n: int | None = 10,
               hours: int = 6, stretch_min: int = 15) -> Demo:
    """Build the demo on clinical store ``db`` (a new one) with frames under ``data_dir``.

    ``hours`` (>= 2) of device time from :data:`T0`: STATUS frames of the simulated
    terminals for four stretches of ``stretch_min`` minutes, the time between skipped
    (:meth:`SimulatedFleet.fast_forward`).
    """
    if hours < 2:
        raise ValueError("the demo needs at least 2 hours of device time")
    t = T0
    store = open_store(db, log2_n=log2_n, clock=lambda: fleet.now_us if fleet else T0)
    fleet: SimulatedFleet | None = None
    root = "root"
    store.bootstrap_administrator(root, "root-pw", at_us=t)
    store.create_hospital(root, "H1", "City General", at_us=t)
    store.create_campus(root, "C1", "H1", "Main", at_us=t)
    for ward, name in (("CARD", "Cardiology"), ("SURG", "Surgery")):
        store.create_ward(root, ward, "C1", name, at_us=t)
    for user, role, scope in (("biomed", Role.BIOMEDICAL_ENGINEER, Resource.everything()),
                              ("nurse", Role.WARD_NURSE, Resource.ward("CARD"))):
        store.create_user(root, user, f"{user}-pw", at_us=t)
        store.grant_role(root, user, role, scope, at_us=t)
    tracker = open_fleet(store)
    tracker.define_model("biomed", "VW-200", "terminal", 17_520, warn_h=720, at_us=t)
    tracker.define_model("biomed", "LW-5", "lead_wire", 4_380, at_us=t)
    tracker.define_model("biomed", "LI-3000", "battery", 4_380, warn_h=200, life_days=1095,
                         at_us=t)
    tracker.define_model("biomed", "SD-32", "storage_card", 8_760, at_us=t)
    for i, dev in enumerate(DEVICES):
        store.register_device(root, dev, "VW-200", "H1", at_us=t)
        store.record_function_check("biomed", dev, True, "SIM-REF-1", at_us=t + 1)
        tracker.register_asset("biomed", "terminal", f"VW-{i + 1:04d}", device_id=dev,
                               commissioned_us=T0 - (400 + 150 * i) * 86_400 * 1_000_000,
                               at_us=t + 2)
    plan = {  # terminal hours, accessories (kind, serial, hours)
        DEVICES[0]: (16_900.0, [(K.LEAD_WIRE, "LW-1001", 1200.0), (K.BATTERY, "BAT-1001", 4175.0),
                                (K.STORAGE_CARD, "SD-1001", 300.0)]),
        DEVICES[1]: (9_800.0, [(K.LEAD_WIRE, "LW-1002", 4378.0), (K.BATTERY, "BAT-1002", 900.0)]),
        DEVICES[2]: (3_100.0, [(K.LEAD_WIRE, "LW-1003", 2100.0), (K.BATTERY, "BAT-1003", 2500.0),
                               (K.COMMS_MODULE, "CM-1003", 3100.0)]),
        DEVICES[3]: (12_400.0, [(K.LEAD_WIRE, "LW-1004", 300.0), (K.BATTERY, "BAT-1004", 3000.0),
                                (K.SCREEN, "SCR-1004", 12_400.0)]),
        DEVICES[4]: (700.0, [(K.LEAD_WIRE, "LW-1005", 650.0), (K.BATTERY, "BAT-1005", 60.0)]),
        DEVICES[5]: (17_300.0, [(K.LEAD_WIRE, "LW-1006", 4000.0), (K.BATTERY, "BAT-1006", 1800.0)]),
    }
    for _, acc in plan.values():
        for kind, serial, _h in acc:
            if kind in (K.LEAD_WIRE, K.BATTERY, K.STORAGE_CARD):
                model = {K.LEAD_WIRE: "LW-5", K.BATTERY: "LI-3000", K.STORAGE_CARD: "SD-32"}[kind]
                tracker.register_asset("biomed", kind.name.lower(), serial, model=model,
                                       hospital_id="H1", at_us=t + 3)
    wearables = [_wearable(dev, T0, th, acc) for dev, (th, acc) in plan.items()]
    stranger = _wearable(0x9999, T0, 50.0, [(K.BATTERY, "BAT-X17", 10.0)])
    data_dir = Path(data_dir)
    frames = Store(data_dir / "frames", flush_interval_s=0, sync="none")
    fleet = SimulatedFleet(tracker, frames, [*wearables, stranger])
    store.admit("nurse", "P-100", "CARD", devices=[DEVICES[0]], display_name="A. Patient",
                at_us=t + 10)
    store.admit("nurse", "P-101", "CARD", devices=[DEVICES[1]], display_name="B. Patient",
                at_us=t + 10)
    store.grant_role(root, "nurse", Role.WARD_NURSE, Resource.ward("SURG"), at_us=t + 11)
    store.admit("nurse", "P-102", "SURG", devices=[DEVICES[2]], display_name="C. Patient",
                at_us=t + 12)
    # device time: frames for the first and last stretch of each half, the rest
    # skipped (the counters advance; the next STATUS frame credits the jump)
    if not 1 <= stretch_min <= 30:
        raise ValueError("stretch_min must be within 1..30")
    quarter = stretch_min * 60_000_000
    half = T0 + hours * H_US // 2
    fleet.advance_to(T0 + quarter)
    fleet.fast_forward(half - quarter)
    fleet.advance_to(half)
    store.transfer("nurse", "P-101", "SURG", at_us=fleet.now_us)
    store.discharge("nurse", "P-100", at_us=fleet.now_us)
    store.record_cleaning("biomed", DEVICES[0], note="wiped, UV", at_us=fleet.now_us + 600_000_000)
    store.record_function_check("biomed", DEVICES[0], True, "SIM-REF-1",
                                at_us=fleet.now_us + 1_200_000_000)
    # BAT-1002 moves to terminal 5 after 30 min on the charger; terminal 5 reboots with a
    # wiped counter (a firmware update): both in the history the pages show
    w1, w4 = fleet.wearables[DEVICES[1]], fleet.wearables[DEVICES[4]]
    elapsed = (fleet.now_us - w1.start_us) // 1_000_000
    bat = next(a for a in w1.accessories if a.serial == "BAT-1002")
    lw1 = next(a for a in w1.accessories if a.serial == "LW-1002")
    lw4 = next(a for a in w4.accessories if a.serial == "LW-1005")
    resume = fleet.now_us + 1_800_000_000
    fleet.replace(_wearable(DEVICES[1], resume, (w1.powered_s + elapsed) / H,
                            [(K.LEAD_WIRE, "LW-1002", (lw1.powered_s + elapsed) / H)]))
    fleet.replace(_wearable(DEVICES[4], resume, 0.0,
                            [(K.LEAD_WIRE, "LW-1005", (lw4.powered_s + elapsed) / H),
                             (K.BATTERY, "BAT-1002", (bat.powered_s + elapsed) / H)]))
    fleet.fast_forward(resume)
    fleet.advance_to(resume + quarter)
    fleet.fast_forward(T0 + hours * H_US - quarter)
    fleet.advance_to(T0 + hours * H_US)
    return Demo(store, tracker, frames, fleet)
