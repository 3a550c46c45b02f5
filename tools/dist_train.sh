#!/usr/bin/env bash
# Launch tools/train.py on NPROC processes of this machine with torchrun (DDP; gloo on the CPU).
#   bash tools/dist_train.sh NPROC --cfg_file cfgs/also_pretrain.yaml [train.py args ...]
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: bash tools/dist_train.sh NPROC --cfg_file CFG [train.py args ...]" >&2
    exit 2
fi
NPROC=$1
shift

PYTHON=${PYTHON:-python}
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
if command -v torchrun >/dev/null 2>&1; then
    LAUNCH=(torchrun)
else
    LAUNCH=("$PYTHON" -m torch.distributed.run)
fi

exec "${LAUNCH[@]}" --nnodes 1 --nproc_per_node "$NPROC" --master_addr 127.0.0.1 --master_port "$PORT" \
    "$(dirname "$0")/train.py" --launcher pytorch "$@"
