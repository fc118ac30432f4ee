"""The demo organisation: one hospital, K wards, a bed and a patient per device, users.

Everything goes through :class:`vitalcore.clinical.ClinicalStore`'s audited operations,
as a real deployment would: the administrator (bootstrapped) creates the organisation
and the users and grants roles; a biomedical engineer registers the simulated devices
and records their function checks; each ward's nurse admits the ward's patients with
their device; a doctor sends one patient into transport (monitoring goes on).

Passwords are random (``secrets.token_urlsafe``), generated now, never hard-coded; the
plain ones are written once to ``dashboard-users.json`` (mode 0600) for the operator.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from vitalcore.clinical import ClinicalStore, Resource, Role

__all__ = ["DemoHospital", "build_hospital", "USERS_FILE"]

USERS_FILE = "dashboard-users.json"
HOSPITAL = "h1"
CAMPUS = "h1-main"


@dataclass
class DemoHospital:
    """What :func:`build_hospital` created (ids as in the clinical store)."""

    wards: list[str]
    ward_names: dict[str, str]
    patients: dict[str, int]  # patient id -> its device id
    transport: list[str]  # patients sent into transport
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (role, scope)
    passwords: dict[str, str] = field(default_factory=dict, repr=False)


def _password() -> str:
    return secrets.token_urlsafe(12)


def build_hospital(store: ClinicalStore, device_ids: list[int], wards: int = 2, *,
                   transport: int = 1) -> DemoHospital:
    """Create the demo organisation in an empty clinical store (see module docstring).

    Devices are dealt to the wards in blocks (ward 1 gets the first ``ceil(n/K)``).
    The last ``transport`` patients of the last ward leave it in transport towards the
    first ward.
    """
    n = len(device_ids)
    wards = max(1, min(wards, n))
    pw = {name: _password() for name in ("admin", "biomed", "central", "doctor")}
    store.bootstrap_administrator("admin", pw["admin"])
    store.create_hospital("admin", HOSPITAL, "General Hospital")
    store.create_campus("admin", CAMPUS, HOSPITAL, "Main campus")
    out = DemoHospital([], {}, {}, [])
    per = -(-n // wards)
    for k in range(wards):
        wid = f"w{k + 1}"
        name = f"Ward {k + 1} ({['Cardiology', 'Step-down', 'Surgery', 'Medicine'][k % 4]})"
        store.create_ward("admin", wid, CAMPUS, name)
        out.wards.append(wid)
        out.ward_names[wid] = name
        pw[f"nurse-{wid}"] = _password()
    for user, role, scope in (
            [("biomed", Role.BIOMEDICAL_ENGINEER, Resource.hospital(HOSPITAL)),
             ("central", Role.CENTRAL_MONITORING, Resource.hospital(HOSPITAL)),
             ("doctor", Role.WARD_DOCTOR, Resource.hospital(HOSPITAL))]
            + [(f"nurse-{w}", Role.WARD_NURSE, Resource.ward(w)) for w in out.wards]):
        store.create_user("admin", user, pw[user], display_name=user)
        store.grant_role("admin", user, role, scope)
        out.users[user] = (role.value, str(scope))
    out.users["admin"] = (Role.ADMINISTRATOR.value, "global")
    for i, dev in enumerate(device_ids):
        store.register_device("biomed", dev, "VC-W1 wearable", HOSPITAL)
        store.record_function_check("biomed", dev, True, "SIM-REF-1")
        wid = out.wards[i // per]
        bed = f"{wid}-b{i % per + 1:02d}"
        store.create_bed("admin", bed, wid, f"Bed {i % per + 1}")
        pid = f"p{i + 1:04d}"
        store.admit(f"nurse-{wid}", pid, wid, bed, devices=[dev],
                    display_name=f"Patient {i + 1:04d}")
        out.patients[pid] = dev
    moving = list(out.patients)[-transport:] if transport and n > 1 else []
    for pid in moving:
        store.start_transport("doctor", pid, to_ward_id=out.wards[0])
        out.transport.append(pid)
    out.passwords = pw
    return out


def save_users(path: str | os.PathLike[str], hospital: DemoHospital, url: str) -> None:
    """Write the demo users' plain passwords (mode 0600, atomically)."""
    path = Path(path)
    doc = {"version": 1, "url": url,
           "users": {u: {"password": hospital.passwords[u], "role": r, "scope": s}
                     for u, (r, s) in sorted(hospital.users.items())}}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
