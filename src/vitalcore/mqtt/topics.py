"""MQTT topic names, topic filters, matching and the broker's subscription tree.

Rules (MQTT 5.0 §4.7, same in 3.1.1 §4.7): levels are separated by ``/``; ``+`` matches
exactly one level and must fill its level; ``#`` matches the parent level and any number
of child levels and must be the last level; topic names (what PUBLISH carries) contain
no wildcard; names and filters are at least one character long; a filter starting with
a wildcard does not match a topic starting with ``$`` (§4.7.2).

A shared subscription (§4.8.2) is written ``$share/{ShareName}/{filter}``; ShareName is
non-empty and contains none of ``/``, ``+``, ``#``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from types import MappingProxyType

from ..errors import UsageError

__all__ = [
    "SHARE_PREFIX",
    "topic_name_error",
    "topic_filter_error",
    "split_shared",
    "topic_matches",
    "SubscriptionTree",
]

SHARE_PREFIX = "$share/"


def topic_name_error(topic: str) -> str | None:
    """Why ``topic`` is not a valid Topic Name, or ``None`` if it is (§4.7.3)."""
    if not topic:
        return "empty topic name"
    if "+" in topic or "#" in topic:
        return f"wildcard in topic name {topic!r}"
    if "\0" in topic:
        return "U+0000 in topic name"
    return None


def _plain_filter_error(flt: str) -> str | None:
    if not flt:
        return "empty topic filter"
    if "\0" in flt:
        return "U+0000 in topic filter"
    levels = flt.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return f"'#' must be a whole level and the last one in {flt!r}"
        if "+" in level and level != "+":
            return f"'+' must be a whole level in {flt!r}"
    return None


def split_shared(flt: str) -> tuple[str | None, str]:
    """Split ``$share/{group}/{filter}`` into ``(group, filter)``; ``(None, flt)`` otherwise.

    Does not validate; see :func:`topic_filter_error`.
    """
    if flt.startswith(SHARE_PREFIX):
        group, sep, rest = flt[len(SHARE_PREFIX) :].partition("/")
        if sep:
            return group, rest
    return None, flt


def topic_filter_error(flt: str, shared: bool = True) -> str | None:
    """Why ``flt`` is not a valid Topic Filter, or ``None`` if it is (§4.7.1, §4.8.2).

    With ``shared`` (MQTT 5), a filter starting with ``$share/`` must be a well-formed
    shared subscription; otherwise ``$share`` is an ordinary first level.
    """
    if shared and flt.startswith(SHARE_PREFIX):
        rest = flt[len(SHARE_PREFIX) :]
        group, sep, inner = rest.partition("/")
        if not group or not sep:
            return f"shared subscription without share name and filter: {flt!r}"
        if "+" in group or "#" in group:
            return f"wildcard in share name of {flt!r}"
        return _plain_filter_error(inner)
    return _plain_filter_error(flt)


def topic_matches(flt: str, topic: str) -> bool:
    """Whether Topic Filter ``flt`` matches Topic Name ``topic`` (§4.7).

    Both arguments must be valid (an invalid one raises :class:`~vitalcore.errors.UsageError`).
    A shared subscription filter matches what its inner filter matches.
    """
    err = topic_filter_error(flt) or topic_name_error(topic)
    if err:
        raise UsageError(err)
    _, flt = split_shared(flt)
    if topic.startswith("$") and flt[0] in "+#":
        return False
    f_levels = flt.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels) or (f != "+" and f != t_levels[i]):
            return False
    return len(f_levels) == len(t_levels)


class _Node:
    __slots__ = ("children", "subs", "shared", "filter")

    def __init__(self, flt: str) -> None:
        self.children: dict[str, _Node] = {}
        self.subs: dict[Hashable, int] = {}
        self.shared: dict[str, dict[Hashable, int]] = {}
        self.filter = flt  # the (inner) filter leading to this node


class SubscriptionTree:
    """Subscriptions of a broker, indexed by topic level for matching (§4.7).

    Each subscription is a ``(filter, key)`` pair with a maximum QoS; ``key`` identifies
    the subscriber (a client id, a session object: any hashable). Subscribing the same
    key to the same filter again replaces its QoS (§3.8.4). Filters of the form
    ``$share/{group}/{filter}`` are shared subscriptions (§4.8.2): they are returned
    by :meth:`match_shared`, grouped, so the broker can deliver each message to one
    member of each group.

    Match results are cached per topic name (devices publish on the same topics over
    and over) until the next :meth:`add` or :meth:`remove`; they are read-only
    mappings.

    Parameters
    ----------
    cache_size : int
        Most topic names whose match results are kept; the cache is emptied when full.

    Examples
    --------
    >>> tree = SubscriptionTree()
    >>> tree.add("vc/v1/dev/+/up", "ward-3", qos=1)
    True
    >>> tree.add("vc/#", "audit", qos=0)
    True
    >>> tree.match("vc/v1/dev/000012ab/up") == {"ward-3": 1, "audit": 0}
    True
    """

    def __init__(self, cache_size: int = 65536) -> None:
        if cache_size < 0:
            raise UsageError(f"cache_size must be >= 0, got {cache_size!r}")
        self._root = _Node("")
        self._by_key: dict[Hashable, dict[str, int]] = {}
        self._cache: dict[str, tuple[Mapping, Mapping]] = {}
        self._cache_size = cache_size
        self.version = 0  #: changes whenever a subscription is added or removed

    def __len__(self) -> int:
        return sum(len(f) for f in self._by_key.values())

    def add(self, flt: str, key: Hashable, qos: int = 0) -> bool:
        """Subscribe ``key`` to ``flt`` with maximum QoS ``qos``; True if it is new."""
        if err := topic_filter_error(flt):
            raise UsageError(err)
        if qos not in (0, 1, 2):
            raise UsageError(f"qos must be 0, 1 or 2, got {qos!r}")
        group, inner = split_shared(flt)
        node = self._root
        for level in inner.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node(
                    level if node is self._root else f"{node.filter}/{level}"
                )
            node = child
        self._cache.clear()
        self.version += 1
        subs = node.subs if group is None else node.shared.setdefault(group, {})
        new = key not in subs
        subs[key] = qos
        self._by_key.setdefault(key, {})[flt] = qos
        return new

    def remove(self, flt: str, key: Hashable) -> bool:
        """Unsubscribe ``key`` from ``flt``; False if it was not subscribed."""
        filters = self._by_key.get(key)
        if filters is None or flt not in filters:
            return False
        del filters[flt]
        if not filters:
            del self._by_key[key]
        self._cache.clear()
        self.version += 1
        group, inner = split_shared(flt)
        path = [self._root]
        for level in inner.split("/"):
            path.append(path[-1].children[level])
        node = path[-1]
        if group is None:
            del node.subs[key]
        else:
            members = node.shared[group]
            del members[key]
            if not members:
                del node.shared[group]
        levels = inner.split("/")
        for i in range(len(levels), 0, -1):  # prune nodes left empty
            n = path[i]
            if n.children or n.subs or n.shared:
                break
            del path[i - 1].children[levels[i - 1]]
        return True

    def remove_key(self, key: Hashable) -> int:
        """Remove every subscription of ``key`` (session end); return how many."""
        filters = list(self._by_key.get(key, ()))
        for flt in filters:
            self.remove(flt, key)
        return len(filters)

    def filters(self, key: Hashable) -> dict[str, int]:
        """The filters ``key`` subscribes to, with their QoS."""
        return dict(self._by_key.get(key, {}))

    def _matching_nodes(self, topic: str) -> list[_Node]:
        if err := topic_name_error(topic):
            raise UsageError(err)
        levels = topic.split("/")
        n_levels = len(levels)
        dollar = topic[0] == "$"  # §4.7.2: no wildcard match of a first level "$..."
        found = []
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            children = node.children
            wild_ok = i or not dollar
            if wild_ok and "#" in children:
                found.append(children["#"])  # also matches the parent level (§4.7.1.2)
            if i == n_levels:
                found.append(node)
                continue
            child = children.get(levels[i])
            if child is not None:
                stack.append((child, i + 1))
            if wild_ok and "+" in children:
                stack.append((children["+"], i + 1))
        return found

    def _lookup(self, topic: str) -> tuple[Mapping, Mapping]:
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        subs: dict[Hashable, int] = {}
        shared: dict[tuple[str, str], Mapping[Hashable, int]] = {}
        for node in self._matching_nodes(topic):
            for key, qos in node.subs.items():
                if subs.get(key, -1) < qos:
                    subs[key] = qos
            for group, members in node.shared.items():
                shared[(group, node.filter)] = MappingProxyType(dict(members))
        result = (MappingProxyType(subs), MappingProxyType(shared))
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[topic] = result
        return result

    def match(self, topic: str) -> Mapping[Hashable, int]:
        """Non-shared subscribers of ``topic``, each with its highest matching QoS."""
        return self._lookup(topic)[0]

    def has_match(self, topic: str) -> bool:
        """Whether any subscription, shared or not, matches ``topic`` (one cached lookup)."""
        subs, shared = self._lookup(topic)
        return bool(subs) or bool(shared)

    def match_shared(self, topic: str) -> Mapping[tuple[str, str], Mapping[Hashable, int]]:
        """Shared subscriptions matching ``topic``: ``(group, filter) -> {key: qos}``.

        The broker delivers each message to one member of each entry (§4.8.2).
        """
        return self._lookup(topic)[1]
