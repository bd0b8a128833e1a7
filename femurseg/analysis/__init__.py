"""QCT hip analysis of a scan and any 0/1/2 label map: calibration, densitometry, geometry.

The layer reads an image and a label map on its grid (ours, a reference, another
tool's) and never imports :mod:`femurseg.inference` or the commands. Modules, one
concept each:

- :mod:`~femurseg.analysis.phantoms`: the registry of calibration phantom definitions;
- :mod:`~femurseg.analysis.rods`: finding and measuring a phantom's rods in the scan;
- :mod:`~femurseg.analysis.calibration`: the HU → density line (phantom, asynchronous,
  internal, given) with its quality gates;
- :mod:`~femurseg.analysis.densitometry`: density map, volume / vBMD / BMC per compartment;
- :mod:`~femurseg.analysis.sides`: input checks and the split into femora;
- :mod:`~femurseg.analysis.geometry`: head sphere, neck and shaft axes, angles, neck section;
- :mod:`~femurseg.analysis.regions`: head, neck, trochanter, intertrochanteric, shaft;
- :mod:`~femurseg.analysis.thickness`: cortical thickness map on the periosteal surface;
- :mod:`~femurseg.analysis.dxa`: DXA-equivalent areal BMD;
- :mod:`~femurseg.analysis.qc`: the QC picture;
- :mod:`~femurseg.analysis.pipeline`: :func:`analyze` and :class:`AnalysisResult`.

See ``docs/analysis.md``.
"""

from __future__ import annotations

from femurseg.analysis.calibration import (
    INTERNAL_REFERENCES,
    METHODS,
    CalibrationGates,
    CalibrationLine,
    InternalReference,
    calibrate,
    calibrate_internal,
    calibrate_phantom,
    fit_line,
    load_calibration_json,
)
from femurseg.analysis.densitometry import ANALYSIS_COMPARTMENTS, compartment_table, density_image
from femurseg.analysis.phantoms import DEFAULT_PHANTOM, PHANTOMS, PhantomDefinition, get_phantom, register_phantom
from femurseg.analysis.dxa import DxaProjection, dxa_projection
from femurseg.analysis.geometry import HipGeometry, hip_geometry
from femurseg.analysis.pipeline import AnalysisResult, AnalysisSettings, analyze
from femurseg.analysis.regions import REGION_LABELS, TOTAL_HIP, region_map
from femurseg.analysis.thickness import ThicknessMap, cortical_thickness
from femurseg.analysis.rods import Rod, RodRow, find_rods

__all__ = [
    "analyze", "AnalysisResult", "AnalysisSettings", "ANALYSIS_COMPARTMENTS", "compartment_table", "density_image",
    "CalibrationLine", "CalibrationGates", "InternalReference", "INTERNAL_REFERENCES", "METHODS", "calibrate",
    "calibrate_internal", "calibrate_phantom", "fit_line", "load_calibration_json", "PhantomDefinition", "PHANTOMS",
    "DEFAULT_PHANTOM", "get_phantom", "register_phantom", "Rod", "RodRow", "find_rods", "HipGeometry", "hip_geometry",
    "REGION_LABELS", "TOTAL_HIP", "region_map", "ThicknessMap", "cortical_thickness", "DxaProjection", "dxa_projection",
]
