#!/usr/bin/env bash
# Download, on a machine with network access, the wheels the GPU machine lacks (Python 3.12, x86_64,
# CUDA 12 spconv for its preinstalled torch) into benchmarks/wheels/ (git-ignored), then pack them into
# parts small enough for one transfer each. benchmarks/gpu_check.sh re-joins and installs them offline.
#
#   bash benchmarks/fetch_gpu_wheels.sh [DIR]     # default DIR: benchmarks/wheels
#   PART_MB=60 (part size), PYTHON=python3 (the pip to download with)
#
# Result: DIR/wheels.tar.part00, part01, ... (PART_MB MB each, the last smaller) and DIR/wheels.tar.sha256.
# spconv-cu126 2.3.8 requires cumm-cu126 >=0.7.11,<0.8 (not 0.8.x), pccm, ccimport, pybind11, fire, numpy;
# pip resolves that closure for the target. torch's own dependencies (sympy, mpmath) are left out: the GPU
# machine has torch.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-benchmarks/wheels}
PART_MB=${PART_MB:-60}
PY=${PYTHON:-python3}
REQUIREMENTS=(spconv-cu126==2.3.8 'cumm-cu126>=0.7.11,<0.8' numpy easydict pyyaml tensorboardX tqdm matplotlib
              protobuf google-crc32c pytest)
mkdir -p "$DIR/whl"
"$PY" -m pip download "${REQUIREMENTS[@]}" --dest "$DIR/whl" --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64
rm -f "$DIR"/whl/sympy-*.whl "$DIR"/whl/mpmath-*.whl
rm -f "$DIR"/wheels.tar.part* "$DIR/wheels.tar.sha256"
tar -C "$DIR" -cf - whl | tee >(sha256sum | cut -d' ' -f1 > "$DIR/wheels.tar.sha256") \
    | split -b "${PART_MB}M" -d - "$DIR/wheels.tar.part"
sleep 1   # let the checksum writer finish
ls -l "$DIR"/wheels.tar.part* "$DIR/wheels.tar.sha256"
echo "$(ls "$DIR"/whl | wc -l) wheels, $(du -sh "$DIR/whl" | cut -f1) in $(ls "$DIR"/wheels.tar.part* | wc -l) parts:"
echo "carry one part per device call (benchmarks/RESULTS.md, 'GPU check'), the last one with wheels.tar.sha256"
