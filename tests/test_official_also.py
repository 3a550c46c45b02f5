"""tools/export_backbone.py on checkpoints in the official ALSO release format (flat state dict, `model.` prefix,
built here from OpenPCDet's own key list in tests/facts), for stock KITTI and ONCE detector configs."""
import json

import pytest
import torch
import yaml

from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.official_also import SPCONV_LAYOUTS
from test_checkpoint_tools import KITTI_SECOND, TESTS, check, export_main

FACTS = {c['config']: c for c in json.loads((TESTS / 'facts' / 'stock_backbones.json').read_text())['configs']}
LAYOUTS = list(SPCONV_LAYOUTS)


def stock_backbone(config) -> dict:
    """{key: shape} of the backbone of a stock OpenPCDet config, as OpenPCDet itself built it."""
    return {key: tuple(shape) for part in FACTS[config]['backbone_state'].values() for key, shape in part}


def official_file(path, config, layout, lightning=False, input_channels=None):
    """An ALSO release file (or Lightning checkpoint) for `config`'s backbone: random weights, sparse conv
    weights stored in `layout`; returns the weights in spconv 2.2+ layout, keyed as OpenPCDet names them."""
    generator = torch.Generator().manual_seed(0)
    truth, stored = {}, {}
    for key, shape in stock_backbone(config).items():
        if input_channels and key == 'backbone_3d.conv_input.0.weight':
            shape = shape[:-1] + (input_channels,)
        truth[key] = (torch.randint(0, 100, shape, generator=generator) if key.endswith('num_batches_tracked')
                      else torch.randn(shape, generator=generator))
        permutation = SPCONV_LAYOUTS[layout]
        value = truth[key]
        if permutation is not None and value.dim() == 5:  # store it as that spconv version would
            value = value.permute(torch.argsort(torch.tensor(permutation)).tolist()).contiguous()
        stored[key] = value
    stored.update({'global_step': torch.tensor([1234.0]), 'dense_head.conv_cls.weight': torch.randn(18, 512, 1, 1)})
    if lightning:
        state = {'state_dict': {**{f'backbone.model.{k}': v for k, v in stored.items()},
                                'backbone.classifier.weight': torch.randn(128, 512, 1, 1),
                                'decoder.fc_in.weight': torch.randn(8, 8)},
                 'epoch': 499, 'global_step': 232000}
    else:
        state = {f'model.{key}': value for key, value in stored.items()}
    torch.save(state, path)
    return truth


@pytest.mark.parametrize('layout, lightning', [(LAYOUTS[0], False), (LAYOUTS[1], False), (LAYOUTS[2], True)])
def test_official_checkpoint_converts_to_a_file_second_loads_whole(tmp_path, capsys, layout, lightning):
    truth = official_file(tmp_path / 'pretrained_backbone_also_kitti3d_second_epoch_499.ckpt',
                          'kitti_models/second.yaml', layout, lightning)
    out = tmp_path / 'pretrained_backbone.pth'
    assert export_main(['--ckpt', str(tmp_path / 'pretrained_backbone_also_kitti3d_second_epoch_499.ckpt'),
                        '--detector_cfg', str(KITTI_SECOND), '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert f'sparse conv weights in {layout}' in printed and '==> Done (loaded 156/157): every backbone key loads' in printed
    state = load_checkpoint(out)['model_state']
    assert {key: tuple(value.shape) for key, value in state.items()} == stock_backbone('kitti_models/second.yaml')
    for key, value in truth.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    code, report = check(out, KITTI_SECOND, capsys)
    assert code == 0 and '==> Done (loaded 156/157)' in report


def once_second(tmp_path):
    """kitti_second.yaml turned into OpenPCDet's once_models/second.yaml (same backbone, ONCE's data section)."""
    cfg = yaml.safe_load(KITTI_SECOND.read_text())
    cfg['DATA_CONFIG'].update(DATASET='ONCEDataset', POINT_CLOUD_RANGE=FACTS['once_models/second.yaml']['point_cloud_range'])
    cfg['DATA_CONFIG']['DATA_PROCESSOR'][-1]['VOXEL_SIZE'] = FACTS['once_models/second.yaml']['voxel_size']
    path = tmp_path / 'once_second.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_once_detector_gets_alsos_intensity_scale_folded_in(tmp_path, capsys):
    """ALSO's ONCE model saw intensity / 255; OpenPCDet's ONCE loader feeds 0-255: the intensity column of the
    bias-free first conv is divided by 255 (or by --intensity_scale)."""
    truth = official_file(tmp_path / 'once.ckpt', 'once_models/second.yaml', LAYOUTS[0])
    detector = once_second(tmp_path)
    first = 'backbone_3d.conv_input.0.weight'
    for args, scale in (([], 255.0), (['--intensity_scale', '1'], 1.0)):
        out = tmp_path / f'backbone_{scale:g}.pth'
        assert export_main(['--ckpt', str(tmp_path / 'once.ckpt'), '--detector_cfg', str(detector),
                            '--out', str(out), *args]) == 0
        assert f'first conv: [1.0, 1.0, 1.0, {scale}]' in capsys.readouterr().out
        weight = load_checkpoint(out)['model_state'][first]
        torch.testing.assert_close(weight[..., :3], truth[first][..., :3], rtol=0, atol=0)
        torch.testing.assert_close(weight[..., 3], truth[first][..., 3] / scale)


def test_a_checkpoint_that_does_not_fit_writes_nothing(tmp_path):
    official_file(tmp_path / 'five.ckpt', 'kitti_models/second.yaml', LAYOUTS[1], input_channels=5)
    out = tmp_path / 'pretrained_backbone.pth'
    with pytest.raises(SystemExit, match=r"does not fill 1 backbone weights of the detector: \['backbone_3d.conv_input"
                                         r".0.weight \(the file has \(16, 3, 3, 3, 5\), the detector needs"):
        export_main(['--ckpt', str(tmp_path / 'five.ckpt'), '--detector_cfg', str(KITTI_SECOND), '--out', str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['five.ckpt']
