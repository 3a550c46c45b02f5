#!/usr/bin/env bash
# Launch tools/train.py on a Slurm cluster through srun: NTASKS processes (one per GPU), TASKS_PER_NODE per node;
# each reads its rank from srun's SLURM_* variables (--launcher slurm) and rendezvouses on the job's first node.
#   bash tools/slurm_train.sh PARTITION JOB_NAME NTASKS --cfg_file cfgs/also_pretrain.yaml [train.py args ...]
# Environment: TASKS_PER_NODE (default min(NTASKS, 8)), GPUS_PER_NODE (default TASKS_PER_NODE; 0 = CPU nodes, no
# --gres, gloo), CPUS_PER_TASK (default 5), PORT (rendezvous port, default random 20000-59999), SRUN_ARGS (more
# srun options, e.g. "--time 72:00:00 --account X"), PYTHON (default python).
set -euo pipefail

if [[ $# -lt 3 || ! $3 =~ ^[0-9]+$ ]]; then
    echo "usage: bash tools/slurm_train.sh PARTITION JOB_NAME NTASKS --cfg_file CFG [train.py args ...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
NTASKS=$3
shift 3

TASKS_PER_NODE=${TASKS_PER_NODE:-$(( NTASKS < 8 ? NTASKS : 8 ))}
GPUS_PER_NODE=${GPUS_PER_NODE:-$TASKS_PER_NODE}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PORT=${PORT:-$(( 20000 + RANDOM % 40000 ))}
PYTHON=${PYTHON:-python}
GRES=()
if (( GPUS_PER_NODE > 0 )); then
    GRES=(--gres "gpu:$GPUS_PER_NODE")
fi
read -r -a EXTRA <<< "${SRUN_ARGS:-}"

exec srun --partition "$PARTITION" --job-name "$JOB_NAME" ${GRES[@]+"${GRES[@]}"} --ntasks "$NTASKS" \
    --ntasks-per-node "$TASKS_PER_NODE" --cpus-per-task "$CPUS_PER_TASK" --kill-on-bad-exit=1 \
    ${EXTRA[@]+"${EXTRA[@]}"} "$PYTHON" -u "$(dirname "$0")/train.py" --launcher slurm --tcp_port "$PORT" "$@"
