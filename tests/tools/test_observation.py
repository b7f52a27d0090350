"""Tool payloads are typed records that keep their JSON keys, and a trajectory with a unit no
tool writes is refused with the path to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.trajectory import Trajectory
from imaging.errors import TrajectoryError
from imaging.records import RecordError, from_plain, to_plain
from tools.measurement import Measurement, Quantity, Unit
from tools.observation import Candidate, LocatePayload, MeasurePayload, Payload

VERSION_1 = Path(__file__).parent.parent / "data" / "trajectory_v1" / "trajectory.json"


def test_a_measurement_is_written_with_its_ucum_code_and_read_back():
    measurement = Measurement(Quantity.AREA, 12.5, Unit.SQUARE_MILLIMETRE)
    plain = to_plain(MeasurePayload((measurement,)))
    assert json.dumps(plain) == '{"measurements": [{"name": "area", "value": 12.5, "unit": "mm2"}]}'
    assert from_plain(Payload, plain, "payload") == MeasurePayload((measurement,))
    assert measurement.describe() == "area 12.5 mm²"


def test_a_candidate_keeps_its_class_key():
    candidate = Candidate("cyst", "fluid", (1, 2, 3, 4), 5.0, Unit.SQUARE_MILLIMETRE, 3.0, "HU")
    plain = to_plain(LocatePayload("HU", (candidate,), ()))
    assert plain["candidates"][0]["class"] == "fluid" and "tissue" not in plain["candidates"][0]
    assert from_plain(Payload, plain, "payload").candidates == (candidate,)


def test_an_unknown_unit_is_refused_with_its_path():
    plain = {"measurements": [{"name": "area", "value": 1.0, "unit": "cm2"}]}
    with pytest.raises(RecordError, match=r"measurements\[0\]\.unit: 'cm2' is not one of"):
        from_plain(MeasurePayload, plain)


def test_a_trajectory_with_an_unknown_unit_does_not_load():
    data = json.loads(VERSION_1.read_text())
    measure = next(step for step in data["steps"] if step["tool"] == "measure")
    measure["payload"]["measurements"][0]["unit"] = "furlong"
    with pytest.raises(TrajectoryError, match="furlong"):
        Trajectory.from_json(json.dumps(data))


def test_only_physical_units_carry_an_sr_concept():
    assert Unit.HOUNSFIELD.concept.value == "[hnsf'U]"
    assert Unit.SQUARE_MILLIMETRE.concept.meaning.lower().startswith("square mil")
    assert Unit.PIXEL.concept is None and Unit.ONE.concept is None
