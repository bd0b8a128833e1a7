"""Does a model find the femur without a bright cortical rim? (docs/model_card.md, femur-ct-v5)

Usage::

    python benchmarks/rim_dependence.py --model femur-ct-v5 [--seed 300000 --n 60]

Among phantoms ``seed .. seed+n-1`` of the ``transfer_knee2`` preset, the knee-level fields of view
(about one in five) give one axial slice 20 mm above the lowest femur voxel (the condyles). Each
slice is extruded into a prism (as ``benchmarks/realct.py`` does with real slices) and segmented
twice: as rendered, and with every cortical voxel (label 1, and the ring one voxel outside it)
painted with the median grey of the trabecular bone. Prints the periosteal Dice of both per scan
and their medians: a model that segments by looking for a bright rim loses the femur in the second.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from realct import dice, extruded  # benchmarks/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundled model (default: the default model)")
    parser.add_argument("--seed", type=int, default=300000)
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    from femurseg.data.synthetic import PRESETS, generate_subject
    from femurseg.inference.predictor import InferenceSettings, Predictor
    from femurseg.inference.refine import Refinement
    from femurseg.models.checkpoints import load_checkpoints
    from femurseg.models.zoo import model_path

    predictor = Predictor(load_checkpoints([model_path(args.model)]),
                          InferenceSettings(tta="none", refinement=Refinement()))
    knee = PRESETS["transfer_knee2"].knee
    scores: dict[str, list[float]] = {"rendered": [], "rim removed": []}
    for seed in range(args.seed, args.seed + args.n):
        if not np.random.default_rng([seed, 5]).random() < knee:  # the renderer's knee-field draw
            continue
        case = generate_subject(seed, preset="transfer_knee2")
        image, label = sitk.GetArrayFromImage(case.image), sitk.GetArrayFromImage(case.label)
        rows = np.nonzero((label > 0).sum((1, 2)))[0]
        z = min(int(rows.min() + 20.0 / case.image.GetSpacing()[2]), image.shape[0] - 1)
        section, truth = image[z].astype(np.float32), label[z]
        rim = (truth == 1) | (ndimage.binary_dilation(truth == 1) & (truth != 2))
        variants = {"rendered": section,
                    "rim removed": np.where(rim, np.median(section[truth == 2]), section).astype(np.float32)}
        line = [f"seed {seed}"]
        for name, array in variants.items():
            slice_image = sitk.GetImageFromArray(array)
            slice_image.SetSpacing(case.image.GetSpacing()[:2])
            result = predictor.predict(extruded(slice_image, 32, 2.0), f"{seed}")
            scores[name].append(dice(sitk.GetArrayFromImage(result.label)[16] >= 1, truth > 0))
            line.append(f"{name} {scores[name][-1]:.2f}")
        print("  ".join(line), flush=True)
    print("median Dice: " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in scores.items())
          + f" ({len(scores['rendered'])} knee fields)")


if __name__ == "__main__":
    main()
