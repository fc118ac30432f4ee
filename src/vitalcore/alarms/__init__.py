"""Alarms: physiological limits, arrhythmia, technical and plugin rules (docs/alarms.md).

Typical use::

    from vitalcore.alarms import AlarmEngine, AlarmLog
    engine = AlarmEngine(alarm_log=AlarmLog(data_dir / "alarms"))
    engine.attach(store)                      # every committed batch is analysed
    async for event in engine.subscribe():    # RAISED, ACKNOWLEDGED, ... events
        ...
    engine.acknowledge(event.alarm.alarm_id, user="nurse.li")
"""

from __future__ import annotations

from .arrhythmia import ArrhythmiaConfig
from .engine import AlarmConfig, AlarmEngine, Subscription
from .limits import WARD_DEFAULTS, Limit, LimitTable
from .log import AlarmLog
from .model import (
    SYSTEM_DEVICE,
    Alarm,
    AlarmCategory,
    AlarmEvent,
    AlarmPriority,
    AlarmState,
    EscalationStep,
    EventKind,
    Evidence,
    Finding,
    Timing,
)
from .mqtt import AlarmPublisher
from .plugins import AlarmRule, PluginAlarm, RuleContext, WaveSnapshot, alarm_rule
from .technical import TechnicalConfig

__all__ = [
    "Alarm", "AlarmCategory", "AlarmConfig", "AlarmEngine", "AlarmEvent", "AlarmLog",
    "AlarmPriority", "AlarmPublisher", "AlarmRule", "AlarmState", "ArrhythmiaConfig",
    "EscalationStep", "EventKind", "Evidence", "Finding", "Limit", "LimitTable",
    "PluginAlarm", "RuleContext", "SYSTEM_DEVICE", "Subscription", "TechnicalConfig",
    "Timing", "WARD_DEFAULTS", "WaveSnapshot", "alarm_rule",
]
