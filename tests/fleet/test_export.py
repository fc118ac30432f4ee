"""CSV, XLSX and the JSON payload for a hospital quality system."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest
from clinical_world import DEVICES, T0
from fleet_world import HOUR

from vitalcore import protocol as P
from vitalcore.errors import UsageError
from vitalcore.fleet import StatusReading
from vitalcore.fleet.export import (
    ASSET_COLUMNS,
    DUE_COLUMNS,
    SCHEMA,
    USAGE_COLUMNS,
    api_payload,
    asset_record,
    due_record,
    to_csv,
    to_xlsx,
    usage_record,
)

BAT, LW = int(P.AccessoryKind.BATTERY), int(P.AccessoryKind.LEAD_WIRE)


@pytest.fixture
def filled(sqlite_world):
    store, tracker = sqlite_world
    # "=HYPERLINK(...)" is printable ASCII: a device may send it as a serial
    tracker.ingest([StatusReading(DEVICES[0], T0, 10 * HOUR,
                                  ((BAT, "=1+2", 4000 * HOUR), (LW, "LW-OK", 5 * HOUR)))])
    return store, tracker


def test_csv_has_fixed_columns_and_no_formulas(filled):
    _, tracker = filled
    text = to_csv([asset_record(a) for a in tracker.assets()], ASSET_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == ASSET_COLUMNS
    by_serial = {r["serial"]: r for r in rows}
    assert set(by_serial) == {"'=1+2", "LW-OK", ""}  # terminal: no serial registered yet
    assert by_serial["'=1+2"]["hours"] == "4000.0" and by_serial["'=1+2"]["alert"] == "warning"
    assert by_serial[""]["device_id"] == f"{DEVICES[0]:016x}"
    due = to_csv([due_record(d) for d in tracker.due()], DUE_COLUMNS)
    assert due.splitlines()[1].split(",")[2] == "'=1+2"


def test_xlsx_holds_the_same_tables(filled):
    _, tracker = filled
    assets = [asset_record(a) for a in tracker.assets()]
    data = to_xlsx({"assets": (assets, ASSET_COLUMNS),
                    "due": ([due_record(d) for d in tracker.due()], DUE_COLUMNS)})
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["assets", "due"]
    rows = list(wb["assets"].values)
    assert rows[0] == ASSET_COLUMNS and len(rows) == 1 + len(assets)
    cells = {r[ASSET_COLUMNS.index("serial")]: r for r in rows[1:]}
    assert cells["'=1+2"][ASSET_COLUMNS.index("hours")] == 4000.0
    assert wb["due"]["C2"].value == "'=1+2" and wb["due"]["C2"].data_type == "s"


def test_json_payload_round_trips(filled):
    store, tracker = filled
    store.admit("nurse1", "P1", "W1", devices=[DEVICES[0]], at_us=T0 + 10)
    tracker.ingest([StatusReading(DEVICES[0], T0 + 3600 * 10**6, 11 * HOUR)])
    doc = api_payload(tracker.assets(), tracker.due(), tracker.statistics(),
                      tracker.usage(T0, T0 + 2 * 3600 * 10**6), generated_us=T0)
    back = json.loads(json.dumps(doc))
    assert back["schema"] == SCHEMA and back["generated"] == "2025-11-26T00:00:00Z"
    assert back["statistics"]["by_kind"] == {"battery": 1, "lead_wire": 1, "terminal": 1}
    assert [u["ward_id"] for u in back["usage"]] == ["W1"]
    assert back["usage"][0]["powered_h"] == 1.0 and set(back["usage"][0]) == set(USAGE_COLUMNS)
    assert usage_record(tracker.usage(T0, T0 + 10**9)[0])["month"] == "2025-11"


def test_unknown_columns_are_refused():
    with pytest.raises(UsageError, match="not in the table"):
        to_csv([{"serial": "x", "bogus": 1}], ("serial",))
    with pytest.raises(UsageError, match="at least one sheet"):
        to_xlsx({})
