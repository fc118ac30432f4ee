"""Hostile topic filters against the ACL functions (hypothesis).

Whatever filter a client sends (wildcards anywhere, ``$share`` prefixes, ``$SYS``, empty
levels, device ids and ward names in odd places), a filter the ACL grants never matches
a topic outside the principal's scope, and a topic it lets a principal publish to is
one it may publish to. The scope is a stand-in with fixed answers, so every topic a
granted filter could match is checked against the ground truth.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.mqtt.topics import split_shared, topic_matches
from vitalcore.server.auth import Principal, may_publish, may_subscribe
from vitalcore.server.topics import device_name

OWN, OTHER = 0x1001, 0x1005
OWN_WARD, OTHER_WARD = "W1", "W3"


class Scope:
    """Reads and commands only OWN, reads the alarms of OWN_WARD only."""

    def may_read(self, device_id: int) -> bool:
        return device_id == OWN

    def may_command(self, device_id: int) -> bool:
        return device_id == OWN

    def may_read_ward(self, ward_id: str) -> bool:
        return ward_id == OWN_WARD


CLINICAL = Principal("nurse", role="viewer", scope=Scope())
DEVICE = Principal(device_name(OWN), device_id=OWN)
FILE_VIEWER = Principal("integ", role="viewer", grants=("vc/v1/dev/+/up",))

TOPICS = [f"vc/v1/dev/{device_name(d)}/{tail}" for d in (OWN, OTHER, 0x7)
          for tail in ("up", "up/json", "cmd", "x", "up/json/x")]
TOPICS += [f"vc/v1/alarms/{w}/{device_name(d)}/event" for w in (OWN_WARD, OTHER_WARD,
                                                                "_unassigned", "_system")
           for d in (OWN, OTHER)]
TOPICS += ["$SYS/broker/clients", "vc/v1/dev", "vc/v1/alarms", "vc/v1/other", "x", "vc"]


def readable(principal: Principal, topic: str) -> bool:
    """Ground truth: may this principal receive ``topic``?"""
    if principal is CLINICAL:
        return (topic.startswith(f"vc/v1/dev/{device_name(OWN)}/")
                or topic.startswith(f"vc/v1/alarms/{OWN_WARD}/"))
    if principal is DEVICE:
        return topic == f"vc/v1/dev/{device_name(OWN)}/cmd"
    return topic_matches("vc/v1/dev/+/up", topic)


LEVELS = st.sampled_from(["vc", "v1", "dev", "alarms", device_name(OWN), device_name(OTHER),
                          OWN_WARD, OTHER_WARD, "_unassigned", "up", "json", "cmd", "event",
                          "+", "#", "$SYS", "", "x", "W1 ", "w1"])
FILTERS = st.builds(lambda share, levels: share + "/".join(levels),
                    st.sampled_from(["", "", "$share/g/", "$share//", "$share/g"]),
                    st.lists(LEVELS, min_size=1, max_size=7))


@settings(max_examples=600, deadline=None)
@given(flt=FILTERS, who=st.sampled_from([CLINICAL, DEVICE, FILE_VIEWER]))
def test_a_granted_filter_matches_nothing_out_of_scope(flt, who):
    if not may_subscribe(who, flt):
        return
    _, inner = split_shared(flt)
    leaks = [t for t in TOPICS if topic_matches(inner, t) and not readable(who, t)]
    assert not leaks, f"{who.name} granted {flt!r}, which matches {leaks}"


@settings(max_examples=600, deadline=None)
@given(topic=FILTERS, who=st.sampled_from([CLINICAL, DEVICE, FILE_VIEWER]))
def test_publish_only_where_allowed(topic, who):
    if not may_publish(who, topic):
        return
    if who is DEVICE:
        assert topic in (f"vc/v1/dev/{device_name(OWN)}/up",
                         f"vc/v1/dev/{device_name(OWN)}/up/json"), topic
    else:
        assert who is CLINICAL and topic == f"vc/v1/dev/{device_name(OWN)}/cmd", topic


def test_the_generator_reaches_the_grants():
    """The strategy can produce what is granted (else the properties prove little)."""
    own = device_name(OWN)
    for flt in (f"vc/v1/dev/{own}/#", f"$share/g/vc/v1/dev/{own}/up",
                f"vc/v1/alarms/{OWN_WARD}/+/event", f"vc/v1/alarms/{OWN_WARD}/#"):
        assert may_subscribe(CLINICAL, flt), flt
    assert may_subscribe(DEVICE, f"vc/v1/dev/{own}/cmd")
    assert may_subscribe(FILE_VIEWER, "vc/v1/dev/+/up")
