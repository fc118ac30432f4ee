"""The hourly BP profile of an ABPM report as an SVG figure (matplotlib, imported on use)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import numpy as np

if TYPE_CHECKING:
    from ..abpm import ABPMReport

__all__ = ["hourly_profile_svg"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _hours(t: object) -> float:
    return t.hour + t.minute / 60 + t.second / 3600  # type: ignore[attr-defined]


def _window_spans(w: tuple) -> list[tuple[float, float]]:
    a, b = _hours(w[0]), _hours(w[1])
    return [(a, b)] if a < b else [(a, 24.0), (0.0, b)]


def hourly_profile_svg(report: ABPMReport, *, width_in: float = 7.0,
                       height_in: float = 3.0) -> str:
    """SVG (a standalone document, text as paths) of the report's hourly profile.

    Shows every valid reading (systolic and diastolic, by local clock hour), the hourly
    means of systolic, diastolic and MAP (mmHg), the night window shaded (clock windows
    only) and the load thresholds of day and night as dashed lines. Deterministic: the
    same report gives the same bytes.
    """
    import matplotlib
    from matplotlib.figure import Figure

    zone = ZoneInfo(report.tz)
    r = report.readings
    valid = report.reason == 0
    loc = [(_EPOCH + timedelta(microseconds=int(t))).astimezone(zone) for t in r.ts_us[valid]]
    x = np.array([_hours(t) for t in loc])
    hours = np.arange(24) + 0.5
    hs = report.hourly

    def col(name: str) -> np.ndarray:
        return np.array([np.nan if getattr(h, name) is None else getattr(h, name) for h in hs])

    with matplotlib.rc_context({"svg.hashsalt": "vitalcore-abpm", "svg.fonttype": "path",
                                "font.size": 8}):
        fig = Figure(figsize=(width_in, height_in))
        ax = fig.add_subplot()
        cfg = report.config
        if report.periods_from == "clock windows":
            for a, b in _window_spans(cfg.night):
                ax.axvspan(a, b, color="#1f3b73", alpha=0.08, lw=0)
            for w, (ts, td) in ((cfg.day, cfg.day_threshold), (cfg.night, cfg.night_threshold)):
                for a, b in _window_spans(w):
                    ax.hlines([ts, td], a, b, colors=["#b22222", "#1f5fa8"], lw=0.8,
                              linestyles="dashed")
        ax.scatter(x, r.sys[valid], s=6, color="#b22222", alpha=0.35, lw=0)
        ax.scatter(x, r.dia[valid], s=6, color="#1f5fa8", alpha=0.35, lw=0)
        ax.plot(hours, col("sys"), "o-", color="#b22222", ms=3, lw=1.2, label="systolic")
        ax.plot(hours, col("map"), "o-", color="#555555", ms=2, lw=0.8, label="MAP")
        ax.plot(hours, col("dia"), "o-", color="#1f5fa8", ms=3, lw=1.2, label="diastolic")
        ax.set_xlim(0, 24)
        ax.set_xticks(range(0, 25, 2))
        ax.set_xlabel(f"local time, h ({report.tz})")
        ax.set_ylabel("mmHg")
        lo = np.nanmin(r.dia[valid]) if valid.any() else 60.0
        hi = np.nanmax(r.sys[valid]) if valid.any() else 160.0
        ax.set_ylim(max(0.0, min(lo, 60.0) - 10), max(hi, 160.0) + 10)
        ax.grid(True, lw=0.3, alpha=0.5)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()
