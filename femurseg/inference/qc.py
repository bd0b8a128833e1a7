"""Quality control of a segmentation: ``qc.png`` (views) and ``qc.json`` (numbers and flags).

``qc.png``: axial, coronal and sagittal views of the scan with both contours drawn.
Views pass through the centre of the periosteal mask and are cropped to the femur
plus a margin; pixels are drawn with their physical aspect ratio. Rendering uses
Matplotlib's object API with the Agg canvas (no pyplot, no global state).

``qc.json``: :func:`quality_report` turns three sources of evidence into numbers,
flags and one ``pass``:

- the **ensemble** (with ``InferenceSettings.uncertainty``; :func:`ensemble_agreement`
  on the network's grid): pairwise Dice between the members' periosteal masks
  (checkpoints, or the mirror flips of a single checkpoint), the coefficient of
  variation of their volumes, and the mean ensemble standard deviation in the
  cortical shell;
- the **decoded masks** before postprocessing (:func:`decoded_numbers`): endosteal
  voxels outside the periosteal mask; the periosteal pieces beyond one per femur
  that the postprocessing threw away are reported, not flagged (a pelvis the model
  also called bone is common in good segmentations);
- the **label map** itself (:func:`label_numbers`, any 0/1/2 map): more pieces than
  femora, the femur on the in-plane edge of the field of view, the femur's mean
  axial cross-section (volume per length of scan), and the median cortical
  thickness at the periosteal surface; trabecular bone touching background is
  reported, not flagged.

A flag is raised when a number leaves the range of :class:`QCSettings`; ``pass`` is
no flag. The thresholds and how well the flag separates good from bad
segmentations (phantoms, real CT slices) are in docs/inference.md.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from femurseg.labels import cortical_mask, endosteal_mask, periosteal_mask
from femurseg.voxels import bounding_box

__all__ = ["render_qc", "QCSettings", "ensemble_agreement", "decoded_numbers", "label_numbers", "quality_report",
           "QC_FLAGS"]

PERIOSTEAL_COLOUR = "#ffb000"
ENDOSTEAL_COLOUR = "#00c8ff"


def render_qc(
    hu: np.ndarray,
    label: np.ndarray,
    spacing: tuple[float, float, float],
    path: str | os.PathLike[str],
    title: str = "",
    window: tuple[float, float] = (-200.0, 1500.0),
    margin_mm: float = 15.0,
) -> Path:
    """Draw the three orthogonal views to ``path`` (PNG, written as given; callers make it atomic).

    Parameters
    ----------
    hu, label
        Scan and 0/1/2 label map, ``(z, y, x)``.
    spacing
        ``(x, y, z)`` mm.
    path
        Output PNG.
    title
        Figure title (subject id and volumes).
    window
        Display window in HU.
    margin_mm
        Margin around the femur's bounding box.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    foreground = label > 0
    if foreground.any():
        nonzero = np.nonzero(foreground)
        centre = [int(np.median(axis)) for axis in nonzero]
        margins = [int(np.ceil(margin_mm / s)) for s in spacing[::-1]]
        box = list(bounding_box(foreground, margin=margins))
    else:
        centre = [s // 2 for s in label.shape]
        box = [slice(0, s) for s in label.shape]
    sx, sy, sz = spacing
    views = [  # (title, image slice, label slice, pixel aspect = row spacing / column spacing, origin)
        ("axial", (centre[0], box[1], box[2]), sy / sx, "upper"),
        ("coronal", (box[0], centre[1], box[2]), sz / sx, "lower"),
        ("sagittal", (box[0], box[1], centre[2]), sz / sy, "lower"),
    ]
    figure = Figure(figsize=(12, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    for i, (name, index, aspect, origin) in enumerate(views):
        axes = figure.add_subplot(1, 3, i + 1)
        axes.imshow(hu[index], cmap="gray", vmin=window[0], vmax=window[1], aspect=aspect,
                    origin=origin, interpolation="nearest")
        for mask, colour in ((periosteal_mask(label[index]), PERIOSTEAL_COLOUR),
                             (endosteal_mask(label[index]), ENDOSTEAL_COLOUR)):
            # a contour needs at least 2 x 2 pixels (a single-slice scan has 1-pixel-high views)
            if min(mask.shape) >= 2 and mask.any() and not mask.all():
                axes.contour(mask.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.0)
        axes.set_title(name)
        axes.set_axis_off()
    figure.suptitle(f"{title}  (periosteal: orange, endosteal: blue)".strip())
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, format="png")
    return path


#: flag name -> what it means (``qc.json`` lists the raised ones under ``flags``)
QC_FLAGS: dict[str, str] = {
    "empty": "no femur was segmented",
    "ensemble_disagreement": "two ensemble members' periosteal masks overlap with Dice below min_member_dice",
    "volume_variation": "the members' periosteal volumes vary by more than max_volume_cv",
    "uncertain_cortex": "mean ensemble standard deviation in the cortical shell above max_shell_uncertainty",
    "endosteal_outside_periosteal": "decoded endosteal voxels outside the decoded periosteal mask, above "
                                    "max_endosteal_outside (a 0/1/2 map cannot hold them: only a prediction has them)",
    "field_of_view_edge": "the femur touches the in-plane edge of the field of view over more than max_edge_area_mm2",
    "extra_components": "the label map holds more pieces of 1 cm³ or more than femora (one per side)",
    "implausible_volume": "mean axial cross-section of a femur (volume / length) outside cross_section_mm2",
    "implausible_cortical_thickness": "median cortical thickness at the periosteal surface outside "
                                      "cortical_thickness_mm, or no trabecular bone",
}


@dataclass(frozen=True)
class QCSettings:
    """Thresholds of the QC flags (:data:`QC_FLAGS`).

    Parameters
    ----------
    min_member_dice
        Lowest pairwise periosteal Dice between ensemble members.
    max_volume_cv
        Highest coefficient of variation (std / mean) of the members' periosteal volumes.
    max_shell_uncertainty
        Highest mean ensemble standard deviation over the cortical shell (label 1).
    max_endosteal_outside
        Highest fraction of decoded endosteal voxels outside the decoded periosteal
        mask. (Trabecular bone touching background in the label map is reported,
        not flagged: a cortex thinner than a voxel does that in reference labels.)
    max_edge_area_mm2
        Largest femur area on the in-plane border of the field of view (the inferior
        and superior slices may cut the femur: a hip CT ends in the shaft).
    cross_section_mm2
        Plausible mean axial cross-section of one femur (periosteal volume over the
        length it spans): shafts are 300-700 mm², hip levels up to ~3000 mm².
    cortical_thickness_mm
        Plausible median cortical thickness at the periosteal surface.
    """

    min_member_dice: float = 0.9
    max_volume_cv: float = 0.05
    max_shell_uncertainty: float = 0.2
    max_endosteal_outside: float = 0.02
    max_edge_area_mm2: float = 20.0
    cross_section_mm2: tuple[float, float] = (150.0, 4000.0)
    cortical_thickness_mm: tuple[float, float] = (0.4, 8.0)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def femur_box(label: np.ndarray, image: Any, grid: tuple[Any, Any, Any], margin_mm: float = 10.0
              ) -> tuple[slice, slice, slice] | None:
    """The final femur's bounding box plus ``margin_mm``, as ``(X, Y, Z)`` slices of the network's grid.

    Parameters
    ----------
    label
        Final 0/1/2 map ``(z, y, x)`` on ``image``'s grid.
    image
        The scan (SimpleITK image) whose grid ``label`` is on.
    grid
        ``(origin, spacing, direction)`` of the network's (preprocessed) grid.
    """
    outer = np.asarray(periosteal_mask(label), bool)
    if not outer.any():
        return None
    nonzero = np.nonzero(outer)
    low = [int(a.min()) for a in nonzero[::-1]]  # x, y, z
    high = [int(a.max()) for a in nonzero[::-1]]
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint(
        tuple(float(h if bit else lo) for lo, h, bit in zip(low, high, bits)))
        for bits in itertools.product((0, 1), repeat=3)])
    origin, spacing, direction = (np.asarray(v, float) for v in grid)
    index = (corners - origin) @ direction.reshape(3, 3) / spacing  # continuous (x, y, z) index on the grid
    pad = margin_mm / spacing
    start = np.floor(index.min(axis=0) - pad).astype(int)
    stop = np.ceil(index.max(axis=0) + pad).astype(int) + 1
    return tuple(slice(max(0, int(a)), max(0, int(b))) for a, b in zip(start, stop))


def ensemble_agreement(maps: Any, spacing: tuple[float, float, float], size: int,
                       box: tuple[slice, slice, slice] | None = None) -> dict[str, Any]:
    """Agreement between ensemble members, on the network's grid, within ``box``.

    Parameters
    ----------
    maps
        ``(C, X, Y, Z)`` output of the ensemble with moments (torch tensor or array):
        ``P``, ``E``, mean ``P²``, mean ``E²``, then one periosteal map per member.
    spacing
        ``(x, y, z)`` mm of that grid.
    size
        Predictions averaged per contour (checkpoints × flips), for the soft Dice of ``E``.
    box
        ``(X, Y, Z)`` slices: the final femur and a margin (:func:`femur_box`); what
        the members call bone far from it (a pelvis the postprocessing removed) is
        left out. ``None``: the whole grid.

    Returns
    -------
    dict
        ``members``, ``member_dice`` (pairwise periosteal Dice: min, mean),
        ``member_volumes_cm3``, ``volume_cv``, ``endosteal_soft_dice`` (the mean
        pairwise soft Dice of the endosteal maps, from the moments).
    """
    import torch

    maps = torch.as_tensor(maps)
    if box is not None:
        maps = maps[(slice(None), *box)]
    members = maps[4:] > 0.5
    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    counts = members.flatten(1).sum(dim=1).double()
    volumes = (counts * voxel_cm3).tolist()
    dices = []
    for i, j in itertools.combinations(range(members.shape[0]), 2):
        total = float(counts[i] + counts[j])
        dices.append(1.0 if total == 0 else 2.0 * float((members[i] & members[j]).sum()) / total)
    mean_volume = float(np.mean(volumes)) if volumes else 0.0
    numbers: dict[str, Any] = {
        "members": int(members.shape[0]),
        "member_dice_min": _round(min(dices)) if dices else None,
        "member_dice_mean": _round(float(np.mean(dices))) if dices else None,
        "member_volumes_cm3": [_round(v, 3) for v in volumes],
        "volume_cv": _round(float(np.std(volumes)) / mean_volume) if len(volumes) > 1 and mean_volume > 0 else None,
    }
    if size > 1:  # E[p_i p_j], i != j, from the first two moments: (n E[p]² - E[p²]) / (n - 1)
        mean, square = maps[1].double(), maps[3].double()
        pairs = ((size * mean * mean - square) / (size - 1)).clamp_(min=0).sum()
        numbers["endosteal_soft_dice"] = _round(float(pairs / mean.sum())) if float(mean.sum()) > 0 else None
    return numbers


def decoded_numbers(outer: np.ndarray, inner: np.ndarray) -> dict[str, Any]:
    """Numbers of the decoded periosteal (``outer``) and endosteal (``inner``) masks before postprocessing.

    Returns
    -------
    dict
        ``endosteal_outside_fraction`` and ``component_voxels`` (sizes of the
        26-connected periosteal components, largest first).
    """
    outer, inner = np.asarray(outer, bool), np.asarray(inner, bool)
    n_inner = int(inner.sum())
    outside = int((inner & ~outer).sum())
    sizes: list[int] = []
    if outer.any():
        box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(outer))
        components, n = ndimage.label(outer[box], structure=np.ones((3, 3, 3), bool))
        sizes = sorted(np.bincount(components.ravel())[1:].tolist(), reverse=True)
    return {"endosteal_outside_fraction": _round(outside / n_inner) if n_inner else 0.0,
            "component_voxels": [int(v) for v in sizes]}


def label_numbers(label: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, Any]:
    """Plausibility numbers of a 0/1/2 label map ``(z, y, x)`` with ``(x, y, z)`` spacing in mm.

    Returns
    -------
    dict
        ``edge_area_mm2`` (femur on the in-plane border), ``cut_at_first_slice`` /
        ``cut_at_last_slice``, ``trabecular_touching_background`` (fraction of
        trabecular boundary voxels with a background face-neighbour),
        ``femurs`` (per 26-connected femur ≥ 1 cm³, largest first: volume, length
        spanned along z, mean cross-section), ``cortical_thickness_mm`` (median
        distance from the outer cortical voxels to the nearest trabecular voxel,
        ``None`` without trabecular bone), ``trabecular_fraction``.
    """
    label = np.asarray(label)
    sx, sy, sz = (float(v) for v in spacing)
    outer = np.asarray(periosteal_mask(label), bool)
    numbers: dict[str, Any] = {"edge_area_mm2": 0.0, "cut_at_first_slice": False, "cut_at_last_slice": False,
                               "trabecular_touching_background": 0.0, "femurs": [], "cortical_thickness_mm": None,
                               "trabecular_fraction": None}
    if not outer.any():
        return numbers
    edge = (outer[:, :, 0].sum() + outer[:, :, -1].sum()) * sy * sz + (outer[:, 0, :].sum() + outer[:, -1, :].sum()) * sx * sz
    numbers["edge_area_mm2"] = _round(float(edge), 1)
    numbers["cut_at_first_slice"], numbers["cut_at_last_slice"] = bool(outer[0].any()), bool(outer[-1].any())
    box = tuple(slice(max(0, int(i.min()) - 1), int(i.max()) + 2) for i in np.nonzero(outer))
    part, outer = label[box], outer[box]
    inner = np.asarray(endosteal_mask(part), bool)
    cortex = np.asarray(cortical_mask(part), bool)
    numbers["trabecular_fraction"] = _round(float(inner.sum()) / float(outer.sum()))
    background = ~outer
    # the first and last slices of the scan are not background beyond the field of view
    grown = ndimage.binary_dilation(background, structure=ndimage.generate_binary_structure(3, 1))
    if inner.any():
        inner_boundary = inner & ~ndimage.binary_erosion(inner, border_value=1)
        touching = inner_boundary & grown
        numbers["trabecular_touching_background"] = _round(float(touching.sum()) / max(int(inner_boundary.sum()), 1))
        outer_cortex = cortex & grown
        if outer_cortex.any():
            distance = ndimage.distance_transform_edt(~inner, sampling=(sz, sy, sx))
            numbers["cortical_thickness_mm"] = _round(float(np.median(distance[outer_cortex])), 3)
    components, n = ndimage.label(outer, structure=np.ones((3, 3, 3), bool))
    voxel_mm3 = sx * sy * sz
    femurs = []
    for index, sl in enumerate(ndimage.find_objects(components), 1):
        volume = float((components[sl] == index).sum()) * voxel_mm3
        if volume < 1000.0:
            continue
        length = (sl[0].stop - sl[0].start) * sz
        femurs.append({"volume_cm3": _round(volume / 1000.0, 3), "length_mm": _round(length, 1),
                       "cross_section_mm2": _round(volume / length, 1)})
    numbers["femurs"] = sorted(femurs, key=lambda f: -f["volume_cm3"])
    return numbers


def quality_report(
    label: np.ndarray,
    spacing: tuple[float, float, float],
    settings: QCSettings | None = None,
    decoded: dict[str, Any] | None = None,
    ensemble: dict[str, Any] | None = None,
    uncertainty: np.ndarray | None = None,
    femurs: int | None = None,
) -> dict[str, Any]:
    """The contents of ``qc.json``: ``pass``, ``flags`` and the numbers behind them.

    Parameters
    ----------
    label
        Final 0/1/2 map ``(z, y, x)``.
    spacing
        ``(x, y, z)`` mm.
    settings
        :class:`QCSettings`.
    decoded
        :func:`decoded_numbers` of the masks before postprocessing, if known.
    ensemble
        :func:`ensemble_agreement`, if the ensemble's moments were computed.
    uncertainty
        Ensemble standard deviation on the label's grid, if computed.
    femurs
        Femora kept by the postprocessing (1 or 2); default: those of the label map.

    Returns
    -------
    dict
        ``pass`` (bool), ``flags`` (names from :data:`QC_FLAGS`), ``reasons``
        (one sentence per flag), ``label``, ``decoded``, ``ensemble`` numbers and
        the ``thresholds`` used.
    """
    settings = settings or QCSettings()
    numbers = label_numbers(label, spacing)
    flags: dict[str, str] = {}
    if not numbers["femurs"] and not np.asarray(periosteal_mask(label)).any():
        flags["empty"] = QC_FLAGS["empty"]
    if ensemble is not None:
        if ensemble.get("member_dice_min") is not None and ensemble["member_dice_min"] < settings.min_member_dice:
            flags["ensemble_disagreement"] = f"member Dice {ensemble['member_dice_min']:.3f} < {settings.min_member_dice}"
        if ensemble.get("volume_cv") is not None and ensemble["volume_cv"] > settings.max_volume_cv:
            flags["volume_variation"] = f"member volume CV {ensemble['volume_cv']:.3f} > {settings.max_volume_cv}"
    if uncertainty is not None:
        shell = np.asarray(cortical_mask(label), bool)
        ensemble = dict(ensemble or {})
        ensemble["shell_uncertainty"] = _round(float(np.asarray(uncertainty)[shell].mean())) if shell.any() else None
        if ensemble["shell_uncertainty"] is not None and ensemble["shell_uncertainty"] > settings.max_shell_uncertainty:
            flags["uncertain_cortex"] = (f"mean uncertainty in the cortical shell {ensemble['shell_uncertainty']:.3f} "
                                         f"> {settings.max_shell_uncertainty}")
    outside = float((decoded or {}).get("endosteal_outside_fraction") or 0.0)
    if outside > settings.max_endosteal_outside:
        flags["endosteal_outside_periosteal"] = (f"decoded endosteal voxels outside the periosteal mask "
                                                 f"{outside:.3f} > {settings.max_endosteal_outside}")
    if numbers["edge_area_mm2"] > settings.max_edge_area_mm2:
        flags["field_of_view_edge"] = f"femur on the in-plane edge over {numbers['edge_area_mm2']:.0f} mm²"
    kept = femurs if femurs is not None else max(1, min(2, len(numbers["femurs"])))
    if decoded is not None and decoded["component_voxels"]:
        sizes = decoded["component_voxels"]
        decoded = {**decoded, "extra_component_fraction": _round(sum(sizes[kept:]) / max(sum(sizes[:kept]), 1))}
    if len(numbers["femurs"]) > kept:
        flags["extra_components"] = f"{len(numbers['femurs'])} pieces of 1 cm³ or more for {kept} femur(s)"
    low, high = settings.cross_section_mm2
    implausible = [f for f in numbers["femurs"][:kept] if not low <= f["cross_section_mm2"] <= high]
    if "empty" not in flags and not numbers["femurs"]:
        flags["implausible_volume"] = "no piece of 1 cm³ or more"
    elif implausible:
        flags["implausible_volume"] = (f"mean cross-section {implausible[0]['cross_section_mm2']:.0f} mm² outside "
                                       f"{low:.0f}-{high:.0f}")
    if "empty" not in flags:
        thickness = numbers["cortical_thickness_mm"]
        low, high = settings.cortical_thickness_mm
        if thickness is None or not low <= thickness <= high:
            flags["implausible_cortical_thickness"] = (
                "no trabecular bone or no outer cortex" if thickness is None
                else f"median cortical thickness {thickness:.2f} mm outside {low}-{high}")
    return {"pass": not flags, "flags": sorted(flags), "reasons": flags, "label": numbers,
            "decoded": decoded, "ensemble": ensemble, "thresholds": asdict(settings)}
