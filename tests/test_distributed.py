"""Data-parallel training on the CPU: tools/dist_train.sh starts two gloo processes through torchrun; their
replicas stay bit-identical and only rank 0 writes. Also: sampler sharding and --sync_bn."""
import copy
import subprocess

import pytest
import torch

from also_pcdet.datasets import build_dataloader
from also_pcdet.datasets.sampler import ResumableSampler
from also_pcdet.engine.batch import batch_to_device
from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.distributed import convert_sync_batchnorm
from also_pcdet.models import build_network
from conftest import REPO, tiny_cfg
from train_cli import FAST_OVERRIDES, cli_env, run_dir, same_optimizer_state, same_tensors, scalars, train_args

BN_STATS = ('running_mean', 'running_var')  # DDP re-broadcasts them from rank 0 before every forward


def test_sampler_shards_an_epoch_and_starts_mid_epoch():
    shards = [list(ResumableSampler(7, shuffle=True, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4                     # 7 sweeps padded to 8
    assert set(shards[0]) | set(shards[1]) == set(range(7))
    sampler = ResumableSampler(7, shuffle=True, seed=3, rank=1, world_size=2)
    sampler.set_epoch(0, start=3)
    assert list(sampler) == shards[1][3:] and len(sampler) == 1
    sampler.set_epoch(1)
    assert list(sampler) != shards[1]                                 # a new permutation every epoch


@pytest.mark.slow
def test_two_processes_stay_identical_and_only_rank0_writes(synthetic_kitti, tmp_path):
    dump = tmp_path / 'final_states'
    args = train_args(synthetic_kitti, tmp_path / 'out', '--batch_size', 2, '--epochs', 1, '--fix_random_seed',
                      '--dump_final_state', dump, sets=['OPTIMIZATION.CKPT_SAVE_ITERS', 2])
    proc = subprocess.run(['bash', str(REPO / 'tools' / 'dist_train.sh'), '2', *args], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    rank0, rank1 = (load_checkpoint(dump / f'rank_{r}.pth') for r in range(2))
    # 8 train sweeps sharded over 2 processes at a total batch of 2 (1 each): 4 steps each, every one applied
    assert rank0['it'] == rank1['it'] == 4 and rank0['world_size'] == 2
    assert {int(s['step']) for s in rank0['optimizer_state']['state'].values()} == {4}
    weights = [k for k in rank0['model_state'] if not k.endswith(BN_STATS)]
    assert same_tensors(*({k: r['model_state'][k] for k in weights} for r in (rank0, rank1)))
    assert same_optimizer_state(rank0['optimizer_state'], rank1['optimizer_state'])

    out = run_dir(tmp_path / 'out')
    ckpt = out / 'ckpt'
    assert same_tensors(load_checkpoint(ckpt / 'checkpoint_epoch_1.pth')['model_state'], rank0['model_state'])
    assert sorted(p.name for p in ckpt.iterdir()) == ['checkpoint_epoch_1.pth', 'latest_model.pth',
                                                      'pretrained_backbone.pth']
    logs = sorted(out.glob('train_*.log'))
    assert len(logs) == 1 and sorted(p.name for p in out.iterdir()) == sorted(
        ['ckpt', 'tensorboard', logs[0].name, 'also_pretrain.yaml', 'also_pretrain_resolved.yaml'])
    assert len(list((out / 'tensorboard').iterdir())) == 1
    assert [step for step, _ in scalars(out / 'tensorboard')['train/loss']] == [1, 2, 3, 4]
    log = logs[0].read_text()
    assert 'processes: 2' in log and log.count('  INFO  saved ') == 3   # latest at 2 and 4, epoch 1
    assert proc.stderr.count('  INFO  ') == log.count('  INFO  ')       # rank 1 logs nothing below ERROR


def test_sync_bn_converts_spconv_blocks_and_is_refused_on_gloo(synthetic_kitti, tmp_path, one_thread):
    cfg = tiny_cfg(synthetic_kitti, *FAST_OVERRIDES)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, 1, 0, training=True, seed=1)
    batch = batch_to_device(next(iter(loader)), 'cpu')
    model = build_network(cfg.MODEL, dataset)
    plain = [name for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert any(name.startswith('backbone_3d.') for name in plain)

    synced = convert_sync_batchnorm(copy.deepcopy(model), torch.device('cpu'))
    modules = dict(synced.named_modules())
    assert all(type(modules[name]) is torch.nn.SyncBatchNorm for name in plain)
    assert synced.state_dict().keys() == model.state_dict().keys()
    # one process: SyncBatchNorm computes exactly what BatchNorm does, inside spconv blocks too
    assert synced(dict(batch))[0]['loss'].equal(model(dict(batch))[0]['loss'])

    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match='--sync_bn'):
            convert_sync_batchnorm(model, torch.device('cpu'))
        with pytest.raises(ValueError, match='SyncBatchNorm expected input tensor to be on GPU'):
            synced(dict(batch))                                       # what the refusal saves the user from
    finally:
        torch.distributed.destroy_process_group()
