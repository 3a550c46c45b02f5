#!/usr/bin/env bash
# End to end on the CPU: install, generate synthetic KITTI sweeps, pretrain ~200 iterations with ALSO,
# export the backbone, and check that it loads into a stock SECOND backbone. Re-running resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EPOCHS=${EPOCHS:-12}
bash tools/install_cpu.sh
PY="$VENV/bin/python"
OUT=output/also_pretrain_demo/quickstart/ckpt

"$PY" tools/make_synthetic.py --out data/synthetic_kitti --num_sweeps 40 --seed 0 --workers 2 \
    --bev_png output/synthetic_bev.png
"$PY" tools/train.py --cfg_file cfgs/also_pretrain_demo.yaml --epochs "$EPOCHS" --workers 2 \
    --extra_tag quickstart --fix_random_seed
"$PY" tools/export_backbone.py --ckpt "$OUT/checkpoint_epoch_$EPOCHS.pth" --out "$OUT/pretrained_backbone.pth"
"$PY" tools/check_pretrained.py --ckpt "$OUT/pretrained_backbone.pth" --detector_cfg cfgs/detector_cfgs/kitti_second.yaml
echo "done: $OUT/pretrained_backbone.pth is ready for OpenPCDet's --pretrained_model"
# the evidence, on the fastest probe (about a minute): pretrained vs random backbone, same seeds
"$PY" tools/probe.py --cfg_file cfgs/also_pretrain_demo.yaml --ckpt "$OUT/pretrained_backbone.pth" --max_sweeps 8 --brief
