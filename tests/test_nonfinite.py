"""Numerical safety. Non-finite losses from real causes: one corrupt sweep is skipped and counted; a
diverging run stops with a clear error and keeps its last good checkpoint. GRAD_NORM_CLIP and --amp."""
import re
import shutil

import numpy as np
import pytest
import torch

from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.cli import run_main
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network
from conftest import tiny_cfg
from tools import train
from train_cli import FAST_OVERRIDES, run_dir, scalars, train_args

# 4 of the 8 train sweeps (frames 1, 3, 6, 8) at batch 1: 4 steps
SMALL_RUN = ('--batch_size', 1, '--epochs', 1, '--fix_random_seed')
SMALL_SETS = ['DATA_CONFIG.SAMPLE_INTERVAL.train', 2]


@pytest.mark.slow
def test_a_corrupt_sweep_is_skipped_and_counted(synthetic_kitti, tmp_path, capsys):
    data = tmp_path / 'kitti'
    shutil.copytree(synthetic_kitti, data)
    sweep = data / 'training' / 'velodyne' / '000001.bin'
    points = np.fromfile(sweep, dtype=np.float32).reshape(-1, 4)
    points[::200, 3] = 3e38  # finite, and few enough for the sweep checks (0.5 %), but the network overflows
    points.tofile(sweep)

    train.main(train_args(data, tmp_path / 'out', *SMALL_RUN, sets=SMALL_SETS))
    err = capsys.readouterr().err
    assert re.search(r'iteration \d: loss is (nan|inf); step skipped \(1 in a row, 1 in this run\)', err)
    assert 'epoch 1: 4 iterations in all, 0 newly skipped sweeps, 1 non-finite steps skipped' in err
    out = run_dir(tmp_path / 'out')
    logged = scalars(out / 'tensorboard')
    assert logged['train/nonfinite_steps'] == [(4, 1.0)] and len(logged['train/loss']) == 3
    final = load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_1.pth')
    assert final['it'] == 4 and all(torch.isfinite(v.float()).all() for v in final['model_state'].values())
    assert {int(s['step']) for s in final['optimizer_state']['state'].values()} == {3}   # 3 updates applied


@pytest.mark.slow
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(synthetic_kitti, tmp_path, capsys):
    sets = SMALL_SETS + ['OPTIMIZATION.LR', 1e30, 'OPTIMIZATION.MAX_NONFINITE_STEPS', 2,
                         'OPTIMIZATION.CKPT_SAVE_ITERS', 1]
    with pytest.raises(SystemExit) as stop:   # train.py's command-line end, in this process
        run_main(train.main, train_args(synthetic_kitti, tmp_path / 'out', *SMALL_RUN, sets=sets))
    err, ckpt = capsys.readouterr().err, run_dir(tmp_path / 'out') / 'ckpt'
    assert stop.value.code == 1 and 'Traceback' not in err
    assert len(re.findall(r'loss is (?:nan|inf); step skipped', err)) == 2
    assert (f'2 non-finite steps in a row (limit OPTIMIZATION.MAX_NONFINITE_STEPS=2); stopping: the last good '
            f'checkpoint, {ckpt / "latest_model.pth"} (iteration 1), is kept') in err
    assert [p.name for p in ckpt.iterdir()] == ['latest_model.pth']   # not overwritten during the failures
    assert load_checkpoint(ckpt / 'latest_model.pth')['it'] == 1


def test_grad_norm_clip_bounds_the_step_and_amp_needs_cuda(synthetic_kitti, tmp_path, one_thread):
    # one sweep, plain SGD without weight decay: the first update is LR x the clipped gradient (the gradient
    # norm is about 1; LR 100 keeps the update well above float32 rounding of the weights)
    cfg = tiny_cfg(synthetic_kitti, *FAST_OVERRIDES, 'DATA_CONFIG.SAMPLE_INTERVAL.train', '8',
                   'OPTIMIZATION.OPTIMIZER', 'sgd', 'OPTIMIZATION.LR', '100.0', 'OPTIMIZATION.WEIGHT_DECAY', '0',
                   'OPTIMIZATION.GRAD_NORM_CLIP', '0.01')
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, 1, 0, training=True, seed=1)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, build_optimizer(model, cfg.OPTIMIZATION), loader, cfg.OPTIMIZATION, ckpt_dir=tmp_path,
                      device=torch.device('cpu'))
    trainer.fit(1)
    update = torch.cat([(p.detach().double() - b.double()).flatten() for p, b in zip(model.parameters(), before)])
    assert trainer.it == 1 and update.norm().item() == pytest.approx(100 * 0.01, rel=1e-5)

    with pytest.raises(ValueError, match=r'^--use_amp \(alias --amp; OPTIMIZATION.USE_AMP\) needs a CUDA device'):
        Trainer(model, trainer.optimizer, loader, cfg.OPTIMIZATION, ckpt_dir=tmp_path, device=torch.device('cpu'),
                amp=True)
