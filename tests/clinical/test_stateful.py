"""Random sequences of admit / transfer / transport / bind / release / swap / discharge and
reprocessing steps, by users of different scopes, against a model and invariants.

After every step: no device is in two bindings at once and a device's bindings never
overlap over time; a patient's placements never overlap; a patient's spans of one
device never overlap; device states agree with the bindings; the lookups agree with the
model; every operation left exactly one audit record and every device change one
device event. Each step must succeed or fail exactly as the model predicts (bad input:
UsageError; outside scope: AccessDenied), and a failed step changes nothing.
"""

from __future__ import annotations

from clinical_world import DEVICES, LOG2_N, MIN, T0, build_world
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from vitalcore.clinical import DeviceState, open_store
from vitalcore.errors import AccessDenied, UsageError

S = DeviceState
SCOPE = {"nurse1": {"W1"}, "nurse2": {"W2"}, "nurse3": {"W3"}, "bedmgr": {"W1", "W2"}}
ACTORS = st.sampled_from(["bedmgr", "bedmgr", "nurse1", "nurse2", "nurse3"])
PATIENTS = st.sampled_from(["P0", "P1", "P2", "P3"])
WARDS = st.sampled_from(["W1", "W2", "W3", "W-UNKNOWN"])
DEVS = st.sampled_from(DEVICES + (0xDEAD,))  # 0xDEAD is not registered
STEP = st.integers(0, 5 * MIN)
KNOWN_WARDS = {"W1", "W2", "W3"}


class Refused(Exception):
    """The model's prediction of a refusal: ``kind`` is UsageError or AccessDenied."""

    def __init__(self, kind: type[Exception]) -> None:
        self.kind = kind


class CareMachine(RuleBasedStateMachine):
    new_target = None  # set by the test: a factory of fresh store locations

    def __init__(self) -> None:
        super().__init__()
        self.store = open_store(self.new_target(), log2_n=LOG2_N)
        build_world(self.store)
        self.now = T0 + MIN
        self.where: dict[str, tuple[str | None, set[str]]] = {}  # admitted: (ward, visible)
        self.known: set[str] = set()
        self.bound: dict[int, str] = {}
        self.state = {d: S.AVAILABLE for d in DEVICES}
        self.last_p: dict[str, int] = {}
        self.audits = self._count("audit")
        self.events = self._count("device_events")

    def teardown(self) -> None:
        self.store.close()

    def _count(self, table: str) -> int:
        with self.store.db.transaction(write=False) as tx:
            return tx.scalar(f"SELECT COUNT(*) FROM {table}")

    # -- the model's checks, in the order the store makes them ----------------------------
    def _admitted(self, pid: str) -> None:
        if pid not in self.where:
            raise Refused(UsageError)

    def _may_patient(self, actor: str, pid: str) -> None:
        if not self.where[pid][1] & SCOPE[actor]:
            raise Refused(AccessDenied)

    def _may_ward(self, actor: str, ward: str) -> None:
        if ward not in KNOWN_WARDS:
            raise Refused(UsageError)
        if ward not in SCOPE[actor]:
            raise Refused(AccessDenied)

    def _available(self, dev: int) -> None:
        if self.state.get(dev) is not S.AVAILABLE:
            raise Refused(UsageError)

    def _attempt(self, dt: int, call, predict, apply, device_changes: int = 0,
                 audited: bool = True) -> None:
        """Run ``call`` at now + dt; it must do what ``predict`` says (raise Refused or
        not); on success ``apply`` updates the model."""
        self.now += dt
        try:
            predict()
        except Refused as refusal:
            expected = refusal.kind
        else:
            expected = None
        try:
            call(self.now)
        except (UsageError, AccessDenied) as exc:
            assert expected is not None, f"refused unexpectedly: {exc!r}"
            assert type(exc) is expected, f"expected {expected.__name__}, got {exc!r}"
        else:
            assert expected is None, f"accepted, but the model expected {expected.__name__}"
            apply()
            self.events += device_changes
        self.audits += int(audited)

    @staticmethod
    def _pick(data, relevant, anything):
        """Mostly a target the model says is relevant, else anything (hostile input)."""
        relevant = sorted(relevant)
        if relevant and data.draw(st.integers(0, 3)) != 3:  # 0, the simplest: relevant
            return data.draw(st.sampled_from(relevant))
        return data.draw(anything)

    def _actor(self, data, pid=None, ward=None):
        """Mostly a user whose scope covers the patient (or ward), else anyone."""
        wards = self.where[pid][1] if pid in self.where else {ward}
        return self._pick(data, [a for a, w in SCOPE.items() if w & wards], ACTORS)

    def _available_devices(self):
        return [d for d, x in self.state.items() if x is S.AVAILABLE]

    def _device(self, data, relevant):
        """Mostly one of ``relevant``, else a near miss: any other device (or unknown)."""
        others = sorted(set(DEVICES + (0xDEAD,)) - set(relevant))
        return self._pick(data, relevant, st.sampled_from(others))

    def _touch(self, pid: str) -> None:
        self.last_p[pid] = self.now

    def _release_model(self, dev: int) -> None:
        del self.bound[dev]
        self.state[dev] = S.TO_CLEAN

    # -- rules --------------------------------------------------------------------------
    @initialize()
    def two_patients(self):
        for pid, ward, dev in (("P0", "W1", DEVICES[0]), ("P1", "W2", DEVICES[1])):
            self.now += MIN
            self.store.admit("bedmgr", pid, ward, devices=[dev], at_us=self.now)
            self.where[pid] = (ward, {ward})
            self.known.add(pid)
            self._touch(pid)
            self.bound[dev] = pid
            self.state[dev] = S.IN_USE
        self.audits += 2
        self.events += 2

    @rule(dt=STEP, data=st.data())
    def admit(self, dt, data):
        pid = self._pick(data, {"P0", "P1", "P2", "P3"} - set(self.where), PATIENTS)
        ward = data.draw(WARDS)
        actor = self._actor(data, ward=ward)
        devs = [self._device(data, self._available_devices())
                for _ in range(data.draw(st.integers(0, 2)))]
        def predict():
            self._may_ward(actor, ward)
            if pid in self.where:
                raise Refused(UsageError)
            for i, d in enumerate(devs):
                if d in devs[:i]:
                    raise Refused(UsageError)
                self._available(d)

        def apply():
            self.where[pid] = (ward, {ward})
            self.known.add(pid)
            self._touch(pid)
            for d in devs:
                self.bound[d] = pid
                self.state[d] = S.IN_USE

        self._attempt(dt, lambda t: self.store.admit(actor, pid, ward, devices=devs, at_us=t),
                      predict, apply, len(devs))

    @rule(dt=STEP, data=st.data(), ward=WARDS)
    def transfer(self, dt, data, ward):
        pid = self._pick(data, self.where, PATIENTS)
        actor = self._actor(data, pid)

        def predict():
            self._admitted(pid)
            self._may_patient(actor, pid)
            self._may_ward(actor, ward)

        def apply():
            self.where[pid] = (ward, {ward})
            self._touch(pid)

        self._attempt(dt, lambda t: self.store.transfer(actor, pid, ward, at_us=t),
                      predict, apply)

    @rule(dt=STEP, data=st.data(), to=st.none() | WARDS)
    def start_transport(self, dt, data, to):
        pid = self._pick(data, self.where, PATIENTS)
        actor = self._actor(data, pid)
        actor = self._actor(data, pid)

        def predict():
            self._admitted(pid)
            if self.where[pid][0] is None:
                raise Refused(UsageError)
            self._may_patient(actor, pid)
            if to is not None:
                self._may_ward(actor, to)

        def apply():
            self.where[pid] = (None, {self.where[pid][0]} | ({to} if to else set()))
            self._touch(pid)

        self._attempt(dt, lambda t: self.store.start_transport(actor, pid, to, at_us=t),
                      predict, apply)

    @rule(dt=STEP, data=st.data())
    def bind(self, dt, data):
        pid = self._pick(data, self.where, PATIENTS)
        actor = self._actor(data, pid)
        dev = self._device(data, self._available_devices())

        def predict():
            self._admitted(pid)
            self._may_patient(actor, pid)
            self._available(dev)

        def apply():
            self.bound[dev] = pid
            self.state[dev] = S.IN_USE
            self._touch(pid)

        self._attempt(dt, lambda t: self.store.bind_device(actor, pid, dev, at_us=t),
                      predict, apply, 1)

    @rule(dt=STEP, data=st.data())
    def release(self, dt, data):
        dev = self._device(data, self.bound)
        pid = self._pick(data, {self.bound[dev]} if dev in self.bound else (), PATIENTS)
        actor = self._actor(data, pid)

        def predict():
            self._admitted(pid)
            self._may_patient(actor, pid)
            if self.bound.get(dev) != pid:
                raise Refused(UsageError)

        def apply():
            self._release_model(dev)
            self._touch(pid)

        self._attempt(dt, lambda t: self.store.release_device(actor, pid, dev, at_us=t),
                      predict, apply, 1)

    @rule(dt=STEP, data=st.data())
    def swap(self, dt, data):
        old = self._device(data, self.bound)
        pid = self._pick(data, {self.bound[old]} if old in self.bound else (), PATIENTS)
        actor = self._actor(data, pid)
        new = self._device(data, self._available_devices())

        def predict():
            if old == new:
                raise Refused(UsageError)
            self._admitted(pid)
            self._may_patient(actor, pid)
            if self.bound.get(old) != pid:
                raise Refused(UsageError)
            self._available(new)

        def apply():
            self._release_model(old)
            self.bound[new] = pid
            self.state[new] = S.IN_USE
            self._touch(pid)

        self._attempt(dt, lambda t: self.store.swap_device(actor, pid, old, new, at_us=t),
                      predict, apply, 2, audited=old != new)

    @rule(dt=STEP, data=st.data())
    def discharge(self, dt, data):
        pid = self._pick(data, self.where, PATIENTS)
        actor = self._actor(data, pid)
        mine = sorted(d for d, p in self.bound.items() if p == pid)

        def predict():
            self._admitted(pid)
            self._may_patient(actor, pid)

        def apply():
            for d in mine:
                self._release_model(d)
            del self.where[pid]
            self._touch(pid)

        self._attempt(dt, lambda t: self.store.discharge(actor, pid, at_us=t),
                      predict, apply, len(mine))

    @rule(dt=STEP, data=st.data())
    def reprocess(self, dt, data):
        dev = self._pick(data, [d for d, x in self.state.items()
                                if x not in (S.AVAILABLE, S.IN_USE)], DEVS)
        fitting = {S.TO_CLEAN: ["clean"], S.TO_CHECK: ["pass", "fail"],
                   S.OUT_OF_SERVICE: ["repair"]}.get(self.state.get(dev), [])
        step = self._pick(data, fitting, st.sampled_from(["clean", "pass", "fail", "repair"]))
        before, after = {"clean": (S.TO_CLEAN, S.TO_CHECK), "pass": (S.TO_CHECK, S.AVAILABLE),
                         "fail": (S.TO_CHECK, S.OUT_OF_SERVICE),
                         "repair": (S.OUT_OF_SERVICE, S.TO_CLEAN)}[step]

        def call(t):
            if step == "clean":
                self.store.record_cleaning("biomed", dev, at_us=t)
            elif step == "repair":
                self.store.record_repair("biomed", dev, "replaced cable", at_us=t)
            else:
                self.store.record_function_check("biomed", dev, step == "pass", "REF-1", at_us=t)

        def predict():
            if self.state.get(dev) is not before:
                raise Refused(UsageError)

        def apply():
            self.state[dev] = after

        self._attempt(dt, call, predict, apply, 1)

    @precondition(lambda self: bool(self.last_p))
    @rule(data=st.data())
    def backdated_event_is_refused(self, data):
        pid = data.draw(st.sampled_from(sorted(self.last_p)))
        t = self.last_p[pid] - 1
        with_msg = self._count("placements")
        try:
            self.store.transfer("bedmgr", pid, "W1", at_us=t)
        except UsageError:
            pass
        else:
            raise AssertionError("an event before the patient's last one was accepted")
        assert self._count("placements") == with_msg
        self.audits += 1

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def histories_never_overlap(self):
        with self.store.db.transaction(write=False) as tx:
            for table, key in (("bindings", "device_id"), ("placements", "patient_id")):
                rows = tx.all(f"SELECT {key}, start_us, end_us FROM {table} "
                              f"ORDER BY {key}, start_us, id")
                for (k0, _, e0), (k1, s1, _) in zip(rows, rows[1:], strict=False):
                    if k0 == k1:
                        assert e0 is not None and e0 <= s1, (table, k0)
            open_b = tx.all("SELECT device_id, patient_id FROM bindings WHERE end_us IS NULL")
            admitted = {p for (p,) in tx.all("SELECT patient_id FROM placements "
                                             "WHERE end_us IS NULL")}
        assert len({d for d, _ in open_b}) == len(open_b)
        assert {int(d, 16): p for d, p in open_b} == self.bound
        assert admitted == set(self.where)

    @invariant()
    def spans_of_a_patient_never_overlap(self):
        for pid in self.known:
            spans = self.store.device_spans(pid, 0, self.now + 1)
            per_device: dict[int, list] = {}
            for s in spans:
                assert s.patient_id == pid and (s.end_us is None or s.end_us > s.start_us)
                per_device.setdefault(s.device_id, []).append(s)
            for same in per_device.values():
                for a, b in zip(same, same[1:], strict=False):
                    assert a.end_us is not None and a.end_us <= b.start_us

    @invariant()
    def lookups_and_states_agree_with_the_model(self):
        for d in DEVICES:
            assert self.store.device(d).state is self.state[d], hex(d)
            assert self.store.patient_of(d, self.now) == self.bound.get(d)
        for w in KNOWN_WARDS:
            expect = sorted(d for d, p in self.bound.items() if self.where[p][0] == w)
            assert self.store.devices_of_ward(w, self.now) == expect

    @invariant()
    def every_step_is_recorded(self):
        assert self._count("audit") == self.audits
        assert self._count("device_events") == self.events


def test_random_care_sequences_keep_the_invariants(backend):
    CareMachine.new_target = staticmethod(backend)
    run_state_machine_as_test(CareMachine, settings=settings(
        max_examples=15, stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
