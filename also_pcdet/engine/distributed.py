"""Process-group setup for torchrun (and SLURM) launches: NCCL on GPUs, gloo on the CPU."""
import os
import re
import shutil
import subprocess

import torch
import torch.distributed as dist

from ..errors import RunError

SYNC_BN_DEVICES = ('cuda', 'hpu', 'xpu')


SLURM_VARIABLES = ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID')
NODE_LISTS = ('SLURM_JOB_NODELIST', 'SLURM_NODELIST', 'SLURM_STEP_NODELIST')


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list in its compressed form ('gpu[07-09,12],cpu1' -> 'gpu07'), as
    `scontrol show hostnames` would list it first."""
    head = re.match(r'([^,\[]*)(?:\[([^\]]*)\])?([^,]*)', nodelist.strip())
    if not head or not (head.group(1) or head.group(2)):
        raise ValueError(f'cannot read a host name from the Slurm node list {nodelist!r}')
    prefix, ranges, suffix = head.groups()
    return prefix + (ranges.split(',')[0].split('-')[0] if ranges else '') + suffix


def master_host(nodelist: str) -> str:
    """The job's first host: `scontrol show hostnames` when scontrol is there, else `first_host`."""
    scontrol = shutil.which('scontrol')
    if scontrol:
        hosts = subprocess.run([scontrol, 'show', 'hostnames', nodelist], capture_output=True, text=True)
        if hosts.returncode == 0 and hosts.stdout.split():
            return hosts.stdout.split()[0]
    return first_host(nodelist)


def slurm_environment(env, tcp_port: int) -> dict:
    """torch.distributed's RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT for a task that srun started
    (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and the job's node list); MASTER_ADDR / MASTER_PORT already set
    are kept, MASTER_PORT defaults to `tcp_port` (--tcp_port)."""
    missing = [name for name in SLURM_VARIABLES if name not in env]
    nodelist = next((env[name] for name in NODE_LISTS if env.get(name)), None)
    if nodelist is None and not env.get('MASTER_ADDR'):
        missing.append('SLURM_JOB_NODELIST')
    if missing:
        raise RunError(f'--launcher slurm needs {missing} in the environment: start it with srun '
                       f'(tools/slurm_train.sh)')
    return {'RANK': env['SLURM_PROCID'], 'WORLD_SIZE': env['SLURM_NTASKS'], 'LOCAL_RANK': env['SLURM_LOCALID'],
            'MASTER_ADDR': env.get('MASTER_ADDR') or master_host(nodelist),
            'MASTER_PORT': env.get('MASTER_PORT') or str(tcp_port)}


def init_distributed(launcher: str, tcp_port: int = 18888):
    """Start the process group for `launcher` ('none'; 'pytorch': torchrun's environment, one node or several;
    'slurm': srun's, see `slurm_environment`). Returns (rank, world_size, local_rank)."""
    if launcher == 'none':
        return 0, 1, 0
    if launcher == 'slurm':
        os.environ.update(slurm_environment(os.environ, tcp_port))
    elif launcher != 'pytorch':
        raise ValueError(f'--launcher {launcher!r}: expected none, pytorch or slurm')
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT') if k not in os.environ]
    if missing:
        raise RunError(f'--launcher {launcher} needs {missing} in the environment: start with '
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
