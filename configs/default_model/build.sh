#!/usr/bin/env bash
# Rebuild a bundled default model from synthetic phantoms alone (docs/model_card.md).
#   bash configs/default_model/build.sh [NAME]     # NAME: femur-ct-v5 (default), v4, v3, v2 or v1
# v1-v3 train from scratch (about 1 h each on 2 CPU cores); v4 fine-tunes the bundled v3 and v5 the
# bundled v4 (about 22 min each): rebuilding the default from nothing is v3, v4, v5 in that order,
# about 1 h 50 min here; minutes on a GPU (add --trainer.precision bf16-mixed there).
# 1. femurseg fit generates the 90-phantom cohort of the recipe (its synthetic_preset and
#    synthetic_seed) and trains trainer.max_steps steps with configs/default_model/NAME.yaml;
# 2. femurseg models --package writes femurseg/models/weights/NAME.pt (weights and card)
#    with the command, seed and git commit recorded, and prints its SHA-256.
# Extra arguments after NAME go to femurseg fit.
set -euo pipefail
cd "$(dirname "$0")/../.."
name="${1:-femur-ct-v5}"
shift || true
export WANDB_MODE="${WANDB_MODE:-offline}"
femurseg fit --config "configs/default_model/${name}.yaml" "$@"
description="$(sed -n 's/^# description: //p' "configs/default_model/${name}.yaml")"
femurseg models --package "runs/default_model/${name}/fold_all/checkpoints/last.ckpt" \
    --name "${name}" --recipe "bash configs/default_model/build.sh ${name}" --description "${description}"
