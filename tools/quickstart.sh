#!/usr/bin/env bash
# End to end on the CPU: install, write synthetic KITTI sweeps, pretrain the stock SECOND backbone with ALSO,
# export it and load it with OpenPCDet's loader (train.py does both at the end of every run), then say
# what the checkpoint is. Re-running resumes.
#   bash tools/quickstart.sh           # ~3 minutes after install: a pipeline check
#   bash tools/quickstart.sh --full    # 192 iterations, then the linear probe: pretrained vs random backbone
set -euo pipefail
cd "$(dirname "$0")/.."
FULL=0
case "${1:-}" in
    --full) FULL=1 ;;
    "") ;;
    *) echo "usage: bash tools/quickstart.sh [--full]" >&2; exit 2 ;;
esac
VENV=${VENV:-.venv}
bash tools/install_cpu.sh
PY="$VENV/bin/python"
CFG=cfgs/also_pretrain_demo.yaml
DETECTOR=cfgs/detector_cfgs/kitti_second.yaml   # the backbone parts of OpenPCDet's kitti_models/second.yaml
if [ "$FULL" = 1 ]; then TAG=quickstart_full; EPOCHS=12; else TAG=quickstart; EPOCHS=3; fi
CKPT=output/also_pretrain_demo/$TAG/ckpt

"$PY" tools/make_synthetic.py --out data/synthetic_kitti --num_sweeps 40 --seed 0 --workers 2 \
    --bev_png output/synthetic_bev.png
# SECOND's backbone, range and voxels come from the detector config; --set (applied after it) narrows the
# range to a 25.6 m front box so that the CPU trains a few iterations a minute. Weight shapes do not depend
# on the range, so the export loads into the full-range detector.
"$PY" tools/train.py --cfg_file "$CFG" --detector_cfg "$DETECTOR" --epochs "$EPOCHS" --workers 2 \
    --extra_tag "$TAG" --fix_random_seed --set DATA_CONFIG.POINT_CLOUD_RANGE '[0,-12.8,-3,25.6,12.8,1]'
# every held-out sweep (the config validates on every 20th), next to answering "empty" everywhere
"$PY" tools/evaluate.py --cfg_file "$CKPT/../also_pretrain_demo_resolved.yaml" \
    --ckpt "$CKPT/checkpoint_epoch_$EPOCHS.pth" --brief --set DATA_CONFIG.SAMPLE_INTERVAL.test 1
echo "ready for OpenPCDet's --pretrained_model: $CKPT/pretrained_backbone.pth"
if [ "$FULL" = 1 ]; then
    # the evidence, on the fastest probe: pretrained vs random backbone, same seed
    "$PY" tools/probe.py --cfg_file "$CKPT/../also_pretrain_demo_resolved.yaml" \
        --ckpt "$CKPT/pretrained_backbone.pth" --max_sweeps 8 --brief
else
    echo "what it is: SECOND's backbone after $EPOCHS short epochs on synthetic sweeps, a check that the whole" \
         "pipeline works and loads into OpenPCDet; not yet a useful pretraining (the accuracy above is about" \
         "the trivial one). Longer, with the linear probe: bash tools/quickstart.sh --full"
fi
