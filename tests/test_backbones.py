"""Fallback OpenPCDet modules: exact state_dict layout, CPU forward/backward, checkpoint matching,
spconv install checks and the pcdet import seam."""
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from easydict import EasyDict

from also_pcdet import pcdet_seam
from also_pcdet.models.backbones import (BACKBONES_2D, BACKBONES_3D, MAP_TO_BEV, VFES, BaseBEVBackbone,
                                         HeightCompression, MeanVFE, VoxelBackBone8x, VoxelResBackBone8x)
from also_pcdet.models import detector_template
from also_pcdet.models.detector_template import DENSE_HEADS, DetectorTemplate, match_state_dict
from also_pcdet.spconv_compat import check_spconv_distributions, ensure_spconv, patch_cpu_stream

KEYS_DIR = Path(__file__).parent / 'pcdet_keys'
SECOND_BEV = dict(NAME='BaseBEVBackbone', LAYER_NUMS=[5, 5], LAYER_STRIDES=[1, 2], NUM_FILTERS=[128, 256],
                  UPSAMPLE_STRIDES=[1, 2], NUM_UPSAMPLE_FILTERS=[256, 256])
SMALL_GRID = [176, 192, 40]  # x, y, z cells


def layout(module):
    return [f'{key} {tuple(value.shape)}' for key, value in module.state_dict().items()]


@pytest.mark.parametrize('build, expected_file', [
    (lambda: VoxelBackBone8x(EasyDict(NAME='VoxelBackBone8x'), 4, np.array([1408, 1600, 40])),
     'voxel_backbone_8x.txt'),
    (lambda: VoxelResBackBone8x(EasyDict(NAME='VoxelResBackBone8x'), 5, np.array([1504, 1504, 40])),
     'voxel_res_backbone_8x.txt'),
    (lambda: BaseBEVBackbone(EasyDict(SECOND_BEV), 256), 'base_bev_backbone.txt'),
])
def test_state_dict_layout_equals_openpcdet(build, expected_file):
    expected = (KEYS_DIR / expected_file).read_text().splitlines()
    assert layout(build()) == expected


def test_backbone_attributes():
    plain = VoxelBackBone8x(EasyDict(), 4, [1408, 1600, 40])
    res = VoxelResBackBone8x(EasyDict(USE_BIAS=False), 5, [1504, 1504, 40])
    assert plain.sparse_shape == [41, 1600, 1408] and res.sparse_shape == [41, 1504, 1504]
    assert plain.num_point_features == res.num_point_features == 128
    assert plain.backbone_channels == {'x_conv1': 16, 'x_conv2': 32, 'x_conv3': 64, 'x_conv4': 64}
    assert res.backbone_channels['x_conv4'] == 128
    assert 'conv1.0.conv1.bias' not in res.state_dict()
    assert BaseBEVBackbone(EasyDict(SECOND_BEV), 256).num_bev_features == 512
    assert VFES['MeanVFE'] is MeanVFE and BACKBONES_2D['BaseBEVBackbone'] is BaseBEVBackbone
    assert BACKBONES_3D['VoxelBackBone8x'] is VoxelBackBone8x and BACKBONES_3D['VoxelResBackBone8x'] is VoxelResBackBone8x
    assert MAP_TO_BEV['HeightCompression'] is HeightCompression


def test_bev_fractional_and_extra_upsample():
    cfg = EasyDict(LAYER_NUMS=[1, 1, 1], LAYER_STRIDES=[1, 2, 2], NUM_FILTERS=[8, 16, 32],
                   UPSAMPLE_STRIDES=[0.5, 1, 2, 2], NUM_UPSAMPLE_FILTERS=[8, 8, 8, 0])
    bev = BaseBEVBackbone(cfg, 4)
    assert bev.deblocks[0][0].stride == (2, 2) and isinstance(bev.deblocks[0][0], torch.nn.Conv2d)
    assert isinstance(bev.deblocks[1][0], torch.nn.ConvTranspose2d) and len(bev.deblocks) == 4
    out = bev({'spatial_features': torch.randn(1, 4, 16, 16)})['spatial_features_2d']
    assert out.shape == (1, 24, 16, 16) and bev.num_bev_features == 24


def structured_batch(batch_size=2, seed=0):
    """Ground plane, two walls and a box per sample, 1-5 points per voxel, KITTI-like voxel size."""
    rng = np.random.default_rng(seed)
    nx, ny, _ = SMALL_GRID
    coords = []
    for b in range(batch_size):
        gy, gx = np.nonzero(rng.random((ny, nx)) < 0.04)
        cells = [np.stack([np.full_like(gx, 8 + b), gy, gx], 1)]
        wz, wy = np.meshgrid(np.arange(9, 17), np.arange(40, 100), indexing='ij')
        cells.append(np.stack([wz.ravel(), wy.ravel(), np.full(wz.size, 120 - 10 * b)], 1))
        wz, wx = np.meshgrid(np.arange(9, 14), np.arange(10, 70), indexing='ij')
        cells.append(np.stack([wz.ravel(), np.full(wz.size, 30), wx.ravel()], 1))
        bz, by, bx = np.meshgrid(np.arange(9, 12), np.arange(100, 106), np.arange(60, 70), indexing='ij')
        cells.append(np.stack([bz.ravel(), by.ravel(), bx.ravel()], 1))
        zyx = np.unique(np.concatenate(cells), axis=0)
        coords.append(np.concatenate([np.full((len(zyx), 1), b), zyx], 1))
    coords = np.concatenate(coords)
    num_points = rng.integers(1, 6, len(coords))
    centres = (coords[:, [3, 2, 1]] + 0.5) * [0.05, 0.05, 0.1] + [0, -5, -3]
    points = centres[:, None] + rng.uniform(-0.02, 0.02, (len(coords), 5, 3))
    voxels = np.concatenate([points, rng.random((len(coords), 5, 1))], 2)
    voxels[np.arange(5)[None] >= num_points[:, None]] = 0
    return {'voxels': torch.tensor(voxels, dtype=torch.float32),
            'voxel_num_points': torch.tensor(num_points, dtype=torch.int32),
            'voxel_coords': torch.tensor(coords, dtype=torch.int32), 'batch_size': batch_size}


def test_second_stack_forward_backward_on_cpu(one_thread):
    ensure_spconv()
    torch.manual_seed(0)
    batch = structured_batch()
    vfe = MeanVFE(EasyDict(NAME='MeanVFE'), 4)
    backbone = VoxelBackBone8x(EasyDict(NAME='VoxelBackBone8x'), 4, np.array(SMALL_GRID))
    to_bev = HeightCompression(EasyDict(NAME='HeightCompression', NUM_BEV_FEATURES=256))
    bev = BaseBEVBackbone(EasyDict(SECOND_BEV), 256)
    for module in (vfe, backbone, to_bev, bev):
        batch = module(batch)

    counts = batch['voxel_num_points'].float()[:, None]
    assert torch.allclose(batch['voxel_features'], batch['voxels'].sum(1) / counts)
    scales = batch['multi_scale_3d_features']
    assert torch.equal(scales['x_conv1'].indices, batch['voxel_coords'])  # submanifold keeps the sites
    assert [scales[f'x_conv{i}'].spatial_shape for i in range(1, 5)] == [
        [41, 192, 176], [21, 96, 88], [11, 48, 44], [5, 24, 22]]
    assert batch['multi_scale_3d_strides'] == {'x_conv1': 1, 'x_conv2': 2, 'x_conv3': 4, 'x_conv4': 8}
    assert batch['encoded_spconv_tensor'].spatial_shape == [2, 24, 22]
    assert batch['encoded_spconv_tensor_stride'] == batch['spatial_features_stride'] == 8
    assert batch['spatial_features'].shape == (2, 256, 24, 22)
    assert batch['spatial_features_2d'].shape == (2, 512, 24, 22)

    batch['spatial_features_2d'].square().mean().backward()
    grad = backbone.conv_input[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert backbone.conv4[0][0].weight.grad.abs().sum() > 0


def test_res_backbone_forward_on_cpu(one_thread):
    ensure_spconv()
    batch = MeanVFE(EasyDict(), 4)(structured_batch(batch_size=1))
    batch = VoxelResBackBone8x(EasyDict(), 4, SMALL_GRID)(batch)
    assert batch['encoded_spconv_tensor'].features.shape[1] == 128
    assert batch['multi_scale_3d_features']['x_conv4'].features.shape[1] == 128


def test_duplicate_spconv_builds_are_refused():
    assert check_spconv_distributions(['numpy', 'spconv', 'torch', 'spconv']) == ['spconv']
    assert check_spconv_distributions(['spconv_cu126', 'spconvx']) == ['spconv-cu126']
    assert check_spconv_distributions([]) == []
    with pytest.raises(ImportError, match=r'spconv, spconv-cu121.*overwrite each other') as err:
        check_spconv_distributions(['torch', 'spconv-cu121', 'Spconv'])
    assert 'also-pcdet[cpu]' in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason='the stream patch only applies without CUDA')
def test_cpu_stream_patch_reaches_every_spconv_module(monkeypatch):
    import spconv.pytorch.ops as ops
    fake = ModuleType('spconv._stream_user')
    fake.get_current_stream = lambda: torch.cuda.current_stream()
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    patch_cpu_stream()
    patch_cpu_stream()
    assert fake.get_current_stream() == 0 and ops.get_current_stream() == 0
    assert fake.get_current_stream is ops.get_current_stream


def test_match_state_dict():
    model = {'a.weight': torch.zeros(16, 3, 3, 3, 4), 'b.weight': torch.zeros(8), 'c.weight': torch.zeros(4, 4)}
    old = torch.randn(3, 3, 3, 4, 16)  # spconv 1.x layout (kD, kH, kW, in, out)
    disk = {'a.weight': old, 'b.weight': torch.ones(9), 'c.weight': torch.ones(4, 4), 'd.weight': torch.ones(1)}
    loaded, not_updated = match_state_dict(disk, model)
    assert sorted(loaded) == ['a.weight', 'c.weight'] and not_updated == ['b.weight']
    assert torch.equal(loaded['a.weight'], old.permute(4, 0, 1, 2, 3))
    assert loaded['a.weight'][5, 0, 1, 2, 3] == old[0, 1, 2, 3, 5]

    loaded, not_updated = match_state_dict(disk, model, spconv_keys=set())
    assert 'a.weight' not in loaded
    loaded, not_updated = match_state_dict({f'model.{k}': v for k, v in disk.items()}, model)
    assert loaded == {} and not_updated == list(model)


class FakeDataset:
    point_feature_encoder = EasyDict(num_point_features=4)
    grid_size = np.array(SMALL_GRID)
    point_cloud_range = np.array([0, -5, -3, 8.8, 5, 1], dtype=np.float32)
    voxel_size = [0.05, 0.05, 0.1]
    depth_downsample_factor = None
    class_names = ['Car']


class Backbones(DetectorTemplate):
    def __init__(self, model_cfg, num_class, dataset):
        super().__init__(model_cfg, num_class, dataset)
        self.module_list = self.build_networks()


def second_cfg(**extra):
    return EasyDict(NAME='Backbones', VFE=dict(NAME='MeanVFE'), BACKBONE_3D=dict(NAME='VoxelBackBone8x'),
                    MAP_TO_BEV=dict(NAME='HeightCompression', NUM_BEV_FEATURES=256), BACKBONE_2D=SECOND_BEV, **extra)


def test_detector_template_builds_and_loads(tmp_path, caplog):
    model = Backbones(second_cfg(), 1, FakeDataset())
    assert [type(m) for m in model.module_list] == [MeanVFE, VoxelBackBone8x, HeightCompression, BaseBEVBackbone]
    assert model.dense_head is None and model.roi_head is None
    keys = list(model.state_dict())
    assert keys[:2] == ['global_step', 'backbone_3d.conv_input.0.weight'] and len(keys) == 1 + 72 + 84

    source = VoxelBackBone8x(EasyDict(), 4, SMALL_GRID).state_dict()
    state = {f'backbone_3d.{k}': v for k, v in source.items()}
    state['backbone_3d.conv_input.0.weight'] = source['conv_input.0.weight'].permute(1, 2, 3, 4, 0)  # 1.x
    path = tmp_path / 'ckpt.pth'
    torch.save({'epoch': 1, 'model_state': state, 'version': 'also-pcdet'}, path)
    with caplog.at_level(logging.INFO):
        assert model.load_params_from_file(str(path), logging.getLogger('t'), to_cpu=True) == (72, 157)
    assert torch.equal(model.backbone_3d.conv_input[0].weight, source['conv_input.0.weight'])
    assert 'Not updated weight backbone_2d.blocks.0.1.weight: torch.Size([128, 256, 3, 3])' in caplog.text
    assert '==> Done (loaded 72/157)' in caplog.text

    torch.save({'state_dict': state}, path)
    with pytest.raises(KeyError, match='model_state'):
        model.load_params_from_file(str(path), logging.getLogger('t'))


def test_detector_template_rejects_what_needs_openpcdet(monkeypatch):
    with pytest.raises(NotImplementedError, match='ROI_HEAD need OpenPCDet'):
        Backbones(second_cfg(ROI_HEAD=dict(NAME='PVRCNNHead')), 1, FakeDataset())
    monkeypatch.setattr(detector_template, 'DENSE_HEADS', {'Head': torch.nn.Identity})
    with pytest.raises(KeyError, match=r"'AnchorHeadSingle'.*\['Head'\]"):
        Backbones(second_cfg(DENSE_HEAD=dict(NAME='AnchorHeadSingle')), 1, FakeDataset())


def load_seam_copy():
    """A fresh copy of the seam module, importing whatever `pcdet` sys.modules / sys.path give it now."""
    spec = importlib.util.spec_from_file_location('also_pcdet._seam_copy', pcdet_seam.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NoPcdet:
    """An import finder that answers "no module named 'pcdet'" as if OpenPCDet were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == 'pcdet' or name.startswith('pcdet.'):
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None


def hide_pcdet(monkeypatch):
    """Make `import pcdet` fail for this test, whether or not OpenPCDet is installed."""
    for name in [n for n in sys.modules if n == 'pcdet' or n.startswith('pcdet.')]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, 'meta_path', [NoPcdet()] + sys.meta_path)


def test_seam_fallback(monkeypatch):
    hide_pcdet(monkeypatch)
    seam = load_seam_copy()
    assert not seam.HAVE_PCDET and seam.pcdet_global_cfg() is None
    assert seam.VFES is VFES and seam.DENSE_HEADS is DENSE_HEADS
    assert seam.DetectorTemplate is DetectorTemplate
    monkeypatch.setattr(seam, 'DENSE_HEADS', {})
    seam.register({'Backbones': Backbones}, {'Head': torch.nn.Identity})
    seam.register({'Backbones': Backbones}, {})  # same class again: fine
    with pytest.raises(ValueError, match="'Head' is already registered"):
        seam.register({}, {'Head': torch.nn.Linear})
    assert isinstance(seam.build_detector(second_cfg(), 1, FakeDataset()), Backbones)
    with pytest.raises(KeyError, match=r"'SECONDNet'; registered: \['Backbones'\]"):
        seam.build_detector(EasyDict(NAME='SECONDNet'), 1, FakeDataset())


FAKE_PCDET = {
    '__init__.py': '', 'config.py': 'cfg = {"ROOT_DIR": "fake"}', 'models/__init__.py': '',
    'models/backbones_2d/__init__.py': '__all__ = {}', 'models/backbones_2d/map_to_bev/__init__.py': '__all__ = {}',
    'models/backbones_3d/__init__.py': '__all__ = {}', 'models/backbones_3d/vfe/__init__.py': '__all__ = {}',
    'models/dense_heads/__init__.py': '__all__ = {}',
    'models/detectors/__init__.py': 'from .detector3d_template import Detector3DTemplate\n'
                                    '__all__ = {"Detector3DTemplate": Detector3DTemplate}',
    'models/detectors/detector3d_template.py': 'class Detector3DTemplate:\n    pass',
}


@pytest.fixture
def fake_pcdet(tmp_path, monkeypatch):
    """Write a stub `pcdet` package (in place of an installed OpenPCDet, restored afterwards); yield a loader
    of a fresh copy of the seam against it."""
    for rel, text in FAKE_PCDET.items():
        (tmp_path / 'pcdet' / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / 'pcdet' / rel).write_text(text)
    for name in [n for n in sys.modules if n == 'pcdet' or n.startswith('pcdet.')]:
        monkeypatch.delitem(sys.modules, name)  # an installed pcdet comes back when monkeypatch undoes this
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / 'pcdet', load_seam_copy
    for name in [n for n in sys.modules if n == 'pcdet' or n.startswith('pcdet.')]:
        del sys.modules[name]


def test_seam_uses_installed_pcdet(fake_pcdet):
    _, load_seam = fake_pcdet
    seam = load_seam()
    detectors = sys.modules['pcdet.models.detectors']
    assert seam.HAVE_PCDET and seam.pcdet_global_cfg() == {'ROOT_DIR': 'fake'}
    assert seam.DETECTORS is detectors.__all__ and seam.DetectorTemplate is detectors.Detector3DTemplate
    seam.register({'ALSO': Backbones}, {'AlsoOccupancyHead': torch.nn.Identity})
    assert detectors.__all__['ALSO'] is Backbones
    assert sys.modules['pcdet.models.dense_heads'].__all__ == {'AlsoOccupancyHead': torch.nn.Identity}


def test_seam_does_not_hide_a_broken_pcdet(fake_pcdet):
    root, load_seam = fake_pcdet
    (root / 'models' / '__init__.py').write_text('from ..ops.iou3d_nms import iou3d_nms_cuda')
    with pytest.raises(ModuleNotFoundError, match='pcdet.ops'):
        load_seam()
