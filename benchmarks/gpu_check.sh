#!/usr/bin/env bash
# The GPU check, one script within an 8-minute device budget on one GPU. Every command runs under a time cap
# (`timeout`, the CAP_* values below, 4x in a dry run); with 2 s each to die after its cap they add up to
# 465 s, and the script refuses to start above 480 s, so the check ends within 8 minutes even if every stage hangs:
#   1 env      (40 s: nvidia-smi 15, torch 25) the GPU, Python, torch and its CUDA
#   2 install  (125 s: checksum 20, unpack 20, probe 15, pip 70) what the machine lacks, offline, from the
#              wheels of benchmarks/fetch_gpu_wheels.sh (parts re-joined and checksummed first)
#   3 spconv   (60 s) spconv's CUDA build runs with this torch (forward + backward against dense conv3d);
#              nothing is timed when it does not
#   4 tests    (130 s) tests/test_cuda.py and a handful of fast tests that take the CUDA path (GPU_TESTS below:
#              train.py end to end, --use_amp, non-finite steps, the OpenPCDet loader), not the whole suite
#              (the CPU runs that: tools/test.sh)
#   5 bench    (90 s: fp32 55, --amp 35) benchmarks/run.py on the GPU at the paper's batch (8): fp32, then
#              --amp (train step only); peak GPU memory and samples per second are in its tables
#   6 results  the dated rows, appended to benchmarks/RESULTS.md and copied to $GPU_CHECK_OUT
#   7 pretrain_probe (GPU_CHECK_PRETRAIN_SECONDS, default 240, cut to what is left of the budget; skipped below 60 s
#              or with GPU_CHECK_SKIP_PRETRAIN=1) stock SECOND pretrained on synthetic KITTI, then tools/det_probe.py
#              from it: its table, also in $GPU_CHECK_OUT/det_probe_table.md
# A stage past its cap is killed and reported ("ran past its N s cap").
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh   # every stage on the CPU with tiny settings
#
# Environment: WHEELS (default benchmarks/wheels), GPU_CHECK_OUT (log, rows; default $OUT, else
# benchmarks/gpu_check_out), PYTHON (default python3), GPU_CHECK_TESTS (pytest arguments; default GPU_TESTS;
# a dry run only collects GPU_TESTS, so a renamed test fails it, and runs one small test file),
# GPU_CHECK_TEST_TIMEOUT (the tests' cap in seconds, default 130), GPU_CHECK_BATCH (default 8). A dry run never installs and
# leaves RESULTS.md alone. The output is also written to $GPU_CHECK_OUT/gpu_check.log.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=${GPU_CHECK_DRY_RUN:-0}
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-benchmarks/wheels}
OUT_DIR=${GPU_CHECK_OUT:-${OUT:-benchmarks/gpu_check_out}}
BATCH=${GPU_CHECK_BATCH:-8}
# seconds per capped command; KILL_AFTER: the grace a command gets to die after its cap
CAP_SMI=15; CAP_TORCH=25; CAP_CHECKSUM=20; CAP_UNPACK=20; CAP_PROBE=15; CAP_PIP=70; CAP_SPCONV=60
CAP_TESTS=${GPU_CHECK_TEST_TIMEOUT:-130}; CAP_BENCH=55; CAP_AMP=35; KILL_AFTER=2; BUDGET=480
CAPS=$((CAP_SMI + CAP_TORCH + CAP_CHECKSUM + CAP_UNPACK + CAP_PROBE + CAP_PIP + CAP_SPCONV + CAP_TESTS + CAP_BENCH
        + CAP_AMP + 10 * KILL_AFTER))
SCALE=1; [ "$DRY" = 1 ] && SCALE=4   # a dry run's caps: 4x, for a slow shared CPU
if (( CAPS > BUDGET )); then
    echo "GPU CHECK FAILED: the stages' time caps add up to $CAPS s, over the $BUDGET s budget (GPU_CHECK_TEST_TIMEOUT=$CAP_TESTS)" >&2
    exit 2
fi
GPU_TESTS="tests/test_cuda.py
    tests/test_training.py::test_exported_backbone_loads_into_second
    tests/test_openpcdet_flags.py::test_openpcdet_flags_use_amp_acts_on_cuda_and_is_refused_on_the_cpu
    tests/test_nonfinite.py::test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint
    tests/test_backbones.py::test_detector_template_builds_and_loads"
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1   # the whole output also lands next to the rows
: > "$OUT_DIR/stages.txt"
: > "$OUT_DIR/rows.md"
START=$SECONDS
echo "time caps add up to $CAPS s (budget $BUDGET s)"
if [ "$DRY" = 1 ]; then
    DEVICE=cpu; BENCH=(--tiny --device cpu --batch 1); AMP=(); TESTS=${GPU_CHECK_TESTS:-tests/test_occupancy_head.py}
else
    DEVICE=cuda; BENCH=(--quick --device cuda --batch "$BATCH"); AMP=(--amp); TESTS=${GPU_CHECK_TESTS:-$GPU_TESTS}
fi
stage() { echo; echo "== [$((SECONDS - START)) s] stage $1: $2"; }
done_stage() { echo "$1 ok $((SECONDS - START)) s" >> "$OUT_DIR/stages.txt"; }
fail() { echo "GPU CHECK FAILED: $*" >&2; exit 1; }
capped() {  # capped SECONDS COMMAND...: COMMAND under a time cap; past it, killed and reported
    local cap=$(($1 * SCALE)) rc=0
    shift
    timeout --kill-after="$KILL_AFTER" "$cap" "$@" || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "TIMED OUT: $1 ran past its $cap s cap" >&2; fi
    return "$rc"
}

stage env "machine"
if [ "$DRY" = 1 ]; then
    echo "dry run: CPU only, tiny settings"
else
    capped "$CAP_SMI" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || fail "nvidia-smi: no GPU"
fi
capped "$CAP_TORCH" "$PY" - "$DEVICE" <<'PY' || fail "torch cannot use the device"
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
        actual=$(capped "$CAP_CHECKSUM" bash -c 'cat "$@" | sha256sum' _ "$WHEELS"/wheels.tar.part* | cut -d' ' -f1)
        [ "$actual" = "$(cat "$WHEELS/wheels.tar.sha256")" ] \
            || fail "the wheel parts in $WHEELS do not match wheels.tar.sha256 (a part missing or partial: $(ls "$WHEELS" | tr '\n' ' '))"
        echo "parts checksum ok"
    else
        echo "no wheels.tar.sha256 next to the parts: joining them unchecked"
    fi
    capped "$CAP_UNPACK" bash -c 'cat "${@:2}" | tar -xf - -C "$1"' _ "$WHEELS" "$WHEELS"/wheels.tar.part* \
        || fail "cannot unpack the wheel parts in $WHEELS"
fi
MISSING=$(capped "$CAP_PROBE" "$PY" - <<'PY'
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
    INSTALL=(capped "$CAP_PIP" "$PY" -m pip install --no-index --find-links "$WHEELS/whl" $MISSING)
    echo "${INSTALL[*]}"
    if [ "$DRY" = 1 ]; then
        echo "dry run: not installing ($(ls "$WHEELS"/whl | wc -l) wheels there)"
    else
        "${INSTALL[@]}" || fail "pip could not install $MISSING from $WHEELS/whl"
    fi
fi
done_stage install

stage spconv "spconv with this torch on $DEVICE"
capped "$CAP_SPCONV" "$PY" benchmarks/spconv_check.py --device "$DEVICE" || fail "spconv does not run with this torch on $DEVICE (see above); nothing was timed"
done_stage spconv

stage tests "pytest $(echo $TESTS) (at most ${CAP_TESTS} s; a failure is reported at the end, the benchmarks still run)"
if [ "$DRY" = 1 ]; then  # the GPU's list must still name real tests
    # shellcheck disable=SC2086
    capped 60 "$PY" -m pytest --collect-only -q -p no:cacheprovider $GPU_TESTS \
        || fail "GPU_TESTS names a test that does not exist (see above)"
fi
# shellcheck disable=SC2086
if capped "$CAP_TESTS" "$PY" -m pytest $TESTS -q -p no:cacheprovider; then
    TESTS_OK=1
else
    TESTS_OK=0; echo "TESTS FAILED or timed out (exit $?)"
fi
done_stage tests

stage bench "benchmarks/run.py ${BENCH[*]} (fp32), then the train step with --amp"
capped "$CAP_BENCH" "$PY" benchmarks/run.py "${BENCH[@]}" --row "$OUT_DIR/rows.md" || fail "benchmarks/run.py (fp32)"
if [ "$DRY" = 1 ]; then
    echo "dry run: no --amp on the CPU; on the GPU: benchmarks/run.py ${BENCH[*]} --amp --only_step"
else
    capped "$CAP_AMP" "$PY" benchmarks/run.py "${BENCH[@]}" "${AMP[@]}" --only_step --row "$OUT_DIR/rows.md" \
        || fail "benchmarks/run.py ${AMP[*]}"
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

# Stage 7, pretrain_probe (skippable: GPU_CHECK_SKIP_PRETRAIN=1): the stock SECOND backbone pretrained on synthetic
# KITTI for as many iterations as fit (GPU_CHECK_PRETRAIN_SECONDS, default 240, of which 40 % for the probe; never
# past what is left of the budget, skipped under 60 s), then tools/det_probe.py from it, pretrained vs scratch.
PRE_S=$(( ${GPU_CHECK_PRETRAIN_SECONDS:-240} * SCALE )); PRE_LEFT=$(( BUDGET * SCALE - (SECONDS - START) - 5 ))
(( PRE_S > PRE_LEFT )) && PRE_S=$PRE_LEFT
if [ "${GPU_CHECK_SKIP_PRETRAIN:-0}" = 1 ] || (( PRE_S < 60 )); then
    echo; echo "stage pretrain_probe skipped (GPU_CHECK_SKIP_PRETRAIN=${GPU_CHECK_SKIP_PRETRAIN:-0}, $PRE_S s left of the budget)"
else
    stage pretrain_probe "SECOND pretrained on synthetic KITTI for $((PRE_S * 6 / 10)) s, then the detection probe (at most $((PRE_S * 4 / 10)) s)"
    PRE_DIR="$OUT_DIR/pretrain_probe"; rm -rf "$PRE_DIR"
    if [ "$DRY" = 1 ]; then
        PRE_SWEEPS=10; PRE_WORKERS=1; PRE_CFG=cfgs/also_pretrain_demo.yaml   # one epoch of 2 iterations ends before the cap
        PRE_BOX=(DATA_CONFIG.POINT_CLOUD_RANGE '[0,-6.4,-3,12.8,6.4,1]')   # weight shapes do not depend on it
        PRE_TRAIN=(--batch_size 2 --epochs 1 --workers 0 --set DATA_CONFIG.SAMPLE_INTERVAL.train 2
                   DATA_CONFIG.QUERIES.NUM_QUERIES 256 OPTIMIZATION.CKPT_SAVE_ITERS 1 "${PRE_BOX[@]}")
        PRE_PROBE=(--iterations 2 --eval_every 2 --batch_size 1 --label_fraction 0.5 --max_val 2)
    else
        PRE_SWEEPS=200; PRE_WORKERS=8; PRE_CFG=cfgs/also_pretrain.yaml
        PRE_TRAIN=(--batch_size "$BATCH" --epochs 10000 --workers 8 --set OPTIMIZATION.CKPT_SAVE_ITERS 10)
        PRE_PROBE=(--iterations 200 --eval_every 100 --batch_size 4 --label_fraction 0.1 --max_val 20)
        PRE_BOX=()
    fi
    capped 60 "$PY" tools/make_synthetic.py --out "$PRE_DIR/data" --num_sweeps "$PRE_SWEEPS" --seed 0 --workers "$PRE_WORKERS" \
        || fail "tools/make_synthetic.py (pretrain_probe)"
    rc=0
    timeout --kill-after="$KILL_AFTER" $((PRE_S * 6 / 10)) "$PY" tools/train.py --cfg_file "$PRE_CFG" \
        --output_root "$PRE_DIR/train" --extra_tag gpu_check "${PRE_TRAIN[@]}" DATA_CONFIG.DATA_PATH "$PRE_DIR/data" \
        OPTIMIZATION.LOG_INTERVAL 10 || rc=$?   # stopped at its cap: the last checkpoint is at most 10 iterations old
    PRE_CKPT=$(ls -t "$PRE_DIR"/train/*/gpu_check/ckpt/{latest_model,checkpoint_epoch_*}.pth 2>/dev/null | head -1 || true)
    [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$rc" = 137 ] || fail "tools/train.py (pretrain_probe) exited $rc"
    [ -n "$PRE_CKPT" ] || fail "pretrain_probe: no checkpoint after $((PRE_S * 6 / 10)) s (fewer than 10 iterations)"
    "$PY" -c "import sys; from also_pcdet.engine.checkpoint import load_checkpoint
print('pretrained', load_checkpoint(sys.argv[1])['it'], 'iterations:', sys.argv[1])" "$PRE_CKPT"
    if capped $((PRE_S * 4 / 10 / SCALE)) "$PY" tools/det_probe.py --cfg_file "$PRE_CFG" --ckpt "$PRE_CKPT" \
        --seeds 0 --finetune all --out_dir "$PRE_DIR/det_probe" "${PRE_PROBE[@]}" --set DATA_CONFIG.DATA_PATH "$PRE_DIR/data" "${PRE_BOX[@]}"; then
        cp "$PRE_DIR/det_probe/table.md" "$OUT_DIR/det_probe_table.md"
        done_stage pretrain_probe
    else
        echo "DETECTION PROBE FAILED or ran past its cap (the other stages' results stand)"
    fi
fi
[ "$TESTS_OK" = 1 ] || fail "the tests failed or timed out (see the tests stage above); the rows were written"
echo "GPU check done in $((SECONDS - START)) s"
