"""Bad settings and bad checkpoints stop with an error naming the key, flag or file: `_BASE_CONFIG_` cycles,
numbers out of range (flags and config keys), an output folder whose only checkpoint is unreadable, and a
checkpoint whose `model_state` is not a dict of tensors."""
import pytest
import torch

from also_pcdet.config import ConfigError, cfg_from_yaml_file
from also_pcdet.config_checks import check_config
from also_pcdet.engine.checkpoint import load_checkpoint
from conftest import REPO
from test_checkpoint_tools import KITTI_SECOND, check, export_main
from tools import train
from train_cli import FAST_OVERRIDES, run_dir

SMALL_BOX = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-3.2,-3,6.4,3.2,1]']


def test_a_base_config_cycle_is_named(tmp_path):
    a, b, c = (tmp_path / f'{name}.yaml' for name in 'abc')
    a.write_text('_BASE_CONFIG_: b.yaml\nOPTIMIZATION:\n    LR: 0.01\n')
    b.write_text('_BASE_CONFIG_: c.yaml\n')
    c.write_text('DATA_CONFIG:\n    _BASE_CONFIG_: a.yaml\n')  # a section naming a file up the chain
    with pytest.raises(ConfigError) as err:
        cfg_from_yaml_file(a)
    assert str(err.value) == f'_BASE_CONFIG_ cycle: {a} -> {b} -> {c} -> {a}'
    a.write_text('_BASE_CONFIG_: a.yaml\n')
    with pytest.raises(ConfigError, match=f'^_BASE_CONFIG_ cycle: {a} -> {a}$'):
        cfg_from_yaml_file(a)
    diamond = tmp_path / 'diamond.yaml'  # the same base twice, not in a chain: no cycle
    diamond.write_text(f'_BASE_CONFIG_: {REPO}/cfgs/also_pretrain.yaml\n'
                       f'DATA_CONFIG:\n    _BASE_CONFIG_: {REPO}/cfgs/dataset_configs/kitti_object_sweeps.yaml\n')
    assert cfg_from_yaml_file(diamond).DATA_CONFIG.DATASET == 'KittiObjectSweeps'


@pytest.mark.parametrize('key, value, message', [
    ('OPTIMIZATION.NUM_EPOCHS', -3, 'OPTIMIZATION.NUM_EPOCHS must be at least 1, got -3'),
    ('OPTIMIZATION.NUM_EPOCHS', 0, 'OPTIMIZATION.NUM_EPOCHS must be at least 1, got 0'),
    ('OPTIMIZATION.BATCH_SIZE_PER_GPU', -2, 'OPTIMIZATION.BATCH_SIZE_PER_GPU must be at least 1, got -2'),
    ('DATA_CONFIG.QUERIES.NUM_QUERIES', 0, 'DATA_CONFIG.QUERIES.NUM_QUERIES must be at least 1, got 0'),
    ('OPTIMIZATION.LR', float('nan'), 'OPTIMIZATION.LR is nan: every number must be finite'),
    ('OPTIMIZATION.LR', 0.0, 'OPTIMIZATION.LR must be above 0, got 0.0'),
    ('OPTIMIZATION.WEIGHT_DECAY', float('-inf'), 'OPTIMIZATION.WEIGHT_DECAY is -inf: every number must be finite'),
    ('DATA_CONFIG.QUERIES.BAND', -0.1, 'DATA_CONFIG.QUERIES.BAND must be above 0, got -0.1'),
    ('DATA_CONFIG.AUGMENTATION.FLIP_X_PROB', 1.5, 'DATA_CONFIG.AUGMENTATION.FLIP_X_PROB must be at least 0 and '
                                                  'at most 1, got 1.5'),
    ('DATA_CONFIG.SAMPLE_INTERVAL.train', 0, 'DATA_CONFIG.SAMPLE_INTERVAL.train must be at least 1, got 0'),
    ('MODEL.DENSE_HEAD.RADIUS', 0, 'MODEL.DENSE_HEAD.RADIUS must be above 0, got 0'),
])
def test_numbers_out_of_range_name_their_key(tmp_path, key, value, message):
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain.yaml')
    cfg.DATA_CONFIG.DATA_PATH = str(tmp_path)
    *path, last = key.split('.')
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert str(err.value) == f'bad config:\n  {message}'


def test_a_nan_in_a_list_is_named(tmp_path):
    cfg_file = tmp_path / 'nan.yaml'
    cfg_file.write_text(f'_BASE_CONFIG_: {REPO}/cfgs/also_pretrain.yaml\nDATA_CONFIG:\n    DATA_PATH: {tmp_path}\n'
                        f'    AUGMENTATION:\n        ROT_RANGE: [-180, .nan]\n')
    with pytest.raises(ConfigError, match=r'DATA_CONFIG.AUGMENTATION.ROT_RANGE\[1\] is nan: every number must be '
                                          r'finite'):
        check_config(cfg_from_yaml_file(cfg_file))


@pytest.mark.parametrize('flag, value', [('--epochs', -1), ('--epochs', 0), ('--batch_size', 0),
                                         ('--batch_size', -4), ('--workers', -1)])
def test_numeric_flags_out_of_range_stop_before_training(synthetic_kitti, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as err:
        train.main(['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'), flag, str(value), '--output_root',
                    str(tmp_path), '--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)])
    lowest = 0 if flag == '--workers' else 1
    assert err.value.code == 2 and f'{flag} must be at least {lowest}, got {value}' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def train_args(data, out_root, *flags):
    return ['--cfg_file', 'cfgs/also_pretrain.yaml', '--workers', '0', '--epochs', '1', '--batch_size', '2',
            '--output_root', str(out_root), *flags, '--set', *FAST_OVERRIDES, *SMALL_BOX,
            'DATA_CONFIG.DATA_PATH', str(data), 'DATA_CONFIG.SAMPLE_INTERVAL.train', '4']


@pytest.mark.slow
def test_an_unreadable_only_checkpoint_stops_the_run_unless_fresh_start(synthetic_kitti, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    ckpt_dir = run_dir(tmp_path) / 'ckpt'
    ckpt_dir.mkdir(parents=True)
    broken = ckpt_dir / 'latest_model.pth'
    broken.write_bytes(b'PK\x03\x04 cut short')
    with pytest.raises(RuntimeError, match=rf'{ckpt_dir} holds only unreadable checkpoints, so this run cannot '
                                           rf'resume: {broken}: cannot load checkpoint .*--fresh_start'):
        train.main(train_args(synthetic_kitti, tmp_path))
    assert broken.read_bytes() == b'PK\x03\x04 cut short' and not (ckpt_dir / 'checkpoint_epoch_1.pth').exists()

    torch.save({'model_state': [1, 2], 'it': 9}, broken)  # loads, but is no checkpoint to resume from
    with pytest.raises(RuntimeError, match=rf'resume: {broken}: "model_state" is a list, not a dict'):
        train.main(train_args(synthetic_kitti, tmp_path))

    train.main(train_args(synthetic_kitti, tmp_path, '--fresh_start'))
    assert load_checkpoint(ckpt_dir / 'checkpoint_epoch_1.pth')['it'] == 1


@pytest.mark.parametrize('model_state, problem', [
    ([1, 2], '"model_state" is a list, not a dict of parameter name -> tensor'),
    ({'vfe.weight': 3}, '"model_state" has 1 entries that are not parameter name -> tensor, e.g. \'vfe.weight\': int'),
])
def test_a_model_state_that_is_not_tensors_is_named_by_the_tools(tmp_path, capsys, model_state, problem):
    path = tmp_path / 'odd.pth'
    torch.save({'model_state': model_state, 'epoch': 1, 'it': 1}, path)
    with pytest.raises(SystemExit) as err:
        export_main(['--ckpt', str(path), '--out', str(tmp_path / 'out.pth')])
    assert str(err.value) == f'export_backbone: {path}: {problem}'
    code, out = check(path, KITTI_SECOND, capsys)
    assert code == 1 and f"==> {path}: {problem}; OpenPCDet's load_params_from_file fails on it" in out
    assert 'FAIL: 156 backbone weights would keep their random initialisation' in out
