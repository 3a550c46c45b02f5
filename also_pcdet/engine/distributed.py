"""Process-group setup for torchrun (and SLURM) launches: NCCL on GPUs, gloo on the CPU."""
import os
import subprocess

import torch
import torch.distributed as dist

SYNC_BN_DEVICES = ('cuda', 'hpu', 'xpu')


def init_distributed(launcher: str, tcp_port: int = 18888):
    """Start the process group for `launcher` ('none', 'pytorch' = torchrun env, 'slurm').

    Returns (rank, world_size, local_rank)."""
    if launcher == 'none':
        return 0, 1, 0
    if launcher == 'slurm':
        hosts = subprocess.check_output(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']], text=True)
        os.environ.setdefault('MASTER_ADDR', hosts.split()[0])
        os.environ.setdefault('MASTER_PORT', str(tcp_port))
        os.environ['RANK'], os.environ['WORLD_SIZE'] = os.environ['SLURM_PROCID'], os.environ['SLURM_NTASKS']
        os.environ['LOCAL_RANK'] = os.environ['SLURM_LOCALID']
    elif launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher!r}: expected none, pytorch or slurm')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher {launcher} needs {missing} in the environment: start with '
                           f'tools/dist_train.sh (torchrun)')
    local_rank = int(os.environ['LOCAL_RANK'])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = 'nccl'
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def convert_sync_batchnorm(model, device):
    """Replace every BatchNorm, the BatchNorm1d inside spconv blocks included, by SyncBatchNorm.

    torch synchronises batch statistics only for GPU-like devices; with a process group on the CPU
    (gloo) SyncBatchNorm would fail at the first training step, so that is refused here."""
    if is_distributed() and device.type not in SYNC_BN_DEVICES:
        raise ValueError(f'--sync_bn: SyncBatchNorm cannot synchronise {device.type} tensors across processes '
                         f'(torch supports {", ".join(SYNC_BN_DEVICES)}); drop the flag on the CPU / gloo')
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(values):
    """Sum a list of numbers over all ranks (identity when not distributed)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if dist.get_backend() == 'nccl':
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()
