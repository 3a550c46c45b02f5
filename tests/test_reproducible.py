"""--fix_random_seed: two CPU runs are bit-identical step by step, whatever the number of loader workers or torch
threads asked for (train.py then trains on one); without the flag every run draws its own seed. The output folder
is OpenPCDet's (ckpt/, tensorboard/, train_<time>.log listing every resolved key, a copy of the config) plus the resolved
config, and the second run starts from that file alone."""

import pytest

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file, config_lines
from also_pcdet.engine.checkpoint import load_checkpoint
from conftest import REPO
from tools import train
from train_cli import (CFG, FAST_OVERRIDES, run_dir, run_train, same_optimizer_state, same_tensors, scalars,
                       train_args)


def run(data, out_root, *flags, sample_interval=3, one_thread=True, cfg_file=None, in_process=False):
    """Train one epoch at batch 1 on every `sample_interval`-th train sweep (or as `cfg_file`, a resolved config,
    says: no --set), in a train.py process or `in_process`; return (stderr or None, scalars, final checkpoint,
    output folder)."""
    args = train_args(data, out_root, '--batch_size', 1, '--epochs', 1, *flags,
                      sets=['DATA_CONFIG.SAMPLE_INTERVAL.train', sample_interval])
    if cfg_file is not None:
        args = ['--cfg_file', str(cfg_file), *args[2:args.index('--set')]]
    stderr = None
    if in_process:
        train.main(args)
    else:
        stderr = run_train(args, one_thread=one_thread).stderr
    out = run_dir(out_root) if cfg_file is None else out_root / cfg_file.stem / 'default'
    return stderr, scalars(out / 'tensorboard'), load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_1.pth'), out


def check_output_folder(out, data, sample_interval):
    """OpenPCDet's names, the config copied, the resolved config equal to what --cfg_file and --set gave, and
    every resolved key in the log."""
    assert {p.name for p in out.iterdir()} >= {'ckpt', 'tensorboard', 'also_pretrain.yaml', 'also_pretrain_resolved.yaml'}
    assert (out / 'also_pretrain.yaml').read_bytes() == (REPO / CFG).read_bytes()
    expected = cfg_from_yaml_file(REPO / CFG)
    cfg_from_list([*map(str, FAST_OVERRIDES), 'DATA_CONFIG.DATA_PATH', str(data),
                   'DATA_CONFIG.SAMPLE_INTERVAL.train', str(sample_interval)], expected)
    assert cfg_from_yaml_file(out / 'also_pretrain_resolved.yaml') == expected
    assert '_BASE_CONFIG_' not in (out / 'also_pretrain_resolved.yaml').read_text()
    logs = list(out.glob('train_*.log'))
    assert len(logs) == 1
    log = [line.split('  INFO  ', 1)[-1] for line in logs[0].read_text().splitlines()]
    assert 'cfg.DATA_CONFIG.POINT_CLOUD_RANGE: [0, -3.2, -3, 6.4, 3.2, 1]' in log
    assert set(config_lines(expected)) <= set(log) and 'fix_random_seed  True' in log


@pytest.mark.slow
def test_fixed_seed_runs_are_bit_identical(synthetic_kitti, tmp_path):
    _, logged, ckpt, out = run(synthetic_kitti, tmp_path / 'first', '--fix_random_seed', in_process=True)
    check_output_folder(out, synthetic_kitti, sample_interval=3)
    stderr, logged_again, ckpt_again, _ = run(synthetic_kitti, tmp_path / 'second', '--fix_random_seed', '--workers', 2,
                                              one_thread=False, cfg_file=out / 'also_pretrain_resolved.yaml')
    assert 'training on 1 CPU thread(s): --fix_random_seed makes runs bit-identical' in stderr
    assert [step for step, _ in logged['train/loss']] == [1, 2, 3]
    assert logged == logged_again                          # loss, metrics, grad norm: every step, every bit
    assert ckpt['seed'] == ckpt_again['seed'] == 666
    assert same_tensors(ckpt['model_state'], ckpt_again['model_state'])
    assert same_optimizer_state(ckpt['optimizer_state'], ckpt_again['optimizer_state'])

    _, free_logged, free_ckpt, _ = run(synthetic_kitti, tmp_path / 'free', sample_interval=4, in_process=True)
    assert free_ckpt['seed'] != 666 and free_logged['train/loss'][0] != logged['train/loss'][0]
