"""tools/visualize.py: one PNG with the input, two occupancy slices and the queries."""
import importlib.util

import matplotlib.image
import pytest
import torch

from also_pcdet.datasets import SweepDataset
from also_pcdet.engine.checkpoint import checkpoint_state, save_atomic
from also_pcdet.models import build_network
from conftest import REPO, TINY_OVERRIDES, tiny_cfg


def test_visualize_writes_png(synthetic_kitti, tmp_path):
    torch.manual_seed(0)
    model = build_network(tiny_cfg(synthetic_kitti).MODEL, SweepDataset(tiny_cfg(synthetic_kitti).DATA_CONFIG))
    save_atomic(checkpoint_state(model), tmp_path / 'ckpt.pth')
    spec = importlib.util.spec_from_file_location('visualize_tool', REPO / 'tools' / 'visualize.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
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
    spec = importlib.util.spec_from_file_location('visualize_tool', REPO / 'tools' / 'visualize.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
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
