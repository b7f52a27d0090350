"""Where a frame lies, in the terms a reader uses: its edges' patient directions and its slice
position along the normal."""

from __future__ import annotations

import pytest

from imaging.frame import Geometry, stated_directions


@pytest.mark.parametrize(
    ("orientation", "edges"),
    [
        ((1, 0, 0, 0, 1, 0), ("R", "L", "A", "P")),  # axial, as displayed by convention
        ((1, 0, 0, 0, 0, -1), ("R", "L", "H", "F")),  # coronal
        ((0, 1, 0, 0, 0, -1), ("A", "P", "H", "F")),  # sagittal
        ((0.98, 0.2, 0, 0, 0.1, -0.99), ("R", "L", "H", "F")),  # oblique: the nearest axis
    ],
)
def test_the_edges_name_the_patient_directions(orientation, edges):
    assert Geometry(orientation=tuple(map(float, orientation))).edge_letters == edges


def test_without_an_orientation_no_edge_is_named_and_no_slice_position_is_given():
    assert Geometry().edge_letters == ("", "", "", "")
    assert Geometry(position=(0.0, 0.0, 5.0)).slice_position_mm is None


@pytest.mark.parametrize(
    ("orientation", "normal", "position_mm"),
    [
        ((1, 0, 0, 0, 1, 0), (0, 0, 1), -65.7),  # axial: along the patient's head
        ((1, 0, 0, 0, 0, -1), (0, 1, 0), 20.0),  # coronal: posterior
        ((0, 1, 0, 0, 0, -1), (-1, 0, 0), 10.0),  # sagittal: toward the patient's right
        # oblique, tilted 30 degrees about x: the normal mixes y and z
        ((1, 0, 0, 0, 0.866, -0.5), (0, 0.5, 0.866), 0.5 * 20.0 + 0.866 * -65.7),
    ],
)
def test_the_slice_position_is_along_the_normal(orientation, normal, position_mm):
    """The normal is the row direction cross the column direction: it orders a series' slices
    whatever plane they lie in."""
    geometry = Geometry(position=(-10.0, 20.0, -65.7), orientation=tuple(map(float, orientation)))
    assert geometry.normal == pytest.approx(normal)
    assert geometry.slice_position_mm == pytest.approx(position_mm)


def test_a_projection_image_is_oriented_by_its_stated_patient_orientation():
    """A chest film states where its rows and columns run (L\\F): its edges are named from that,
    and Image Orientation (Patient) wins where a file has both."""
    assert stated_directions(["L", "F"]) == ("L", "F")
    assert stated_directions(["LP", "FA"]) == ("L", "F")  # the main direction of each
    assert stated_directions("") is None and stated_directions(["L"]) is None
    assert stated_directions(["X", "F"]) is None
    film = Geometry(stated=("L", "F"))
    assert film.edge_letters == ("R", "L", "H", "F")
    axial = Geometry(orientation=(1, 0, 0, 0, 1, 0), stated=("A", "F"))
    assert axial.directions == ("L", "P")
