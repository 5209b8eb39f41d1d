#!/usr/bin/env bash
# One FLUX.2 klein image per predicted instruction, on every visible GPU.
#
#   bash scripts/run_image_generation.sh PLANNING_MODEL [extra imggen instructions arguments]
#   bash scripts/run_image_generation.sh all            [extra arguments]
#
# Examples:
#   CUDA_VISIBLE_DEVICES=0,1 bash scripts/run_image_generation.sh Qwen3-VL-4B-Instruct
#   bash scripts/run_image_generation.sh all --no_skip_existing
#   RAY_ADDRESS=auto bash scripts/run_image_generation.sh all --engine ray
#
# Runs `imggen instructions` when the imggen command is on PATH, else `$PYTHON -m
# imggen.pipelines.instructions` (PYTHON defaults to python3).
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi

model="$1"
shift
if [[ "$model" == "all" ]]; then
    which=(--all_planning_models)
else
    which=(--planning_model "$model")
fi

# Several GPU workers at once fragment less with expandable segments (the seed's advice).
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"

if command -v imggen >/dev/null 2>&1 && imggen instructions --help >/dev/null 2>&1; then
    exec imggen instructions "${which[@]}" "$@"
fi
exec "${PYTHON:-python3}" -m imggen.pipelines.instructions "${which[@]}" "$@"
