"""Cluster launchers on the CPU: --launcher slurm reads srun's task variables (here set by a stand-in srun, no
Slurm installed) and tools/slurm_train.sh passes the job shape to srun; tools/dist_train.sh runs torchrun across
two "nodes" on this machine (NNODES=2, NODE_RANK 0 and 1, gloo). Both train real DDP replicas that agree."""
import os
import subprocess

import pytest

from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.distributed import first_host, master_host, slurm_environment
from conftest import REPO
from train_cli import cli_env, free_port, run_dir, same_tensors, train_args

BN_STATS = ('running_mean', 'running_var')  # DDP re-broadcasts them from rank 0 before every forward
FAKE_SRUN = r'''#!/usr/bin/env bash
# stands in for srun: records its arguments, starts --ntasks copies of the command with Slurm's task variables
echo "$@" > "$SRUN_RECORD"
ntasks=1; per_node=1
while [[ $1 == -* ]]; do
    case $1 in
        --ntasks) ntasks=$2; shift 2 ;;
        --ntasks-per-node) per_node=$2; shift 2 ;;
        --*=*) shift ;;
        *) shift 2 ;;
    esac
done
pids=()
for ((i = 0; i < ntasks; i++)); do
    SLURM_PROCID=$i SLURM_NTASKS=$ntasks SLURM_LOCALID=$((i % per_node)) SLURM_NODEID=$((i / per_node)) \
        SLURM_JOB_NODELIST=localhost "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
'''


@pytest.mark.parametrize('nodelist, host', [('node01', 'node01'), ('gpu[07-09,12],cpu1', 'gpu07'),
                                            ('a17,b2', 'a17'), ('rack-[003,005]x', 'rack-003x')])
def test_first_host_of_a_compressed_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_environment_maps_srun_variables(tmp_path, monkeypatch):
    env = {'SLURM_PROCID': '5', 'SLURM_NTASKS': '16', 'SLURM_LOCALID': '1', 'SLURM_JOB_NODELIST': 'gpu[07-08]'}
    monkeypatch.setenv('PATH', str(tmp_path))  # no scontrol: the list is parsed
    assert slurm_environment(env, 23456) == {'RANK': '5', 'WORLD_SIZE': '16', 'LOCAL_RANK': '1',
                                             'MASTER_ADDR': 'gpu07', 'MASTER_PORT': '23456'}
    assert slurm_environment(dict(env, MASTER_PORT='29500', MASTER_ADDR='10.0.0.9'), 1)['MASTER_ADDR'] == '10.0.0.9'
    scontrol = tmp_path / 'scontrol'  # with scontrol, its expansion is used
    scontrol.write_text('#!/bin/sh\n[ "$1 $2 $3" = "show hostnames gpu[07-08]" ] && printf "gpu07.cluster\\ngpu08.cluster\\n"\n')
    scontrol.chmod(0o755)
    assert master_host('gpu[07-08]') == 'gpu07.cluster'
    with pytest.raises(RuntimeError, match=r"--launcher slurm needs \['SLURM_LOCALID', 'SLURM_JOB_NODELIST'\]"):
        slurm_environment({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1'}, 1)


def replicas_agree(dump, world_size):
    rank0, rank1 = (load_checkpoint(dump / f'rank_{r}.pth') for r in range(2))
    assert rank0['world_size'] == rank1['world_size'] == world_size and rank0['it'] == rank1['it'] >= 1
    weights = [k for k in rank0['model_state'] if not k.endswith(BN_STATS)]
    assert same_tensors(*({k: r['model_state'][k] for k in weights} for r in (rank0, rank1)))


def short_run(data, out_root, dump):
    """One epoch over two train sweeps at a total batch of 2: one step of 1 sweep per process when two share them."""
    return train_args(data, out_root, '--batch_size', 2, '--epochs', 1, '--fix_random_seed', '--dump_final_state',
                      dump, sets=['DATA_CONFIG.SAMPLE_INTERVAL.train', 4])


@pytest.mark.slow
def test_slurm_train_sh_launches_two_tasks_through_srun(synthetic_kitti, tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(FAKE_SRUN)
    (bin_dir / 'srun').chmod(0o755)
    env = dict(cli_env(), PATH=f'{bin_dir}{os.pathsep}{cli_env()["PATH"]}', SRUN_RECORD=str(tmp_path / 'srun_args'),
               GPUS_PER_NODE='0', CPUS_PER_TASK='1', SRUN_ARGS='--time 00:10:00',
               PORT=str(free_port()))  # not slurm_train.sh's random pick: parallel tests could collide
    proc = subprocess.run(['bash', str(REPO / 'tools' / 'slurm_train.sh'), 'cpu', 'also', '2',
                           *short_run(synthetic_kitti, tmp_path / 'out', tmp_path / 'dump')],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    srun = (tmp_path / 'srun_args').read_text().split()
    assert srun[:10] == ['--partition', 'cpu', '--job-name', 'also', '--ntasks', '2', '--ntasks-per-node', '2',
                         '--cpus-per-task', '1'] and '--gres' not in srun
    assert srun[srun.index('--time') + 1] == '00:10:00' and srun[srun.index('--launcher') + 1] == 'slurm'
    replicas_agree(tmp_path / 'dump', 2)
    log = next(run_dir(tmp_path / 'out').glob('train_*.log')).read_text()
    assert 'processes: 2' in log and 'launcher         slurm' in log


@pytest.mark.slow
def test_torchrun_across_two_nodes(synthetic_kitti, tmp_path):
    """Two dist_train.sh launches as NODE_RANK 0 and 1 of NNODES=2 (one process each) form one job."""
    args = short_run(synthetic_kitti, tmp_path / 'out', tmp_path / 'dump')
    port = str(free_port())
    nodes = [subprocess.Popen(['bash', str(REPO / 'tools' / 'dist_train.sh'), '1', *args], cwd=REPO,
                              env=dict(cli_env(), NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                                       MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    replicas_agree(tmp_path / 'dump', 2)
    assert 'processes: 2' in next(run_dir(tmp_path / 'out').glob('train_*.log')).read_text()

    missing = subprocess.run(['bash', str(REPO / 'tools' / 'dist_train.sh'), '1', *args], cwd=REPO,
                             env=dict(cli_env(), NNODES='2', NODE_RANK='1'), capture_output=True, text=True)
    assert missing.returncode == 2 and 'NNODES=2 needs MASTER_ADDR and MASTER_PORT' in missing.stderr
