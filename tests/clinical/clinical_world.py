"""A small organisation for the clinical tests: two hospitals, wards, beds, staff, devices."""

from __future__ import annotations

from vitalcore.clinical import ClinicalStore, Resource, Role

LOG2_N = 10  # cheap scrypt for tests; the default cost is 2**14
T0 = 1_764_115_200_000_000  # 2025-11-26T00:00Z, µs
MIN = 60_000_000  # one minute, µs

#: user → (role, scope) granted by :func:`build_world` (all passwords ``<user>-pw``)
STAFF = {
    "nurse1": (Role.WARD_NURSE, Resource.ward("W1")),
    "nurse2": (Role.WARD_NURSE, Resource.ward("W2")),
    "nurse3": (Role.WARD_NURSE, Resource.ward("W3")),
    "doctor1": (Role.WARD_DOCTOR, Resource.ward("W1")),
    "central": (Role.CENTRAL_MONITORING, Resource.hospital("H1")),
    "biomed": (Role.BIOMEDICAL_ENGINEER, Resource.everything()),
    "vendor": (Role.SERVICE_VENDOR, Resource.device_group("G-VENDOR")),
    "admin1": (Role.ADMINISTRATOR, Resource.hospital("H1")),
    "bedmgr": (Role.WARD_NURSE, Resource.hospital("H1")),
}
#: wards: id → (campus, hospital)
WARDS = {"W1": ("C1", "H1"), "W2": ("C1", "H1"), "W3": ("C2", "H2")}
DEVICES = (0x1001, 0x1002, 0x1003, 0x1004, 0x1005, 0x1006)
ROOT = "root"


def build_world(store: ClinicalStore, *, ready: bool = True) -> None:
    """Create the organisation at ``T0``; with ``ready`` every device passes its first
    function check (state ``available``)."""
    t = T0
    store.bootstrap_administrator(ROOT, "root-pw", at_us=t)
    store.create_hospital(ROOT, "H1", "City General", at_us=t)
    store.create_hospital(ROOT, "H2", "County", at_us=t)
    store.create_campus(ROOT, "C1", "H1", "North", at_us=t)
    store.create_campus(ROOT, "C2", "H2", "Main", at_us=t)
    for ward, (campus, _) in WARDS.items():
        store.create_ward(ROOT, ward, campus, f"ward {ward}", at_us=t)
        for n in (1, 2):
            store.create_bed(ROOT, f"{ward}-B{n}", ward, f"bed {n}", at_us=t)
    store.create_device_group(ROOT, "G-VENDOR", "vendor contract", "H1", at_us=t)
    for i, dev in enumerate(DEVICES):
        store.register_device(ROOT, dev, "VC-W1", "H1" if i < 4 else "H2",
                              secret=f"dev-{dev:x}", at_us=t)
    store.set_group_member(ROOT, "G-VENDOR", DEVICES[0], at_us=t)
    for user, (role, scope) in STAFF.items():
        store.create_user(ROOT, user, f"{user}-pw", at_us=t)
        store.grant_role(ROOT, user, role, scope, at_us=t)
    if ready:
        for dev in DEVICES:
            store.record_function_check("biomed", dev, True, "REF-SIM-7", at_us=t + 1)
