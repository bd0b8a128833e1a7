"""Tests of femurseg.analysis.calibration, rods and phantoms: the HU → density line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import stats

from femurseg.analysis.calibration import (
    CalibrationLine,
    calibrate,
    calibrate_internal,
    calibrate_phantom,
    fit_line,
    fit_phantom_line,
    load_calibration_json,
)
from femurseg.analysis.phantoms import PHANTOMS, PhantomDefinition, get_phantom, register_phantom
from femurseg.errors import CalibrationError


def _check_truth(line: CalibrationLine, meta: dict, slope_rel: float = 0.015, intercept_hu: float = 3.0) -> None:
    truth = meta["calibration"]
    assert abs(line.slope / truth["slope"] - 1) < slope_rel, (line.slope, truth["slope"])
    assert abs(line.intercept - truth["intercept"]) < intercept_hu, (line.intercept, truth["intercept"])


def test_fit_line_matches_scipy_linregress():
    rng = np.random.default_rng(0)
    x = np.array([0.0, 50.0, 100.0, 200.0])
    y = 3.0 + 1.22 * x + rng.normal(0, 2.0, 4)
    fit, ref = fit_line(x, y), stats.linregress(x, y)
    assert fit["slope"] == pytest.approx(ref.slope) and fit["intercept"] == pytest.approx(ref.intercept)
    assert fit["slope_se"] == pytest.approx(ref.stderr) and fit["intercept_se"] == pytest.approx(ref.intercept_stderr)
    assert fit["r2"] == pytest.approx(ref.rvalue ** 2)


def test_water_corrected_fit_follows_qct_pro():
    definition = PhantomDefinition("water_rods", (-50.0, 60.0, 160.0, 380.0), water_mg_cm3=(1010.0, 1100.0, 1120.0, 920.0))
    sigma_ct, beta_ct = 1.25, -5.0
    hu = [beta_ct + sigma_ct * d + (w - 999.6) + 0.2174 * d for d, w in zip(definition.densities_mg_cm3,
                                                                                  definition.water_mg_cm3)]
    # HU - water = (beta_ct - 999.6) + (sigma_ct + 0.2174) * d  =>  fitted back to sigma_ct, beta_ct
    fit = fit_phantom_line(definition, [0, 1, 2, 3], hu)
    assert fit["slope"] == pytest.approx(sigma_ct, abs=1e-9)
    assert fit["intercept"] == pytest.approx(beta_ct, abs=1e-6)


def test_registry_names_json_and_errors(tmp_path):
    assert {"synthetic_k2hpo4", "qrm_bdc_3", "qrm_bdc_6"} <= set(PHANTOMS.names())
    with pytest.raises(CalibrationError, match="synthetic_k2hpo4"):
        get_phantom("synthetic_k2hpo5")
    path = tmp_path / "site_phantom.json"
    path.write_text(json.dumps({"densities_mg_cm3": [0, 75, 150], "material": "hydroxyapatite", "rod_radius_mm": 6}))
    definition = get_phantom(path)
    assert definition.name == "site_phantom" and definition.material == "hydroxyapatite"
    assert definition.densities_mg_cm3 == (0.0, 75.0, 150.0)
    path.write_text(json.dumps({"densities_mg_cm3": [0, 75], "colour": "blue"}))
    with pytest.raises(CalibrationError, match="unknown keys"):
        get_phantom(path)
    register_phantom(PhantomDefinition("test_site_phantom", (0.0, 100.0)))
    assert get_phantom("test_site_phantom").n_rods == 2
    with pytest.raises(ValueError, match="already registered"):
        register_phantom(PhantomDefinition("test_site_phantom", (0.0, 50.0)))
    with pytest.raises(ValueError, match="material"):
        PhantomDefinition("bad", (0.0, 1.0), material="calcium")


@pytest.mark.parametrize("side", ["left", "right"])
def test_phantom_rods_recover_the_true_line(side, quick_left, quick_right):
    case = quick_left if side == "left" else quick_right
    line = calibrate(case.image, case.label)
    assert line.method == "phantom" and line.material == "k2hpo4"
    _check_truth(line, case.meta)
    assert line.r2 > 0.999 and line.slope_se is not None and line.slope_se < 0.02
    truth = {r["density_mg_cm3"]: r for r in case.meta["calibration"]["rods"]}
    for rod in line.rods:
        true = truth[rod["density_mg_cm3"]]
        assert np.hypot(rod["centre_mm"][0] - true["x_mm"], rod["centre_mm"][1] - true["y_mm"]) < 2.0
        assert abs(rod["mean_hu"] - true["hu"]) < 4.0


def test_user_densities_and_named_phantom_give_the_same_line(quick_left):
    named = calibrate(quick_left.image, phantom="synthetic_k2hpo4")
    given = calibrate(quick_left.image, densities=[200, 0, 100, 50])
    assert given.slope == pytest.approx(named.slope, rel=0.01) and given.phantom["name"] == "user"


def test_asynchronous_line_from_json_and_from_a_separate_scan(quick_left, tmp_path):
    line = calibrate_phantom(quick_left.image)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(line.to_dict()))
    again = load_calibration_json(path)
    assert again.method == "asynchronous" and again.slope == line.slope and again.source == str(path)
    (tmp_path / "bare.json").write_text('{"slope": 1.2, "intercept": -3}')
    assert calibrate(quick_left.image, calibration_json=tmp_path / "bare.json").intercept == -3.0
    (tmp_path / "bad.json").write_text('{"slope": 1.2}')
    with pytest.raises(CalibrationError, match="slope.*intercept"):
        load_calibration_json(tmp_path / "bad.json")
    separate = calibrate(quick_left.image, phantom_scan=quick_left.image)
    assert separate.method == "asynchronous" and separate.slope == pytest.approx(line.slope)


def test_given_line_and_conflicting_choices(quick_left):
    line = calibrate(quick_left.image, given=(1.25, -2.0))
    assert line.method == "given" and line.density(248.0) == pytest.approx(200.0)
    with pytest.raises(CalibrationError, match="choose one"):
        calibrate(quick_left.image, given=(1.25, -2.0), internal=True)
    with pytest.raises(CalibrationError, match="positive"):
        calibrate(quick_left.image, given=(-1.0, 0.0))


def test_internal_calibration_is_close_and_named(quick_left):
    line = calibrate_internal(quick_left.image, quick_left.label)
    assert line.method == "internal" and [r["name"] for r in line.references] == ["air", "fat", "muscle"]
    # gain and offset are corrected; the K2HPO4 slope of the phantom is drawn independently (1.15-1.35)
    _check_truth(line, quick_left.meta, slope_rel=0.12, intercept_hu=15.0)


def test_a_scan_without_phantom_falls_back_to_internal_and_says_so(quick_left):
    rod_y = quick_left.meta["calibration"]["rods"][0]["y_mm"]
    origin_y, sy = quick_left.image.GetOrigin()[1], quick_left.image.GetSpacing()[1]
    keep = int((rod_y - 25.0 - origin_y) / sy)
    cropped = quick_left.image[:, :keep, :]
    line = calibrate(cropped, quick_left.label[:, :keep, :])
    assert line.method == "internal"
    assert "no calibration phantom found" in line.warnings[0]
    with pytest.raises(CalibrationError, match="rods not found"):
        calibrate(cropped, phantom="synthetic_k2hpo4")


def test_bare_phantom_rods_and_a_rod_hidden_in_the_block(make_phantom):
    # the 0 mg/cm³ rod has the block's HU: placed by the pitch
    image = make_phantom([5.0, 65.0, 125.0, 245.0])
    line = calibrate(image, phantom="synthetic_k2hpo4")
    assert line.slope == pytest.approx(1.2, rel=0.01) and line.intercept == pytest.approx(5.0, abs=2.0)
    # where exactly it lies cannot be told (both ends of the row read the block): either end
    inferred = [r["inferred"] for r in line.rods]
    assert sum(inferred) == 1 and (inferred[0] or inferred[-1])
    assert line.notes and not line.warnings


def test_gates_warn_and_refuse(make_phantom):
    bent = make_phantom([5.0, 70.0, 140.0, 225.0])  # R² just under 0.98... warns
    line = calibrate(bent, phantom="synthetic_k2hpo4")
    assert line.r2 < 0.999
    wrong = make_phantom([5.0, 200.0, 215.0, 230.0])  # not a line against 0/50/100/200
    with pytest.raises(CalibrationError, match="refused: R²"):
        calibrate(wrong, phantom="synthetic_k2hpo4")
    line = calibrate(make_phantom([5.0, 65.0, 125.0, 245.0], rod_texture={2: 60.0}), phantom="synthetic_k2hpo4")
    assert any("high SD" in w for w in line.warnings)


def test_phantom_cut_by_the_field_of_view(make_phantom):
    # two rods beyond the image's right edge: too few left to trust
    image = make_phantom([245.0, 125.0, 65.0, 5.0], shift_x=80.0)
    with pytest.raises(CalibrationError, match="out of the field of view"):
        calibrate(image, phantom="synthetic_k2hpo4")
    # one rod cut: fitted on three, with a warning
    image = make_phantom([5.0, 65.0, 125.0, 245.0], shift_x=-52.0)
    line = calibrate(image, phantom="synthetic_k2hpo4")
    assert len(line.rods) == 3 and any("cut by the edge" in w for w in line.warnings)
    assert line.slope == pytest.approx(1.2, rel=0.02)


def test_no_rods_at_all(make_phantom):
    image = make_phantom([5.0, 5.0, 5.0, 5.0])
    with pytest.raises(CalibrationError, match="rods not found"):
        calibrate(image, phantom="synthetic_k2hpo4")


def test_density_of_arrays_is_float32():
    line = CalibrationLine("given", slope=1.25, intercept=-5.0)
    out = line.density(np.array([[-5, 245]], np.int16))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 200.0]]
