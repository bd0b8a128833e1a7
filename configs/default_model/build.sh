#!/usr/bin/env bash
# Rebuild a bundled default model from synthetic phantoms alone (docs/model_card.md).
#   bash configs/default_model/build.sh [NAME]     # NAME: femur-ct-v3 (default), femur-ct-v2 or femur-ct-v1
# ~1.3 h on 2 CPU cores; minutes on a GPU (add --trainer.precision bf16-mixed there).
# 1. femurseg fit generates the 90-phantom cohort of the recipe (seed 100000; transfer_knee for v3,
#    transfer for v1/v2) and trains 2500 steps
#    with configs/default_model/NAME.yaml;
# 2. femurseg models --package writes femurseg/models/weights/NAME.pt (weights and card)
#    with the command, seed and git commit recorded, and prints its SHA-256.
# Extra arguments after NAME go to femurseg fit.
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-femur-ct-v3}"
shift || true
export WANDB_MODE="${WANDB_MODE:-offline}"
femurseg fit --config "configs/default_model/${name}.yaml" "$@"
description="$(sed -n 's/^# description: //p' "configs/default_model/${name}.yaml")"
femurseg models --package "runs/default_model/${name}/fold_all/checkpoints/last.ckpt" \
    --name "${name}" --recipe "bash configs/default_model/build.sh ${name}" --description "${description}"
