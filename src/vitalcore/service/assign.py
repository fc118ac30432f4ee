"""Auto-assignment: which team gets a new order.

Rules are tried in order; the first whose every given condition matches names the team
(``None`` in a condition means "any"). With no match the default team gets it. A device
entrusted to a vendor whose scope covers the order's request type goes to the vendor
(``vendor/<id>``) before any rule: the contract says who repairs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError
from .model import RequestType, Severity

__all__ = ["AssignmentRule", "Assigner"]


def _set(values: Iterable | None, kind: type, name: str) -> frozenset | None:
    if values is None:
        return None
    try:
        out = frozenset(kind(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: values must be {kind.__name__}, got {values!r}") from None
    if not out:
        raise ConfigError(f"{name} must be None (any) or non-empty")
    return out


@dataclass(frozen=True)
class AssignmentRule:
    """Send orders matching every given condition to ``team`` (e.g. ``"team/icu-biomed"``)."""

    team: str
    request_types: frozenset[RequestType] | None = None
    severities: frozenset[Severity] | None = None
    models: frozenset[str] | None = None
    wards: frozenset[str] | None = None
    emergency: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.team, str) or not self.team:
            raise ConfigError("an assignment rule needs a team name")
        object.__setattr__(self, "request_types",
                           _set(self.request_types, RequestType, "request_types"))
        object.__setattr__(self, "severities", _set(self.severities, Severity, "severities"))
        object.__setattr__(self, "models", _set(self.models, str, "models"))
        object.__setattr__(self, "wards", _set(self.wards, str, "wards"))
        if self.emergency is not None and not isinstance(self.emergency, bool):
            raise ConfigError("emergency must be None, True or False")

    def matches(self, request_type: RequestType, severity: Severity, model: str,
                ward: str | None, emergency: bool) -> bool:
        return ((self.request_types is None or request_type in self.request_types)
                and (self.severities is None or severity in self.severities)
                and (self.models is None or model in self.models)
                and (self.wards is None or ward in self.wards)
                and (self.emergency is None or emergency == self.emergency))


@dataclass(frozen=True)
class Assigner:
    """The rules and the default team."""

    rules: tuple[AssignmentRule, ...] = ()
    default_team: str = "team/biomed"

    def __post_init__(self) -> None:
        if not all(isinstance(r, AssignmentRule) for r in self.rules):
            raise ConfigError("rules must be AssignmentRule objects")
        if not isinstance(self.default_team, str) or not self.default_team:
            raise ConfigError("default_team must be a non-empty name")

    def team_for(self, request_type: RequestType, severity: Severity, model: str,
                 ward: str | None, emergency: bool) -> str:
        for rule in self.rules:
            if rule.matches(request_type, severity, model, ward, emergency):
                return rule.team
        return self.default_team
