"""Shock index alarm (HR / systolic NIBP): an example vitalcore alarm plugin.

Not a validated clinical rule: an example of the plugin API (docs/alarms.md).
"""

from __future__ import annotations

from vitalcore.alarms import AlarmPriority, PluginAlarm, RuleContext, alarm_rule
from vitalcore.protocol import NumericCode

__all__ = ["rule", "shock_index"]

#: Oldest NIBP measurement used, µs (NIBP is episodic: every 15-60 min on a ward).
MAX_NIBP_AGE_US = 15 * 60 * 1_000_000
ELEVATED = 1.0
HIGH = 1.4


def shock_index(ctx: RuleContext) -> float | None:
    """HR (bpm) / systolic NIBP (mmHg) from the latest valid values, or None."""
    hr = ctx.latest.get(NumericCode.HR)
    sys = ctx.latest.get(NumericCode.NIBP_SYS)
    if hr is None or sys is None or sys[1] <= 0 or hr[0] - sys[0] > MAX_NIBP_AGE_US:
        return None
    return hr[1] / sys[1]


@alarm_rule("shock_index", codes=("elevated", "high"), period_s=5.0, timeout_s=0.05)
def rule(ctx: RuleContext) -> list[PluginAlarm]:
    si = shock_index(ctx)
    if si is None or si <= ELEVATED:
        return []
    if si > HIGH:
        return [PluginAlarm("high", AlarmPriority.HIGH, f"shock index {si:.2f}", si, HIGH)]
    return [PluginAlarm("elevated", AlarmPriority.MEDIUM, f"shock index {si:.2f}", si, ELEVATED)]
