"""tools/export_backbone.py and tools/check_pretrained.py on ALSO training checkpoints, against the shipped
OpenPCDet-shaped KITTI SECOND and Waymo CenterPoint configs (tests/detector_cfgs/)."""
import importlib.util
from pathlib import Path

import pytest
import torch
import yaml

from also_pcdet.config import cfg_from_yaml_file
from also_pcdet.engine.checkpoint import checkpoint_state, load_checkpoint, save_atomic
from also_pcdet.engine.export import BACKBONE_PREFIXES
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.pretrained_check import detector_geometry
from also_pcdet.models import ALSO
from also_pcdet.version import CHECKPOINT_VERSION
from conftest import REPO

TESTS = Path(__file__).parent
KITTI_SECOND = TESTS / 'detector_cfgs' / 'kitti_second.yaml'
WAYMO_CENTERPOINT = TESTS / 'detector_cfgs' / 'waymo_centerpoint.yaml'


def tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


export_main, check_main = tool('export_backbone'), tool('check_pretrained')


def training_checkpoint(path, detector_cfg, backbone_3d='VoxelBackBone8x'):
    """A checkpoint as tools/train.py writes it, of the ALSO pretraining model (cfgs/also_pretrain.yaml with
    `backbone_3d`) built on the range, voxel size and point features of `detector_cfg`."""
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')
    cfg.MODEL.BACKBONE_3D.NAME = backbone_3d
    model = ALSO(cfg.MODEL, num_class=1, dataset=detector_geometry(cfg_from_yaml_file(detector_cfg)))
    return save_atomic(checkpoint_state(model, build_optimizer(model, cfg.OPTIMIZATION), epoch=3, it=42,
                                        batch_in_epoch=0, seed=666), path)


def export(tmp_path, detector_cfg, backbone_3d='VoxelBackBone8x'):
    ckpt = training_checkpoint(tmp_path / 'checkpoint_epoch_3.pth', detector_cfg, backbone_3d)
    out = tmp_path / 'pretrained_backbone.pth'
    assert export_main(['--ckpt', str(ckpt), '--out', str(out)]) == 0
    return out


def check(ckpt, detector_cfg, capsys):
    code = check_main(['--ckpt', str(ckpt), '--detector_cfg', str(detector_cfg)])
    return code, capsys.readouterr().out


def openpcdet_layout(root, detector_cfg, model_dir, dataset_file) -> Path:
    """`detector_cfg` split as OpenPCDet ships it: tools/cfgs/<model_dir>/X.yaml whose DATA_CONFIG names
    `_BASE_CONFIG_: cfgs/dataset_configs/<dataset_file>` (a path relative to tools/)."""
    full = yaml.safe_load(Path(detector_cfg).read_text())
    base = root / 'tools' / 'cfgs' / 'dataset_configs' / dataset_file
    cfg = root / 'tools' / 'cfgs' / model_dir / Path(detector_cfg).name
    for path, content in ((base, full['DATA_CONFIG']),
                          (cfg, dict(full, DATA_CONFIG={'_BASE_CONFIG_': f'cfgs/dataset_configs/{dataset_file}'}))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(content))
    return cfg


def layout(state, prefix):
    return [f'{key[len(prefix):]} {tuple(value.shape)}' for key, value in state.items() if key.startswith(prefix)]


def test_export_writes_the_stock_backbone_file_second_loads_whole(tmp_path, capsys):
    exported = load_checkpoint(export(tmp_path, KITTI_SECOND))
    assert sorted(exported) == ['epoch', 'it', 'model_state', 'version']
    assert (exported['epoch'], exported['it'], exported['version']) == (3, 42, CHECKPOINT_VERSION)
    state = exported['model_state']
    assert all(key.startswith(BACKBONE_PREFIXES) for key in state)          # no head, no global_step
    keys = TESTS / 'pcdet_keys'                                             # OpenPCDet's names, spconv 2.x shapes
    assert layout(state, 'backbone_3d.') == (keys / 'voxel_backbone_8x.txt').read_text().splitlines()
    assert layout(state, 'backbone_2d.') == (keys / 'base_bev_backbone.txt').read_text().splitlines()

    code, out = check(tmp_path / 'pretrained_backbone.pth', KITTI_SECOND, capsys)
    assert code == 0, out
    assert [line for line in out.splitlines() if line.startswith('Not updated')] == [
        'Not updated weight global_step: torch.Size([1])']
    assert '==> Done (loaded 156/157)' in out and 'OK: every backbone weight loads' in out
    stock = openpcdet_layout(tmp_path / 'OpenPCDet', KITTI_SECOND, 'kitti_models', 'kitti_dataset.yaml')
    code, out = check(tmp_path / 'pretrained_backbone.pth', stock, capsys)    # base found from any folder
    assert code == 0 and '==> Done (loaded 156/157)' in out, out

    code, out = check(tmp_path / 'pretrained_backbone.pth', WAYMO_CENTERPOINT, capsys)   # VoxelResBackBone8x
    assert code == 1 and '==> Done (loaded 107/227)' in out, out          # the 2-D part and 23 same-shape 3-D keys
    assert 'FAIL: 119 backbone weights' in out and 'backbone_3d.conv1.0.conv1.weight: not in the file' in out


def test_waymo_five_feature_backbone_into_kitti_misses_conv_input_only(tmp_path, capsys):
    code, out = check(export(tmp_path, WAYMO_CENTERPOINT), KITTI_SECOND, capsys)
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith('Not updated')] == [
        'Not updated weight global_step: torch.Size([1])',
        'Not updated weight backbone_3d.conv_input.0.weight: torch.Size([16, 3, 3, 3, 4])']
    assert '==> Done (loaded 155/157)' in out
    assert ('FAIL: 1 backbone weights would keep their random initialisation:\n  backbone_3d.conv_input.0.weight: '
            'the file has (16, 3, 3, 3, 5), the detector needs (16, 3, 3, 3, 4)') in out


def test_centerpoint_shaped_backbone_loads_into_centerpoint(tmp_path, capsys):
    code, out = check(export(tmp_path, WAYMO_CENTERPOINT, 'VoxelResBackBone8x'), WAYMO_CENTERPOINT, capsys)
    assert code == 0 and '==> Done (loaded 226/227)' in out, out       # 142 + 84 backbone keys + global_step


@pytest.mark.slow
def test_official_style_flat_file_loads_nothing(tmp_path, capsys):
    ckpt = training_checkpoint(tmp_path / 'checkpoint_epoch_3.pth', KITTI_SECOND)
    flat = {f'model.{key}': value for key, value in load_checkpoint(ckpt)['model_state'].items()}
    torch.save(flat, tmp_path / 'also_official.pth')
    code, out = check(tmp_path / 'also_official.pth', KITTI_SECOND, capsys)
    assert code == 1
    assert "no 'model_state' entry" in out and 'FAIL: 156 backbone weights' in out
    assert "hint: the file's keys carry the prefix 'model.'" in out

    torch.save({'model_state': flat}, tmp_path / 'wrapped.pth')             # right container, wrong names
    code, out = check(tmp_path / 'wrapped.pth', KITTI_SECOND, capsys)
    assert code == 1 and '==> Done (loaded 0/157)' in out and "prefix 'model.'" in out

    with pytest.raises(SystemExit, match='is an official ALSO checkpoint: name the OpenPCDet detector config'):
        export_main(['--ckpt', str(tmp_path / 'also_official.pth'), '--out', str(tmp_path / 'out.pth')])
