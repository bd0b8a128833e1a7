"""The segments of a femur label map as other tools name them: labels, colours and codes.

One place for what ``segmentation.seg.nrrd`` (3D Slicer) and ``seg.dcm`` (DICOM-SEG)
say about each label value of :mod:`femurseg.labels`:

=====  ===================  ===========  =========================================
value  name                 colour       codes (scheme ^ value ^ meaning)
=====  ===================  ===========  =========================================
1      femur cortical bone  orange       category SCT^85756007^Tissue,
                                         type SCT^3138006^Bone,
                                         anatomic region SCT^71341001^Femur
2      femur trabecular     blue         the same codes
       bone
=====  ===================  ===========  =========================================

The codes are those of DICOM PS3.16: "Tissue" (CID 7150 Segmentation Property
Category), "Bone" (CID 7166 Common Tissue Segmentation Type; SNOMED CT 3138006,
bone tissue) and "Femur" (CID 4031 Common Anatomic Regions; SNOMED CT 71341001,
bone structure of femur). PS3.16 has no concept for cortical or cancellous bone
in its segmentation context groups, so the two compartments carry the same codes
and differ by their label and description; :func:`segment_definitions` accepts
other codes for a site that codes them with SNOMED CT concepts of its own choice.

Examples
--------
>>> [s.name for s in segment_definitions()]
['femur cortical bone', 'femur trabecular bone']
"""

from __future__ import annotations

from dataclasses import dataclass

from femurseg.labels import CORTICAL, TRABECULAR

__all__ = ["Code", "SegmentDefinition", "segment_definitions", "TISSUE", "BONE", "FEMUR"]


@dataclass(frozen=True)
class Code:
    """A coded concept: ``value`` in coding ``scheme`` (``SCT`` = SNOMED CT), with its ``meaning``."""

    value: str
    scheme: str
    meaning: str

    def slicer(self) -> str:
        """Slicer's terminology notation ``scheme^value^meaning``."""
        return f"{self.scheme}^{self.value}^{self.meaning}"


TISSUE = Code("85756007", "SCT", "Tissue")
BONE = Code("3138006", "SCT", "Bone")
FEMUR = Code("71341001", "SCT", "Femur")


@dataclass(frozen=True)
class SegmentDefinition:
    """One segment: its label value, name, description, RGB colour (0-1) and codes."""

    label_value: int
    name: str
    description: str
    color: tuple[float, float, float]
    category: Code = TISSUE
    type: Code = BONE
    region: Code = FEMUR


def segment_definitions(category: Code = TISSUE, type: Code = BONE, region: Code = FEMUR) -> list[SegmentDefinition]:
    """The two segments (cortical, trabecular) with the given codes (default: those of the module docstring)."""
    return [
        SegmentDefinition(CORTICAL, "femur cortical bone", "cortical bone between the periosteal and endosteal "
                          "surfaces", (1.0, 0.69, 0.0), category, type, region),
        SegmentDefinition(TRABECULAR, "femur trabecular bone", "trabecular bone and marrow inside the endosteal "
                          "surface", (0.0, 0.78, 1.0), category, type, region),
    ]
