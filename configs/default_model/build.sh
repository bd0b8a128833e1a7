#!/usr/bin/env bash
# Rebuild the bundled default model femur-ct-v1 from synthetic phantoms alone (docs/model_card.md).
#   bash configs/default_model/build.sh            # ~1.3 h on 2 CPU cores; minutes on a GPU
# 1. femurseg fit generates the 90-phantom `transfer` cohort (seed 100000) and trains 2500 steps;
# 2. femurseg models --package writes femurseg/models/bundled/femur-ct-v1.pt (weights and card)
#    with the command, seed and git commit recorded, and prints its SHA-256.
set -euo pipefail
cd "$(dirname "$0")/../.."
export WANDB_MODE="${WANDB_MODE:-offline}"
femurseg fit --config configs/default_model/femur-ct-v1.yaml "$@"
femurseg models --package runs/default_model/femur-ct-v1/fold_all/checkpoints/last.ckpt \
    --name femur-ct-v1 --recipe "bash configs/default_model/build.sh"
