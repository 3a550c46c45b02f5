"""Deriving the ALSO config from an OpenPCDet detector config: OpenPCDet's `_BASE_CONFIG_` resolution from
any working folder, the derived model against OpenPCDet's own backbone facts for every covered stock config,
the raw-sweep layout of the detector's dataset, and the refusal of backbones ALSO cannot pretrain."""
import argparse
import re
import subprocess
import sys

import pytest
import torch
import yaml

from also_pcdet.config import ConfigError, cfg_from_yaml_file, config_from_args, plain, write_resolved_config
from also_pcdet.config_checks import schema_errors, value_errors
from also_pcdet.config_schema import config_schema
from also_pcdet.detector_config import DerivationError, derive_config, derive_from_file, detector_cfg_from_facts
from also_pcdet.engine.cli import run_main
from also_pcdet.engine.pretrained_check import BackboneParts
from conftest import REPO
from stock_facts import MODULES, configs_of, module_layout, stock_configs
from tools import export_backbone, stock_coverage, train
from train_cli import cli_env, train_args

ALSO = REPO / 'cfgs' / 'also_pretrain.yaml'
COVERED = configs_of('voxel', 'pillar', 'pillarnet', 'voxelnext')
NO_LAYOUT = {'argo2_models/cbgs_voxel01_voxelnext.yaml': 'Argo2Dataset'}


def fake_openpcdet(root, name='kitti_models/voxel_rcnn_car.yaml'):
    """OpenPCDet/tools/cfgs/ with the stock config `name` written from the facts as OpenPCDet ships it: its
    DATA_CONFIG a `_BASE_CONFIG_: cfgs/dataset_configs/...` (relative to tools/) plus its own keys."""
    entry = stock_configs()[name]
    derived = detector_cfg_from_facts(entry)
    tools = root / 'OpenPCDet' / 'tools'
    base = tools / 'cfgs' / 'dataset_configs' / 'kitti_dataset.yaml'
    base.parent.mkdir(parents=True)
    data = {key: value for key, value in derived.DATA_CONFIG.items() if key != 'POINT_CLOUD_RANGE'}
    data['POINT_CLOUD_RANGE'] = [0, -40, -3, 70.4, 40, 1]
    base.write_text(yaml.safe_dump(yaml.safe_load(yaml.safe_dump(plain(data)))))
    detector = {'CLASS_NAMES': ['Car'], 'DATA_CONFIG': {'_BASE_CONFIG_': 'cfgs/dataset_configs/kitti_dataset.yaml',
                                                       'POINT_CLOUD_RANGE': entry['point_cloud_range']},
                'MODEL': plain(derived.MODEL)}
    detector['MODEL']['DENSE_HEAD'] = {'NAME': 'AnchorHeadSingle', 'CLASS_AGNOSTIC': False}
    path = tools / 'cfgs' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(detector, sort_keys=False))
    return path


def layout_of(cfg) -> dict:
    model = BackboneParts(cfg)
    return {module: module_layout(model, module) for module in MODULES}


def test_base_config_resolves_from_openpcdet_tools_in_any_working_folder(tmp_path, monkeypatch):
    path = fake_openpcdet(tmp_path)
    elsewhere = tmp_path / 'somewhere' / 'else'
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    provenance = []
    args = argparse.Namespace(cfg_file=str(ALSO), detector_cfg=str(path),
                              set_cfgs=['DATA_CONFIG.DATA_PATH', str(tmp_path)])
    cfg = config_from_args(args, provenance)
    entry = stock_configs()['kitti_models/voxel_rcnn_car.yaml']
    assert cfg.MODEL.BACKBONE_2D == entry['BACKBONE_2D']      # NUM_FILTERS [64, 128], not the ALSO config's
    assert cfg.DATA_CONFIG.VOXEL_SIZE == entry['voxel_size']  # from the base, found relative to tools/
    assert cfg.DATA_CONFIG.VOXELIZATION.MAX_NUMBER_OF_VOXELS == entry['max_number_of_voxels']
    assert cfg.DATA_CONFIG.DATASET == 'KittiObjectSweeps' and cfg.DATA_CONFIG.DATA_PATH == str(tmp_path)
    assert cfg.MODEL.DENSE_HEAD.NAME == 'AlsoOccupancyHead' and cfg.OPTIMIZATION.OPTIMIZER == 'adamw'
    assert cfg.DERIVED_FROM == str(path.resolve()) and 'DETECTOR_CFG' not in cfg
    assert str(path.resolve()) in provenance[0] and 'MODEL.BACKBONE_2D (BaseBEVBackbone)' in provenance[0]
    assert layout_of(cfg) == {module: entry['backbone_state'].get(module, []) for module in MODULES}
    cfg.DATA_CONFIG.POINT_CLOUD_RANGE = [0, -12.8, -3, 25.6, 12.8, 1]  # as --set after the derivation would
    resolved = write_resolved_config(cfg, tmp_path / 'resolved.yaml')  # what train.py saves: re-loads as it ran
    assert config_from_args(argparse.Namespace(cfg_file=str(resolved), detector_cfg=None, set_cfgs=None)) == cfg

    also = cfg_from_yaml_file(ALSO)  # the same through the YAML key, named relative to the working folder
    also.DETECTOR_CFG = str(path.relative_to(tmp_path.parent))
    monkeypatch.chdir(tmp_path.parent)
    key_file = tmp_path / 'also_voxel_rcnn.yaml'
    key_file.write_text(yaml.safe_dump(plain(also)))
    again = config_from_args(argparse.Namespace(cfg_file=str(key_file), detector_cfg=None,
                                                set_cfgs=['DATA_CONFIG.DATA_PATH', str(tmp_path)]))
    cfg.DATA_CONFIG.POINT_CLOUD_RANGE = entry['point_cloud_range']
    assert again == cfg


@pytest.mark.parametrize('name', COVERED)
def test_derived_model_equals_openpcdets_backbone(name, tmp_path):
    entry = stock_configs()[name]
    also = cfg_from_yaml_file(ALSO)
    if name in NO_LAYOUT:
        with pytest.raises(DerivationError, match=f"'{NO_LAYOUT[name]}' has no raw-sweep layout"):
            derive_config(also, detector_cfg_from_facts(entry), name)
        return
    cfg = derive_config(also, detector_cfg_from_facts(entry), name)
    assert layout_of(cfg) == {module: entry['backbone_state'].get(module, []) for module in MODULES}
    assert cfg.DATA_CONFIG.POINT_CLOUD_RANGE == entry['point_cloud_range']
    assert list(cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list) == entry['used_feature_list']
    if entry['max_points_per_voxel'] is not None:
        assert cfg.DATA_CONFIG.VOXELIZATION.MAX_POINTS_PER_VOXEL == entry['max_points_per_voxel']


def test_the_layout_follows_the_detectors_dataset():
    also = cfg_from_yaml_file(ALSO)  # KittiObjectSweeps
    provenance = []
    cfg = derive_config(also, detector_cfg_from_facts(stock_configs()['nuscenes_models/cbgs_pp_multihead.yaml']),
                        'cbgs_pp_multihead.yaml', provenance)
    assert cfg.DATA_CONFIG.DATASET == 'NuScenesSweeps' and cfg.DATA_CONFIG.DATA_SPLIT.train == 'train'
    # ALSO's own queries; the input cap of the nuScenes layout (none: OpenPCDet's nuScenes detectors see every point)
    assert cfg.DATA_CONFIG.QUERIES == dict(also.DATA_CONFIG.QUERIES, MAX_INPUT_POINTS=None)
    assert also.DATA_CONFIG.QUERIES.MAX_INPUT_POINTS == 80000
    assert any('cfgs/dataset_configs/nuscenes_sweeps.yaml' in line for line in provenance)
    assert 'BACKBONE_3D' not in cfg.MODEL and cfg.MODEL.VFE.NAME == 'PillarVFE'

    raw = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain_kitti_raw.yaml')  # a KITTI layout stays
    kitti = derive_config(raw, detector_cfg_from_facts(stock_configs()['kitti_models/pv_rcnn.yaml']), 'pv_rcnn')
    assert kitti.DATA_CONFIG.DATASET == 'KittiRawSweeps' and kitti.DATA_CONFIG.DATA_PATH == raw.DATA_CONFIG.DATA_PATH


@pytest.mark.parametrize('name, reason', [
    ('kitti_models/pointrcnn.yaml', 'MODEL.BACKBONE_3D PointNet2MSG is point-based'),
    ('kitti_models/CaDDN.yaml', 'MODEL.VFE ImageVFE is image-based'),
    ('waymo_models/mppnet_4frames.yaml', 'MPPNet has no VFE, BACKBONE_3D, MAP_TO_BEV or BACKBONE_2D section'),
    ('kitti_models/PartA2_free.yaml', 'no MODEL.BACKBONE_2D: MODEL.BACKBONE_3D UNetV2 ends in a sparse or 3-D'),
    ('kitti_models/voxel_rcnn_car_focal_multimodal.yaml', 'VoxelBackBone8xFocal has USE_IMG: it needs camera'),
])
def test_backbones_alsocannot_pretrain_are_refused_naming_module_and_reason(name, reason):
    with pytest.raises(DerivationError, match='cannot pretrain this backbone with ALSO') as err:
        derive_config(cfg_from_yaml_file(ALSO), detector_cfg_from_facts(stock_configs()[name]), name)
    assert reason in str(err.value)


@pytest.mark.slow
def test_train_refuses_a_point_based_detector_before_training(tmp_path):
    path = tmp_path / 'pointrcnn.yaml'
    path.write_text(yaml.safe_dump(plain(detector_cfg_from_facts(stock_configs()['kitti_models/pointrcnn.yaml']))))
    run = subprocess.run([sys.executable, str(REPO / 'tools' / 'train.py'), '--cfg_file', str(ALSO), '--detector_cfg',
                          str(path), '--output_root', str(tmp_path / 'out')],
                         capture_output=True, text=True, env=cli_env(), cwd=tmp_path)
    assert run.returncode != 0 and not (tmp_path / 'out').exists()
    assert 'PointNet2MSG is point-based' in run.stderr
    with pytest.raises(ConfigError, match='detector config not found'):
        derive_from_file(cfg_from_yaml_file(ALSO), tmp_path / 'missing.yaml')


@pytest.mark.slow
def test_stock_coverage_trains_exports_and_loads_each_config(tmp_path, monkeypatch, capsys):
    """Voxel R-CNN (narrow BEV backbone) and PointPillars pretrain for a step on synthetic KITTI sweeps and their
    exports load every backbone key; PointRCNN gets a row with the refusal."""
    monkeypatch.chdir(tmp_path)
    assert stock_coverage.main(['--facts', str(REPO / 'tests' / 'facts' / 'stock_backbones.json'), '--work',
                                str(tmp_path), '--only', 'kitti_models/voxel_rcnn_car.yaml',
                                'kitti_models/pointpillar.yaml', 'kitti_models/pointrcnn.yaml']) == 0
    stdout = capsys.readouterr().out
    rows = {line.split(' | ')[0].strip('| '): line for line in stdout.splitlines() if line.startswith('| ')
            and line.endswith('.yaml', 0, line.index(' | '))}
    assert '| 156/156 | yes |' in rows['kitti_models/voxel_rcnn_car.yaml']
    assert 'export ==> Done (loaded 156/157)' in rows['kitti_models/voxel_rcnn_car.yaml']
    assert '| 120/120 | yes |' in rows['kitti_models/pointpillar.yaml']
    assert 'export ==> Done (loaded 120/121)' in rows['kitti_models/pointpillar.yaml']
    assert '| 0/192 | no |' in rows['kitti_models/pointrcnn.yaml'] and 'point-based' in rows['kitti_models/pointrcnn.yaml']
    assert stdout.splitlines()[-1] == 'covered 2/58 configs'
    documented = {line.split(' | ')[0].strip('| '): line for line in (REPO / 'docs' / 'coverage.md').read_text()
                  .splitlines() if line.startswith('| ') and line.split(' | ')[0].strip('| ') in rows}
    assert documented == rows, 'the coverage table in docs/coverage.md is what the command prints'
    assert 'cropped' in stdout
    exported = torch.load(next(tmp_path.glob('kitti_models_pointpillar.yaml/output/**/pretrained_backbone.pth')),
                          weights_only=True)
    assert [key for key in exported['model_state']] == [
        key for module in MODULES for key, _ in stock_configs()['kitti_models/pointpillar.yaml']['backbone_state']
        .get(module, [])]


@pytest.mark.slow
def test_export_backbone_refuses_a_detector_config_it_does_not_fit(tmp_path, capsys):
    second, voxel_rcnn = (tmp_path / 'second.yaml', tmp_path / 'voxel_rcnn_car.yaml')
    for path, name in ((second, 'kitti_models/second.yaml'), (voxel_rcnn, 'kitti_models/voxel_rcnn_car.yaml')):
        path.write_text(yaml.safe_dump(plain(detector_cfg_from_facts(stock_configs()[name]))))
    model = BackboneParts(derive_config(cfg_from_yaml_file(ALSO), cfg_from_yaml_file(second), 'second'))
    ckpt = tmp_path / 'checkpoint_epoch_1.pth'
    torch.save({'model_state': model.state_dict(), 'epoch': 1, 'it': 1}, ckpt)
    tool = ['--ckpt', str(ckpt), '--out']

    with pytest.raises(SystemExit) as stop:   # the command line's end, in this process
        run_main(export_backbone.main, tool + [str(tmp_path / 'rcnn.pth'), '--detector_cfg', str(voxel_rcnn)])
    err = str(stop.value.code)   # SystemExit(message): Python prints it to stderr and exits 1
    assert not list(tmp_path.glob('*rcnn.pth*'))
    assert 'does not fit' in err and '==> Done (loaded 86/157)' in err
    assert 'backbone_2d.blocks.0.1.weight: the file has (128, 256, 3, 3), the detector needs (64, 256, 3, 3)' in err

    export_backbone.main(tool + [str(tmp_path / 'second.pth'), '--detector_cfg', str(second)])
    assert '==> Done (loaded 156/157): every backbone key loads' in capsys.readouterr().out
    assert torch.load(tmp_path / 'second.pth', weights_only=True)['model_state'].keys() == {
        key for key in model.state_dict() if key != 'global_step'}


LOADS_INTO = re.compile(r'^# Every backbone key loads into: (.*) \(same layout', re.M)


@pytest.mark.parametrize('path', sorted((REPO / 'cfgs').glob('also_pretrain*.yaml')), ids=lambda p: p.stem)
def test_shipped_config_headers_claim_only_what_loads(path):
    text = path.read_text()
    assert 'Feeds' not in text and 'loads fully' not in text
    match = LOADS_INTO.search(text)
    if match is None:
        return
    mine = layout_of(cfg_from_yaml_file(path))
    for name in match.group(1).split(', '):
        assert mine == {module: stock_configs()[name]['backbone_state'].get(module, []) for module in MODULES}, name


@pytest.mark.parametrize('path', sorted((REPO / 'cfgs' / 'detector_cfgs').glob('*.yaml')), ids=lambda p: p.stem)
def test_shipped_detector_configs_are_the_stock_ones(path):
    name = re.search(r"OpenPCDet's tools/cfgs/(\S+\.yaml)", path.read_text()).group(1)
    cfg = derive_from_file(cfg_from_yaml_file(ALSO), path)
    assert layout_of(cfg) == {module: stock_configs()[name]['backbone_state'].get(module, []) for module in MODULES}


@pytest.mark.slow
def test_training_fails_when_its_export_does_not_fit_the_detector(synthetic_kitti, tmp_path, capsys):
    """A BEV backbone changed away from the detector's by --set (applied after the derivation)
    makes the end-of-run check fail the run (exit 1, the loader's line and the first misfit in the log)."""
    detector = REPO / 'cfgs' / 'detector_cfgs' / 'kitti_voxel_rcnn_car.yaml'
    args = train_args(synthetic_kitti, tmp_path, '--epochs', '1', '--batch_size', '4', '--detector_cfg', detector,
                      sets=['MODEL.BACKBONE_2D.NUM_FILTERS', '[128,256]'])
    with pytest.raises(SystemExit) as stop:   # in this process: the tool's end is run_main's, tested in test_faults
        run_main(train.main, args)
    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert re.search(r'pretrained_backbone.pth does not fit \S+kitti_voxel_rcnn_car.yaml: ==> Done \(loaded \d+/157\)',
                     err), err[-2000:]
    assert 'backbone_2d.blocks.0.1.weight: the file has (128, 256, 3, 3), the detector needs (64, 256, 3, 3)' in err

    train.main(train_args(synthetic_kitti, tmp_path / 'fits', '--epochs', '1', '--batch_size', '4',
                          '--detector_cfg', detector))
    err = capsys.readouterr().err
    assert f'checked against {detector}: ==> Done (loaded 156/157)' in err
    assert 'derived: DATA_CONFIG.POINT_CLOUD_RANGE' in err and 'MODEL.BACKBONE_2D (BaseBEVBackbone)' in err


@pytest.mark.parametrize('also_cfg', ['also_pretrain.yaml', 'also_pretrain_nuscenes_10sweeps.yaml'])
def test_a_multi_sweep_nuscenes_detector_gets_the_same_sweep_merge(also_cfg):
    """OpenPCDet's nuScenes detectors merge DATA_CONFIG.MAX_SWEEPS sweeps with a time-lag feature: the derived
    layout merges as many (queries from the key frame), so the timestamp weights are pretrained too."""
    detector = detector_cfg_from_facts(stock_configs()['nuscenes_models/cbgs_voxel01_res3d_centerpoint.yaml'])
    single = derive_config(cfg_from_yaml_file(REPO / 'cfgs' / also_cfg), detector, 'centerpoint')
    assert single.DATA_CONFIG.DATASET == 'NuScenesSweeps' and 'MAX_SWEEPS' not in single.DATA_CONFIG
    detector.DATA_CONFIG.MAX_SWEEPS = 5
    provenance = []
    merged = derive_config(cfg_from_yaml_file(REPO / 'cfgs' / also_cfg), detector, 'centerpoint', provenance)
    data = merged.DATA_CONFIG
    assert data.DATASET == 'NuScenesMultiSweeps' and data.MAX_SWEEPS == 5
    assert data.POINT_FEATURE_ENCODING.used_feature_list[-1] == 'timestamp'
    if also_cfg == 'also_pretrain.yaml':
        assert dict(data.DATA_SPLIT) == {'train': 'nuscenes_infos_5sweeps_train.pkl',
                                         'test': 'nuscenes_infos_5sweeps_val.pkl'}
        assert any('nuscenes_multisweep.yaml' in line for line in provenance)
    assert not schema_errors(merged, config_schema(data.DATASET)) and not value_errors(merged)
