"""Topic names, filters, matching (§4.7) and the broker's SubscriptionTree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalcore.errors import UsageError
from vitalcore.mqtt import SubscriptionTree, topic_filter_error, topic_matches, topic_name_error
from vitalcore.mqtt.topics import split_shared

# (filter, topic, matches) from the examples of §4.7.1.2, §4.7.1.3 and §4.7.2
SPEC_EXAMPLES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/monitor/Clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("vc/v1/dev/+/up", "vc/v1/dev/000012ab/up", True),
    ("vc/v1/dev/+/up", "vc/v1/dev/000012ab/cmd", False),
    ("a/b", "a/b/c", False),
    ("a/b/c", "a/b", False),
    ("$share/g/vc/#", "vc/x", True),
    ("$share/g/#", "$SYS/x", False),
]


@pytest.mark.parametrize("flt, topic, want", SPEC_EXAMPLES)
def test_4_7_spec_examples(flt, topic, want):
    assert topic_matches(flt, topic) is want


def test_invalid_arguments_are_usage_errors():
    with pytest.raises(UsageError):
        topic_matches("a/#/b", "a")
    with pytest.raises(UsageError):
        topic_matches("a", "a/+")
    assert topic_name_error("") and topic_name_error("a+") and topic_name_error("a\0")
    assert topic_name_error("a/b") is None
    assert topic_filter_error("$share/g") and topic_filter_error("$share//a")
    assert topic_filter_error("$share/g", shared=False) is None
    assert split_shared("$share/g/a/b") == ("g", "a/b")
    assert split_shared("a/b") == (None, "a/b")


def test_tree_basic_and_qos_aggregation():
    t = SubscriptionTree()
    assert t.add("vc/v1/dev/+/up", "ward3", 1)
    assert t.add("vc/#", "audit", 0)
    assert t.add("vc/v1/dev/000012ab/up", "ward3", 2)  # overlapping: highest QoS wins
    assert not t.add("vc/#", "audit", 1)  # re-subscribe replaces the QoS (§3.8.4)
    assert t.add("#", "all", 0)
    assert t.match("vc/v1/dev/000012ab/up") == {"ward3": 2, "audit": 1, "all": 0}
    assert t.match("vc/v1/dev/000099ff/up") == {"ward3": 1, "audit": 1, "all": 0}
    assert t.match("$SYS/load") == {}
    assert len(t) == 4
    assert t.filters("ward3") == {"vc/v1/dev/+/up": 1, "vc/v1/dev/000012ab/up": 2}


def test_tree_remove_prunes_and_remove_key():
    t = SubscriptionTree()
    t.add("a/b/c", 1)
    t.add("a/+/c", 2)
    t.add("$share/g/a/#", 3)
    assert t.remove("a/b/c", 1) and not t.remove("a/b/c", 1)
    assert t.match("a/b/c") == {2: 0}
    assert "b" not in t._root.children["a"].children  # pruned
    assert t.remove_key(2) == 1 and t.remove_key(3) == 1
    assert t._root.children == {} and len(t) == 0


def test_tree_shared_subscriptions():
    t = SubscriptionTree()
    t.add("$share/ward3/vc/+/up", "nurse-1", 1)
    t.add("$share/ward3/vc/+/up", "nurse-2", 0)
    t.add("$share/ward4/vc/#", "nurse-9", 2)
    t.add("vc/+/up", "archive", 1)
    assert t.match("vc/d1/up") == {"archive": 1}  # shared ones are not in match()
    assert t.match_shared("vc/d1/up") == {
        ("ward3", "vc/+/up"): {"nurse-1": 1, "nurse-2": 0},
        ("ward4", "vc/#"): {"nurse-9": 2},
    }
    t.remove("$share/ward3/vc/+/up", "nurse-1")
    t.remove("$share/ward3/vc/+/up", "nurse-2")
    assert set(t.match_shared("vc/d1/up")) == {("ward4", "vc/#")}


def test_tree_rejects_bad_input():
    t = SubscriptionTree()
    with pytest.raises(UsageError):
        t.add("a/#/b", "k")
    with pytest.raises(UsageError):
        t.add("a", "k", 3)
    with pytest.raises(UsageError):
        t.match("a/+")


LEVEL = st.sampled_from(["a", "b", "", "$s", "x y"])
FILTER_LEVEL = st.sampled_from(["a", "b", "", "$s", "+"])


@st.composite
def filters(draw):
    levels = draw(st.lists(FILTER_LEVEL, min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "b"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(filters(), st.integers(0, 5), st.integers(0, 2)), max_size=25),
       st.lists(st.lists(LEVEL, min_size=1, max_size=5).map("/".join).filter(bool), min_size=1, max_size=8),
       st.data())
def test_tree_agrees_with_topic_matches(subs, topics, data):
    tree = SubscriptionTree()
    current: dict[tuple[str, int], int] = {}
    for flt, key, qos in subs:
        tree.add(flt, key, qos)
        current[(flt, key)] = qos
    for flt, key in data.draw(st.lists(st.sampled_from(sorted(current)), max_size=5)
                              if current else st.just([])):
        if (flt, key) in current:
            assert tree.remove(flt, key)
            del current[(flt, key)]
    assert len(tree) == len(current)
    for topic in topics:
        want: dict[int, int] = {}
        for (flt, key), qos in current.items():
            if topic_matches(flt, topic):
                want[key] = max(want.get(key, -1), qos)
        assert tree.match(topic) == want


def test_tree_match_cache_follows_changes_and_is_read_only():
    for size in (0, 1, 65536):
        t = SubscriptionTree(cache_size=size)
        t.add("a/+", "k1", 0)
        assert t.match("a/b") == {"k1": 0}
        assert t.match("a/c") == {"k1": 0}
        t.add("a/b", "k2", 1)
        assert t.match("a/b") == {"k1": 0, "k2": 1}
        t.add("$share/g/a/b", "k3", 2)
        assert t.match_shared("a/b") == {("g", "a/b"): {"k3": 2}}
        t.remove("a/+", "k1")
        assert t.match("a/b") == {"k2": 1}
        assert t.match("a/c") == {}
        with pytest.raises(TypeError):
            t.match("a/b")["x"] = 1  # type: ignore[index]
    with pytest.raises(UsageError):
        SubscriptionTree(cache_size=-1)
