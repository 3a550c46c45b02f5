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
