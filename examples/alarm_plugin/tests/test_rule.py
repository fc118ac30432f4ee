"""Unit test of the example rule on hand-made contexts (run: pytest examples/alarm_plugin)."""

from __future__ import annotations

from vitalcore_shock_index import rule

from vitalcore.alarms import RuleContext
from vitalcore.protocol import NumericCode


def ctx(hr, sys, age_s=0.0):
    latest = {NumericCode.HR: (10**15, hr), NumericCode.NIBP_SYS: (10**15 - int(age_s * 1e6), sys)}
    return RuleContext(1, 0, None, latest, None, None)


def test_levels():
    assert rule.evaluate(ctx(80, 120)) == []
    assert [a.code for a in rule.evaluate(ctx(110, 100))] == ["elevated"]
    assert [a.code for a in rule.evaluate(ctx(130, 85))] == ["high"]
    assert rule.evaluate(ctx(130, 85, age_s=3600)) == []  # stale NIBP is not used
