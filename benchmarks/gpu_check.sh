#!/usr/bin/env bash
# The GPU check, one script of a few minutes on one GPU:
#   1 env      the GPU, Python, torch and its CUDA
#   2 install  what the machine lacks, offline, from the wheels of benchmarks/fetch_gpu_wheels.sh
#              (parts re-joined and checksummed first)
#   3 spconv   spconv's CUDA build runs with this torch (forward + backward against dense conv3d);
#              nothing is timed when it does not
#   4 tests    the test suite, with CUDA visible (tests/test_cuda.py runs only there)
#   5 bench    benchmarks/run.py on the GPU at the paper's batch (8): fp32, then --amp (train step only);
#              peak GPU memory and samples per second are in its tables
#   6 results  the dated rows, appended to benchmarks/RESULTS.md and copied to $GPU_CHECK_OUT
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh   # every stage on the CPU with tiny settings
#
# Environment: WHEELS (default benchmarks/wheels), GPU_CHECK_OUT (log, rows; default $OUT, else
# benchmarks/gpu_check_out), PYTHON (default python3), GPU_CHECK_TESTS (pytest arguments; default: tests,
# in a dry run one small test file), GPU_CHECK_TEST_TIMEOUT (seconds, default 240), GPU_CHECK_BATCH (default
# 8). A dry run never installs and leaves RESULTS.md alone. The output is also written to $GPU_CHECK_OUT/gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY_RUN:-0}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-benchmarks/wheels}
OUT_DIR=${GPU_CHECK_OUT:-${OUT:-benchmarks/gpu_check_out}}
BATCH=${GPU_CHECK_BATCH:-8}
TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT:-240}
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1   # the whole output also lands next to the rows
: > "$OUT_DIR/stages.txt"
: > "$OUT_DIR/rows.md"
START=$SECONDS
if [ "$DRY" = 1 ]; then
    DEVICE=cpu; BENCH=(--tiny --device cpu --batch 1); AMP=(); TESTS=${GPU_CHECK_TESTS:-tests/test_occupancy_head.py}
else
    DEVICE=cuda; BENCH=(--quick --device cuda --batch "$BATCH"); AMP=(--amp); TESTS=${GPU_CHECK_TESTS:-tests}
fi
stage() { echo; echo "== [$((SECONDS - START)) s] stage $1: $2"; }
done_stage() { echo "$1 ok $((SECONDS - START)) s" >> "$OUT_DIR/stages.txt"; }
fail() { echo "GPU CHECK FAILED: $*" >&2; exit 1; }

stage env "machine"
if [ "$DRY" = 1 ]; then
    echo "dry run: CPU only, tiny settings"
else
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || fail "nvidia-smi: no GPU"
fi
"$PY" - "$DEVICE" <<'PY' || fail "torch cannot use the device"
import sys, torch
print(f'python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, '
      f'cuda available: {torch.cuda.is_available()}')
if sys.argv[1] == 'cuda':
    assert torch.cuda.is_available(), 'torch sees no CUDA device'
    print(torch.cuda.get_device_name(), f'{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB')
PY
done_stage env

stage install "missing packages from $WHEELS"
if ls "$WHEELS"/wheels.tar.part* >/dev/null 2>&1; then
    if [ -f "$WHEELS/wheels.tar.sha256" ]; then
        actual=$(cat "$WHEELS"/wheels.tar.part* | sha256sum | cut -d' ' -f1)
        [ "$actual" = "$(cat "$WHEELS/wheels.tar.sha256")" ] \
            || fail "the wheel parts in $WHEELS do not match wheels.tar.sha256 (a part missing or partial: $(ls "$WHEELS" | tr '\n' ' '))"
        echo "parts checksum ok"
    else
        echo "no wheels.tar.sha256 next to the parts: joining them unchecked"
    fi
    cat "$WHEELS"/wheels.tar.part* | tar -xf - -C "$WHEELS" || fail "cannot unpack the wheel parts in $WHEELS"
fi
MISSING=$("$PY" - <<'PY'
import importlib.util
needed = {'spconv': 'spconv-cu126==2.3.8', 'numpy': 'numpy', 'easydict': 'easydict', 'yaml': 'pyyaml',
          'tensorboardX': 'tensorboardX', 'tqdm': 'tqdm', 'matplotlib': 'matplotlib',
          'google.protobuf': 'protobuf', 'google_crc32c': 'google-crc32c', 'pytest': 'pytest'}
def present(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
print(' '.join(req for module, req in needed.items() if not present(module)))
PY
)
if [ -z "$MISSING" ]; then
    echo "nothing to install"
else
    [ -d "$WHEELS/whl" ] || fail "missing: $MISSING; no wheels in $WHEELS/whl: run benchmarks/fetch_gpu_wheels.sh where there is network and carry the parts (benchmarks/RESULTS.md)"
    INSTALL=("$PY" -m pip install --no-index --find-links "$WHEELS/whl" $MISSING)
    echo "${INSTALL[*]}"
    if [ "$DRY" = 1 ]; then
        echo "dry run: not installing ($(ls "$WHEELS"/whl | wc -l) wheels there)"
    else
        "${INSTALL[@]}" || fail "pip could not install $MISSING from $WHEELS/whl"
    fi
fi
done_stage install

stage spconv "spconv with this torch on $DEVICE"
"$PY" benchmarks/spconv_check.py --device "$DEVICE" || fail "spconv does not run with this torch on $DEVICE (see above); nothing was timed"
done_stage spconv

stage tests "pytest $TESTS (at most ${TEST_TIMEOUT} s; a failure is reported at the end, the benchmarks still run)"
# shellcheck disable=SC2086
if timeout "$TEST_TIMEOUT" "$PY" -m pytest $TESTS -q -p no:cacheprovider; then
    TESTS_OK=1
else
    TESTS_OK=0; echo "TESTS FAILED or timed out (exit $?)"
fi
done_stage tests

stage bench "benchmarks/run.py ${BENCH[*]} (fp32), then the train step with --amp"
"$PY" benchmarks/run.py "${BENCH[@]}" --row "$OUT_DIR/rows.md" || fail "benchmarks/run.py (fp32)"
if [ "$DRY" = 1 ]; then
    echo "dry run: no --amp on the CPU; on the GPU: benchmarks/run.py ${BENCH[*]} --amp --only_step"
else
    "$PY" benchmarks/run.py "${BENCH[@]}" "${AMP[@]}" --only_step --row "$OUT_DIR/rows.md" || fail "benchmarks/run.py ${AMP[*]}"
fi
done_stage bench

stage results "rows"
[ -s "$OUT_DIR/rows.md" ] || fail "benchmarks/run.py wrote no rows"
cat "$OUT_DIR/rows.md"
if [ "$DRY" != 1 ]; then
    cat "$OUT_DIR/rows.md" >> benchmarks/RESULTS.md
    echo "appended to benchmarks/RESULTS.md (GPU table at its end)"
fi
done_stage results
[ "$TESTS_OK" = 1 ] || fail "the tests failed or timed out (see the tests stage above); the rows were written"
echo "GPU check done in $((SECONDS - START)) s"
