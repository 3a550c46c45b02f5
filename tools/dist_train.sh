#!/usr/bin/env bash
# Launch tools/train.py on NPROC processes of this machine with torchrun (DDP; gloo on the CPU).
#   bash tools/dist_train.sh NPROC --cfg_file cfgs/also_pretrain.yaml [train.py args ...]
# Several machines ("nodes"): run it on each with the same NNODES, MASTER_ADDR (node 0's address) and
# MASTER_PORT, and NODE_RANK 0 .. NNODES-1, e.g. on the second of two 8-GPU nodes:
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.1.2.3 MASTER_PORT=29500 bash tools/dist_train.sh 8 --cfg_file ...
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: [NNODES=N NODE_RANK=R MASTER_ADDR=A MASTER_PORT=P] bash tools/dist_train.sh NPROC --cfg_file CFG [train.py args ...]" >&2
    exit 2
fi
NPROC=$1
shift

PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
if (( NNODES > 1 )) && [[ -z ${MASTER_ADDR:-} || -z ${MASTER_PORT:-} ]]; then
    echo "dist_train.sh: NNODES=$NNODES needs MASTER_ADDR and MASTER_PORT, the same on every node" >&2
    exit 2
fi
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}
if command -v torchrun >/dev/null 2>&1; then
    LAUNCH=(torchrun)
else
    LAUNCH=("$PYTHON" -m torch.distributed.run)
fi

exec "${LAUNCH[@]}" --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" "$(dirname "$0")/train.py" --launcher pytorch "$@"
