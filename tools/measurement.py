"""What a measurement is: a quantity, a value and its unit, a UCUM code with its coded concept.

Tools make these, the trajectory keeps them ({"name", "value", "unit"} in JSON) and the reports
read them; nothing compares unit strings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code


class Unit(str, Enum):
    """A UCUM code; in JSON it is the code itself ("mm2"), as DICOM writes it."""

    MILLIMETRE = "mm"
    SQUARE_MILLIMETRE = "mm2"
    HOUNSFIELD = "[hnsf'U]"
    PIXEL = "{pixel}"  # sizes of an image without PixelSpacing
    SQUARE_PIXEL = "{pixel2}"
    ONE = "1"  # unitless signal (MR, US, colour)

    @property
    def symbol(self) -> str:
        """'mm²': what a person reads beside the number; the code stays in the data."""
        return SYMBOLS[self]

    @property
    def concept(self) -> Code | None:
        """The UCUM concept an SR measurement carries; None for pixel counts and plain signal,
        which are not physical quantities a PACS can compare."""
        return CONCEPTS.get(self)

    @classmethod
    def of_values(cls, hounsfield: bool) -> Unit:
        """The unit of a frame's modality values."""
        return cls.HOUNSFIELD if hounsfield else cls.ONE


SYMBOLS = {
    Unit.MILLIMETRE: "mm",
    Unit.SQUARE_MILLIMETRE: "mm²",
    Unit.HOUNSFIELD: "HU",
    Unit.PIXEL: "pixels",
    Unit.SQUARE_PIXEL: "pixels²",
    Unit.ONE: "",
}
CONCEPTS = {
    Unit.MILLIMETRE: codes.UCUM.Millimeter,
    Unit.SQUARE_MILLIMETRE: codes.UCUM.SquareMillimeter,
    Unit.HOUNSFIELD: codes.UCUM.HounsfieldUnit,
}


class Quantity(str, Enum):
    """What is measured; in JSON its name ("long axis")."""

    AREA = "area"
    LONG_AXIS = "long axis"
    MEAN = "mean"
    SD = "SD"


@dataclass(frozen=True)
class Measurement:
    name: Quantity
    value: float
    unit: Unit

    def describe(self) -> str:
        """'area 12.5 mm²': the UCUM code stays in the data, people read the usual symbol."""
        return f"{self.name.value} {self.value:g} {self.unit.symbol}".rstrip()
