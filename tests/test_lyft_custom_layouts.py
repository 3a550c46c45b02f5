"""Lyft and OpenPCDet custom-dataset layouts: the synthetic writers' files read back through the sources."""
import numpy as np
import pytest
from easydict import EasyDict

from also_pcdet.config import cfg_from_yaml_file
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.sources import CustomSweeps, LyftSweeps
from also_pcdet.datasets.synthetic.layout_writers import write_custom, write_lyft
from also_pcdet.datasets.sweep_dataset import SweepDataset
from conftest import REPO


def test_lyft_sweeps_read_the_constant_intensity_as_one_and_regress_none(tmp_path):
    paths = write_lyft(tmp_path, 2, seed=3)
    raw = np.fromfile(paths[0], dtype=np.float32).reshape(-1, 5)
    assert (raw[:, 3] == 100).all()
    source = LyftSweeps(EasyDict(VERSION='trainval'), tmp_path, 'all')
    assert len(source) == 2
    points, origin = source.read(0)
    np.testing.assert_array_equal(points[:, :3], raw[:, :3])
    assert (points[:, 3] == 1).all() and points.shape[1] == 4 and not origin.any()

    with open(paths[1], 'ab') as f:  # a record cut short: read up to the last whole one, as OpenPCDet does
        f.write(np.zeros(3, np.float32).tobytes())
    assert len(source.read(1)[0]) == len(np.fromfile(paths[1], dtype=np.float32)) // 5

    data = cfg_from_yaml_file(REPO / 'cfgs' / 'dataset_configs' / 'lyft_sweeps.yaml')
    data.DATA_PATH, data.POINT_CLOUD_RANGE, data.QUERIES.NUM_QUERIES = str(tmp_path), [-16, -16, -5, 16, 16, 3], 256
    dataset = SweepDataset(data, training=False)
    sample = dataset[0]
    assert sample['points'].shape[1] == 5 and (sample['points'][:, 4] == 0).all()  # timestamp: 0, one sweep
    assert not sample['query_intensity_mask'].any() and dataset.stock_input_scale == [1, 1, 1, 100, 1]


def test_custom_sweeps_read_points_npy_of_the_split(tmp_path):
    write_custom(tmp_path, 3, seed=1)
    source = CustomSweeps(EasyDict(), tmp_path, 'train')
    assert source.items == ['000001', '000002']
    points, _ = source.read(0)
    assert points.dtype == np.float32 and points.shape[1] == 4
    np.save(tmp_path / 'points' / '000002.npy', np.zeros((5, 2)))
    with pytest.raises(SweepError, match=r'000002.npy: expected a float \(N, 4\) array'):
        source.read(1)
