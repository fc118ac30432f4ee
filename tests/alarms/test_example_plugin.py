"""The example plugin (examples/alarm_plugin) found through entry points, without pip.

A ``.dist-info`` directory written to a tmp dir on ``sys.path`` is what an installed
distribution looks like to ``importlib.metadata``; its ``entry_points.txt`` is taken from
the example's pyproject.toml, so the test checks the declaration that ships.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

from alarm_helpers import START

from vitalcore.alarms.plugins import ENTRY_POINT_GROUP, load_entry_points
from vitalcore.protocol import CommandKind
from vitalcore.sim.wearable import ScenarioWearable

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alarm_plugin"


def _distribution(tmp_path: Path, name: str, version: str, eps: dict[str, str]) -> None:
    info = tmp_path / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def _install_example(tmp_path, monkeypatch):
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"][ENTRY_POINT_GROUP]
    _distribution(tmp_path, meta["project"]["name"], meta["project"]["version"], eps)
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return eps


def test_entry_point_loads_the_example_rule(tmp_path, monkeypatch):
    eps = _install_example(tmp_path, monkeypatch)
    assert eps == {"shock_index": "vitalcore_shock_index:rule"}
    rules, errors = load_entry_points()
    assert errors == [] and [r.name for r in rules] == ["shock_index"]
    assert rules[0].codes == ("elevated", "high")


def test_example_rule_alarms_in_an_engine(rig, tmp_path, monkeypatch):
    _install_example(tmp_path, monkeypatch)
    assert rig.engine.load_plugins() == []
    w = ScenarioWearable(device_id=81, start_us=START, hr_bpm=128, nibp_sys=85,
                         nibp_dia=55, nibp_deflate_mmhg_s=10.0, seed=3)
    w.command(1, CommandKind.START_NIBP)
    rig.run([w], 40)
    for _ in range(3):  # give the plugin worker time to answer, then a few more runs
        rig.run([w], 5)
    got = rig.raised("plugin.shock_index.high", 81)
    assert len(got) == 1 and got[0].alarm.priority == 3
    assert 1.3 < got[0].alarm.value < 1.7  # 128 bpm / ~85 mmHg
    assert "vitalcore_shock_index" in sys.modules


def test_broken_entry_points_are_reported_not_raised(rig, tmp_path, monkeypatch):
    _distribution(tmp_path, "broken-plugins", "1.0", {
        "missing": "no_such_module_xyz:rule",
        "notarule": "json:dumps",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    errors = dict(rig.engine.load_plugins())
    assert set(errors) == {"missing", "notarule"}
    assert "ModuleNotFoundError" in errors["missing"]
    rig.run([], 0.5)
    codes = {e.alarm.code for e in rig.events if e.kind == "raised"}
    assert codes == {"plugin.missing.disabled", "plugin.notarule.disabled"}
