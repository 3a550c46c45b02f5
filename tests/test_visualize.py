"""tools/visualize.py: one PNG with the input, two occupancy slices and the queries."""
import argparse
import importlib.util

import matplotlib.image
import numpy as np
import pytest
import torch

from also_pcdet.config import config_from_args, write_resolved_config
from also_pcdet.datasets import SweepDataset
from also_pcdet.engine.batch import batch_to_device
from also_pcdet.engine.checkpoint import checkpoint_state, save_atomic
from also_pcdet.engine.visualization import occupancy_at
from also_pcdet.models import build_network
from conftest import REPO, TINY_OVERRIDES, tiny_cfg
from stock_facts import with_stock_backbone

SMALL = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-6.4,-3,12.8,6.4,1]', 'DATA_CONFIG.QUERIES.NUM_QUERIES', '1024']


def visualize_tool():
    spec = importlib.util.spec_from_file_location('visualize_tool', REPO / 'tools' / 'visualize.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_visualize_writes_png(synthetic_kitti, tmp_path):
    torch.manual_seed(0)
    model = build_network(tiny_cfg(synthetic_kitti).MODEL, SweepDataset(tiny_cfg(synthetic_kitti).DATA_CONFIG))
    save_atomic(checkpoint_state(model), tmp_path / 'ckpt.pth')
    tool = visualize_tool()
    out = tmp_path / 'pictures' / 'occupancy.png'
    tool.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'), '--ckpt', str(tmp_path / 'ckpt.pth'),
               '--sweep', str(synthetic_kitti / 'training' / 'velodyne' / '000003.bin'), '--split', 'train',
               '--out', str(out),
               '--resolution', '0.8', '--set', *TINY_OVERRIDES, 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)])
    assert out.stat().st_size > 30_000
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (880, 1040)  # 11 x 13 inches at 80 dpi
    assert image[..., :3].std() > 0.05  # not a blank canvas

    # a sweep outside the chosen split is refused by name (000003 is a train frame, not a val one)
    with pytest.raises(SystemExit, match='000003.bin: not among the 2 sweeps of split .val.'):
        tool.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'), '--ckpt', str(tmp_path / 'ckpt.pth'),
                   '--sweep', str(synthetic_kitti / 'training' / 'velodyne' / '000003.bin'), '--out', str(out),
                   '--set', *TINY_OVERRIDES, 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)])


@pytest.mark.slow
def test_visualize_colours_waymo_queries_by_lidar(tmp_path):
    """On a Waymo frame a third column shows the queries coloured by the lidar each was cast from."""
    import numpy as np
    from matplotlib.colors import to_rgb

    from also_pcdet.datasets.synthetic.layout_writers import write_waymo_processed_sweeps
    from shipped_configs import shipped_config

    write_waymo_processed_sweeps(tmp_path / 'waymo', 2, seed=1, max_frames_per_segment=1)
    overrides = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[-25.6,-25.6,-2,25.6,25.6,4]',
                 'DATA_CONFIG.QUERIES.NUM_QUERIES', '3000']
    cfg = shipped_config('waymo', tmp_path / 'waymo', *overrides)
    dataset = SweepDataset(cfg.DATA_CONFIG, training=False)
    sample = dataset[0]
    assert sample['ray_origin_names'] == ('TOP', 'FRONT', 'SIDE_LEFT', 'SIDE_RIGHT', 'REAR')
    lidars = set(sample['query_origin_index'].tolist())
    assert len(lidars) >= 3
    torch.manual_seed(0)
    save_atomic(checkpoint_state(build_network(cfg.MODEL, dataset)), tmp_path / 'ckpt.pth')
    tool = visualize_tool()
    out = tmp_path / 'waymo.png'
    tool.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain_waymo.yaml'), '--ckpt', str(tmp_path / 'ckpt.pth'),
               '--out', str(out), '--resolution', '1.6',
               '--set', 'DATA_CONFIG.DATA_PATH', str(tmp_path / 'waymo'), *overrides])
    image = matplotlib.image.imread(out)[..., :3]
    assert image.shape[:2] == (880, 1560)  # 11 x 19.5 inches at 80 dpi: three columns
    third_column = image[:, 1040:].reshape(-1, 3)
    for row in lidars:  # every lidar that cast queries has its colour in the third column
        near = np.abs(third_column - np.array(to_rgb(f'C{row}'))).max(axis=1) < 0.02
        assert near.sum() > 20, f'lidar {row} colour missing'


@pytest.mark.parametrize('family', ['pillar', 'voxelnext'])
def test_visualize_pillar_and_voxelnext_models(synthetic_kitti, tmp_path, family, one_thread):
    """KITTI PointPillars (through --detector_cfg and the shipped detector config) and nuScenes VoxelNeXt's
    backbone (no dense BEV map: slices decoded from active cells only) on a 12.8 m box."""
    overrides = [*TINY_OVERRIDES, *SMALL, 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)]
    if family == 'pillar':
        flags = ['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'),
                 '--detector_cfg', str(REPO / 'cfgs' / 'detector_cfgs' / 'kitti_pointpillar.yaml')]
        cfg = config_from_args(argparse.Namespace(cfg_file=flags[1], detector_cfg=flags[3], set_cfgs=overrides))
        assert cfg.MODEL.VFE.NAME == 'PillarVFE'
    else:
        cfg = with_stock_backbone(tiny_cfg(synthetic_kitti, *SMALL), 'nuscenes_models/cbgs_voxel0075_voxelnext.yaml')
        flags = ['--cfg_file', str(write_resolved_config(cfg, tmp_path / 'voxelnext.yaml'))]
    dataset = SweepDataset(cfg.DATA_CONFIG, training=False)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset)
    save_atomic(checkpoint_state(model), tmp_path / 'ckpt.pth')
    out = tmp_path / f'{family}.png'
    visualize_tool().main([*flags, '--ckpt', str(tmp_path / 'ckpt.pth'), '--out', str(out), '--resolution', '0.4',
                           '--set', *overrides])
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (880, 1040) and image[..., :3].std() > 0.05

    # the slices decode any point: inside the box every cell near the ground has a latent; beyond the box none
    model.eval()
    encoded = model.encode(batch_to_device(SweepDataset.collate_batch([dataset[0]]), torch.device('cpu')))
    assert ('spatial_features_2d' in encoded) == (family == 'pillar')
    near_ground = np.stack(np.meshgrid(np.arange(0.2, 12.8, 0.4), np.arange(-6.2, 6.4, 0.4), [-1.5]), -1).reshape(-1, 3)
    inside = occupancy_at(model, encoded, near_ground)
    assert inside.shape == (len(near_ground),) and np.isfinite(inside).mean() > 0.9
    assert ((inside[np.isfinite(inside)] >= 0) & (inside[np.isfinite(inside)] <= 1)).all()
    assert np.isnan(occupancy_at(model, encoded, np.array([[30.0, 0.0, -1.5], [6.0, 20.0, -1.5]]))).all()
