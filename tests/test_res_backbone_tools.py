"""tools/evaluate.py, probe.py and visualize.py run on the CPU for VoxelResBackBone8x configs (eval mode on
the CPU needs spconv_compat's inference patch: its residual convs have a bias)."""
import importlib.util

import pytest
import torch

from also_pcdet.config import cfg_from_list, cfg_from_yaml_file
from also_pcdet.datasets import SweepDataset
from also_pcdet.datasets.synthetic.layout_writers import write_waymo_processed_sweeps
from also_pcdet.engine.checkpoint import checkpoint_state, save_atomic
from also_pcdet.models import build_network
from conftest import REPO, TINY_OVERRIDES

RES = ['MODEL.BACKBONE_3D.NAME', 'VoxelResBackBone8x']
WAYMO_SMALL = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-12.8,-12.8,-2,12.8,12.8,4]', 'DATA_CONFIG.QUERIES.NUM_QUERIES', '1024',
               'DATA_CONFIG.SAMPLE_INTERVAL.test', '1', 'OPTIMIZATION.BATCH_SIZE_PER_GPU', '1']


def tool(name):
    spec = importlib.util.spec_from_file_location(f'{name}_tool', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoint(cfg_file, overrides, path):
    cfg = cfg_from_yaml_file(cfg_file)
    cfg_from_list(overrides, cfg)
    assert cfg.MODEL.BACKBONE_3D.NAME == 'VoxelResBackBone8x'
    torch.manual_seed(0)
    save_atomic(checkpoint_state(build_network(cfg.MODEL, SweepDataset(cfg.DATA_CONFIG))), path)
    return path


@pytest.mark.slow
def test_tools_on_kitti_with_res_backbone(synthetic_kitti, tmp_path):
    cfg_file = REPO / 'cfgs' / 'also_pretrain.yaml'
    overrides = [*TINY_OVERRIDES, 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti), *RES]
    ckpt = checkpoint(cfg_file, overrides, tmp_path / 'ckpt.pth')
    common = ['--cfg_file', str(cfg_file), '--ckpt', str(ckpt)]
    metrics = tool('evaluate').main(common + ['--workers', '0', '--set', *overrides])
    assert 0 <= metrics['occ_miou'] <= 1 and metrics['sweeps'] >= 1 and metrics['pairs'] > 0
    results = tool('probe').main(common + ['--steps', '5', '--max_sweeps', '1', '--set', *overrides])
    assert 0 <= results['ALSO']['miou'] <= 1 and results['ALSO']['val_points'] > 1000
    out = tool('visualize').main(common + ['--out', str(tmp_path / 'occ.png'), '--resolution', '0.8',
                                           '--set', *overrides])
    assert (tmp_path / 'occ.png').stat().st_size > 30_000 and out == str(tmp_path / 'occ.png')


@pytest.fixture(scope='module')
def synthetic_waymo(tmp_path_factory):
    root = tmp_path_factory.mktemp('waymo_processed')
    write_waymo_processed_sweeps(root, 2, 0)
    return root


@pytest.mark.slow
def test_evaluate_and_visualize_the_shipped_waymo_config(synthetic_waymo, tmp_path, capsys):
    cfg_file = REPO / 'cfgs' / 'also_pretrain_waymo.yaml'
    overrides = ['DATA_CONFIG.DATA_PATH', str(synthetic_waymo), *WAYMO_SMALL]
    ckpt = checkpoint(cfg_file, overrides, tmp_path / 'ckpt.pth')
    common = ['--cfg_file', str(cfg_file), '--ckpt', str(ckpt), '--set', *overrides]
    metrics = tool('evaluate').main(['--workers', '0', '--brief'] + common)
    assert 0 <= metrics['occ_acc'] <= 1 and metrics['pairs'] > 0
    line = capsys.readouterr().out.splitlines()[-1]   # --brief: the accuracy next to the "all empty" floor
    assert line.startswith(f'occupancy accuracy {metrics["occ_acc"]:.3f} on {metrics["sweeps"]} held-out sweeps, '
                           f'against {metrics["occ_acc_all_empty"]:.3f} for answering "empty" everywhere')
    tool('visualize').main(['--out', str(tmp_path / 'occ.png'), '--resolution', '0.8'] + common)
    assert (tmp_path / 'occ.png').stat().st_size > 30_000
