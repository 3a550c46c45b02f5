"""DATA_CONFIG.SOURCES: one target detector's backbone pretrained on synthetic KITTI + Waymo + nuScenes sweeps.
Frames, per OpenPCDet / the datasets: KITTI's lidar frame has the ground 1.73 m below the sensor (the HDL-64's
mounting height), nuScenes' LIDAR_TOP frame 1.84 m below it, Waymo's vehicle frame at z ~ 0; readers give
KITTI reflectance as stored (0-1), nuScenes 0-255 / 255, Waymo tanh(raw); OpenPCDet feeds nuScenes detectors
0-255."""
import argparse

import numpy as np
import pytest
import torch
import yaml

from also_pcdet.config import ConfigError, config_from_args
from also_pcdet.config_checks import check_config
from also_pcdet.datasets import build_dataloader
from also_pcdet.datasets.beam_drop import beam_drop_mask
from also_pcdet.datasets.multi_source import MultiSourceDataset
from also_pcdet.datasets.ray_origins import RayOrigins
from also_pcdet.datasets.readers.waymo import WAYMO_LIDAR_ORIGINS
from also_pcdet.datasets.sweep_dataset import SweepDataset
from also_pcdet.datasets.source_sampler import WeightedSourceSampler, quotas
from also_pcdet.datasets.synthetic.layout_writers import write_nuscenes, write_waymo_processed_sweeps
from also_pcdet.datasets.synthetic.lidar import HDL64
from also_pcdet.detector_config import load_detector_cfg
from also_pcdet.engine.batch import collate_for
from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.evaluation import evaluate, format_metrics
from also_pcdet.engine.pretrained_check import check_pretrained
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network
from conftest import REPO, tiny_cfg
from test_evaluation import RecordingWriter
from train_cli import FAST_OVERRIDES, same_tensors, scalars

KITTI_GROUND, NUSCENES_GROUND = -1.73, -1.84
WAYMO_SHIFT = [-1.43, 0.0, KITTI_GROUND]       # TOP lidar over the origin, ground at KITTI's
NUSCENES_SHIFT = [0.0, 0.0, KITTI_GROUND - NUSCENES_GROUND]


@pytest.fixture(scope='module')
def roots(synthetic_kitti, tmp_path_factory):
    waymo, nuscenes = tmp_path_factory.mktemp('waymo'), tmp_path_factory.mktemp('nuscenes')
    write_waymo_processed_sweeps(waymo, 4, seed=1)   # 2 segments of 2 frames: one train, one val
    write_nuscenes(nuscenes, 12, seed=2)             # one train scene: 2 key frames, 10 sweeps
    return {'kitti': synthetic_kitti, 'waymo': waymo, 'nuscenes': nuscenes}


def sources(roots, kitti_weight=2.0):
    return [
        {'_BASE_CONFIG_': 'cfgs/dataset_configs/kitti_object_sweeps.yaml', 'NAME': 'kitti',
         'DATA_PATH': str(roots['kitti']), 'WEIGHT': kitti_weight},
        {'_BASE_CONFIG_': 'cfgs/dataset_configs/waymo_processed_sweeps.yaml', 'NAME': 'waymo',
         'DATA_PATH': str(roots['waymo']), 'SAMPLE_INTERVAL': {'train': 1, 'test': 1}, 'SHIFT_COOR': WAYMO_SHIFT},
        {'_BASE_CONFIG_': 'cfgs/dataset_configs/nuscenes_sweeps.yaml', 'NAME': 'nuscenes',
         'DATA_PATH': str(roots['nuscenes']), 'INCLUDE_SWEEPS': True, 'DATA_SPLIT': {'train': 'train', 'test': 'train'},
         'SHIFT_COOR': NUSCENES_SHIFT},
    ]


def multi_cfg(roots, **data):
    cfg = tiny_cfg(roots['kitti'], *FAST_OVERRIDES[-4:])
    cfg.DATA_CONFIG.SOURCES = sources(roots)
    cfg.DATA_CONFIG.update(data)
    return cfg


def ground_sweep(z, features: int, intensity=0.5):
    """A flat ground grid at height z in front of the sensor: (N, features) float32, intensity column 3."""
    x, y = np.meshgrid(np.arange(1.0, 12.0, 0.2), np.arange(-6.0, 6.0, 0.2))
    points = np.zeros((x.size, features), np.float32)
    points[:, 0], points[:, 1], points[:, 2], points[:, 3] = x.ravel(), y.ravel(), z, intensity
    return points


def test_multi_source_shift_coor_puts_every_ground_plane_on_the_targets(roots):
    dataset = MultiSourceDataset(multi_cfg(roots).DATA_CONFIG, training=True, seed=0)
    kitti, waymo, nuscenes = dataset.sources
    table = np.array([WAYMO_LIDAR_ORIGINS[name] for name in WAYMO_LIDAR_ORIGINS])
    sweeps = {
        kitti: (ground_sweep(KITTI_GROUND, 4), np.zeros(3)),
        waymo: (ground_sweep(0.0, 5), RayOrigins(table, np.zeros(3300, np.int64), tuple(WAYMO_LIDAR_ORIGINS))),
        nuscenes: (ground_sweep(NUSCENES_GROUND, 5), np.zeros(3)),
    }
    for source, (points, origin) in sweeps.items():
        sample = source.prepare(points, origin, 'hand-made', 0)
        np.testing.assert_allclose(sample['points'][:, 2], KITTI_GROUND, atol=1e-6, err_msg=source.name)
        below = sample['sensor_origin'][2] - KITTI_GROUND
        assert below == pytest.approx({'kitti': 1.73, 'waymo': WAYMO_LIDAR_ORIGINS['TOP'][2],
                                       'nuscenes': 1.84}[source.name], abs=1e-5)
    assert sample['queries'].shape[0] > 0
    points, origin = sweeps[waymo]
    assert points[:, 2].max() == 0.0 and origin.table[0, 2] == WAYMO_LIDAR_ORIGINS['TOP'][2]  # inputs untouched


def write_handmade(tmp_path):
    """One hand-made sweep per layout, its stored intensities known: KITTI reflectance 0 / 0.2 / 1, nuScenes
    0 / 51 / 255."""
    kitti, nusc = tmp_path / 'kitti', tmp_path / 'nuscenes'
    (kitti / 'ImageSets').mkdir(parents=True)
    (kitti / 'training' / 'velodyne').mkdir(parents=True)
    (kitti / 'ImageSets' / 'train.txt').write_text('000000\n')
    points = ground_sweep(KITTI_GROUND, 4)
    points[:, 3] = np.resize([0.0, 0.2, 1.0], len(points))
    points.tofile(kitti / 'training' / 'velodyne' / '000000.bin')
    (nusc / 'samples' / 'LIDAR_TOP').mkdir(parents=True)
    points = ground_sweep(NUSCENES_GROUND, 5)
    points[:, 3] = np.resize([0.0, 51.0, 255.0], len(points))
    points[:, 4] = np.resize(np.arange(32.0), len(points))  # ring
    points.tofile(nusc / 'samples' / 'LIDAR_TOP' / 'a.pcd.bin')
    (nusc / 'list.txt').write_text('samples/LIDAR_TOP/a.pcd.bin\n')
    return [{'_BASE_CONFIG_': 'cfgs/dataset_configs/kitti_object_sweeps.yaml', 'NAME': 'kitti',
             'DATA_PATH': str(kitti)},
            {'_BASE_CONFIG_': 'cfgs/dataset_configs/nuscenes_sweeps.yaml', 'NAME': 'nuscenes', 'DATA_PATH': str(nusc),
             'DATA_SPLIT': {'train': 'list.txt', 'test': 'list.txt'}, 'SHIFT_COOR': NUSCENES_SHIFT}]


@pytest.mark.parametrize('target', ['kitti', 'nuscenes'])
def test_multi_source_intensity_reaches_the_targets_scale(tmp_path, roots, target):
    cfg = tiny_cfg(roots['kitti'], *FAST_OVERRIDES[-4:])
    if target == 'nuscenes':  # a nuScenes detector: intensity 0-255 and a timestamp, which KITTI lacks (0)
        cfg.DATA_CONFIG.DATASET = 'NuScenesSweeps'
        cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list = ['x', 'y', 'z', 'intensity', 'timestamp']
        cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.src_feature_list = ['x', 'y', 'z', 'intensity', 'timestamp']
    cfg.DATA_CONFIG.SOURCES = write_handmade(tmp_path)
    dataset = MultiSourceDataset(cfg.DATA_CONFIG, training=True, seed=0)
    scale = dataset.stock_input_scale[3]   # the export multiplies the trained intensity by it
    assert scale == {'kitti': 1.0, 'nuscenes': 255.0}[target]
    stored = {'kitti': [0.0, 0.2, 1.0], 'nuscenes': [0.0, 51.0, 255.0]}  # the same three returns, each layout's way
    for i, source in enumerate(dataset.sources):
        fed = np.unique(dataset[i]['points'][:, 3]) * scale           # what the target detector sees
        np.testing.assert_allclose(fed, stored[target], rtol=1e-6, err_msg=f'{source.name} -> {target}')
        assert np.all(dataset[i]['points'][:, 4] == 0) if target == 'nuscenes' else dataset[i]['points'].shape[1] == 4


def test_multi_source_waymo_intensity_is_tanh_of_the_raw(roots):
    dataset = MultiSourceDataset(multi_cfg(roots).DATA_CONFIG, training=True, seed=0)
    waymo = dataset.sources[1]
    raw = np.load(waymo.source.path(waymo.sample_ids[0]))[:, 3]
    fed = waymo[0]['points'][:, 3]
    assert np.isin(fed, np.tanh(raw)).all() and fed.max() <= 1.0


def test_multi_source_sampler_draws_by_weight_splits_ranks_and_resumes():
    lengths, weights = [8, 2, 12], [2.0, 1.0, 1.0]
    assert quotas(22, weights) == [11, 6, 5] and quotas(7, [1, 1, 1]) == [3, 2, 2]
    sampler = WeightedSourceSampler(lengths, weights, seed=5)
    order = list(sampler)
    assert [sum(sampler.source_of(i) == s for i in order) for s in range(3)] == [11, 6, 5]
    kitti = np.bincount([i for i in order if i < 8], minlength=8)
    assert kitti.min() == 1 and kitti.max() == 2     # 11 draws of 8 sweeps: each once, 3 of them twice
    assert list(WeightedSourceSampler(lengths, weights, seed=5)) == order
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(1, start=4)
    assert list(sampler) == sampler.epoch_order(1)[4:] and len(sampler) == 22 - 4
    assert sampler.drawn_per_source(2) == [22, 12, 10]

    # two ranks (as with two gloo processes): the sources' sweeps split without overlap
    ranks = [WeightedSourceSampler(lengths, lengths, seed=5, rank=r, world_size=2) for r in (0, 1)]
    shares = [list(r) for r in ranks]
    assert len(shares[0]) == len(shares[1]) == 11
    assert not set(shares[0]) & set(shares[1]) and set(shares[0]) | set(shares[1]) == set(range(22))
    full = ranks[0].epoch_order(0)
    assert shares[0] == full[0::2] and shares[1] == full[1::2]
    ranks[1].set_epoch(0, start=3)
    assert list(ranks[1]) == shares[1][3:]


def draw_on_rank(rank, data_cfg, init_file, out):
    """One of two gloo processes: the sweeps its multi-source loader draws in epoch 0, gathered on rank 0."""
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    dataset, loader = build_dataloader(data_cfg, 2, 0, training=True, seed=5, rank=torch.distributed.get_rank(),
                                       world_size=torch.distributed.get_world_size())
    drawn = [dataset.location(index) for index in loader.sampler]
    names = [name for batch in loader for name in batch['source_name']]
    gathered = [None, None]
    torch.distributed.all_gather_object(gathered, (drawn, names))
    if rank == 0:
        out.write_text(yaml.safe_dump(gathered))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_multi_source_two_gloo_ranks_split_the_sources_without_overlap(roots, tmp_path):
    """Weights equal to the sources' sizes: one epoch draws every sweep once, half on each of two gloo ranks."""
    cfg = multi_cfg(roots)
    for entry, size in zip(cfg.DATA_CONFIG.SOURCES, (8, 2, 12)):
        entry['WEIGHT'] = size
    out = tmp_path / 'drawn.yaml'
    torch.multiprocessing.spawn(draw_on_rank, args=(cfg.DATA_CONFIG, tmp_path / 'rendezvous', out), nprocs=2)
    (first, first_names), (second, second_names) = yaml.safe_load(out.read_text())
    assert len(first) == len(second) == 11 and not set(first) & set(second)
    assert len(set(first) | set(second)) == 22
    for drawn, names in ((first, first_names), (second, second_names)):
        assert len(names) == 11 and sorted(names) == sorted(
            'waymo' if 'waymo' in path else 'nuscenes' if 'LIDAR_TOP' in path else 'kitti' for path in drawn)

def test_multi_source_loader_batches_name_their_sources(roots):
    dataset, loader = build_dataloader(multi_cfg(roots, SWEEPS_PER_EPOCH=4).DATA_CONFIG, 2, 0, training=True, seed=1)
    assert dataset.source_names == ['kitti', 'waymo', 'nuscenes'] and dataset.lengths == [8, 2, 12]
    assert quotas(4, dataset.weights) == [2, 1, 1] and len(loader) == 2
    names = [name for batch in loader for name in batch['source_name']]
    assert sorted(names) == ['kitti', 'kitti', 'nuscenes', 'waymo']
    assert dataset.location(9).endswith('waymo_processed_data_v0_5_0/segment-0000_with_camera_labels/0001.npy')


def test_multi_source_refuses_a_source_lacking_a_feature_naming_both(roots, tmp_path):
    cfg = multi_cfg(roots)
    check_config(cfg)
    waymo_target = cfg.DATA_CONFIG.SOURCES[1]
    cfg.DATA_CONFIG.update(DATASET='WaymoProcessedSweeps', DATA_SPLIT={'train': 'train', 'test': 'val'})
    cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.used_feature_list = ['x', 'y', 'z', 'intensity', 'elongation']
    cfg.DATA_CONFIG.POINT_FEATURE_ENCODING.src_feature_list = ['x', 'y', 'z', 'intensity', 'elongation']
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 2                             # waymo itself has elongation
    assert 'SOURCES[0] kitti (KittiObjectSweeps' in lines[0] and "lacks ['elongation']" in lines[0]
    assert 'target WaymoProcessedSweeps' in lines[0] and 'SOURCES[2] nuscenes (NuScenesSweeps' in lines[1]
    cfg.DATA_CONFIG.SOURCES = [waymo_target]
    check_config(cfg)

    lyft = multi_cfg(roots)
    lyft.DATA_CONFIG.SOURCES.append({'_BASE_CONFIG_': 'cfgs/dataset_configs/lyft_sweeps.yaml',
                                     'DATA_PATH': str(tmp_path)})
    with pytest.raises(ConfigError, match=r"SOURCES\[3\] LyftSweeps .*lacks \['intensity \(its files hold a "
                                          r"constant\)'\], which the target KittiObjectSweeps"):
        check_config(lyft)


def test_multi_source_bad_entries_are_named(roots):
    cfg = multi_cfg(roots)
    cfg.DATA_CONFIG.SOURCES[1]['VOXEL_SIZE'] = [0.1, 0.1, 0.1]
    with pytest.raises(ConfigError, match=r"SOURCES\[1\]: VOXEL_SIZE cannot be set per source"):
        check_config(cfg)
    cfg = multi_cfg(roots)
    cfg.DATA_CONFIG.SOURCES[2].update(WEIGHT=0.0, SHIFT_COOR=[0, 1], LIDAR_ORIGIN=[0, 0, 0])
    cfg.DATA_CONFIG.SOURCES[0]['NAME'] = 'nuscenes'
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    message = str(err.value)
    assert 'unknown key DATA_CONFIG.SOURCES[2].LIDAR_ORIGIN' in message
    assert 'DATA_CONFIG.SOURCES[2].SHIFT_COOR: expected a list of 3 numbers' in message
    cfg.DATA_CONFIG.SOURCES[2].pop('LIDAR_ORIGIN')
    cfg.DATA_CONFIG.SOURCES[2]['SHIFT_COOR'] = [0, 0, 0]
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert 'SOURCES[2].WEIGHT must be a positive number' in str(err.value)
    assert "SOURCES[0, 2]: the same NAME 'nuscenes'" in str(err.value)


@pytest.mark.slow
def test_multi_source_run_trains_resumes_mid_epoch_and_exports(roots, tmp_path, one_thread):
    """tools/train.py in-process: 2 epochs of 6 sweeps (3 steps of 2), `latest_model.pth` after step 4 (one batch
    into epoch 2); a run resumed from it ends bit-identical; the export loads into KITTI's SECOND."""
    from tools import train
    cfg_file = tmp_path / 'multi.yaml'
    cfg_file.write_text(yaml.safe_dump({'_BASE_CONFIG_': str(REPO / 'cfgs' / 'also_pretrain.yaml'),
                                        'DATA_CONFIG': {'SOURCES': sources(roots), 'SWEEPS_PER_EPOCH': 6}}))
    sets = FAST_OVERRIDES + ['DATA_CONFIG.DATA_PATH', str(roots['kitti']), 'OPTIMIZATION.CKPT_SAVE_ITERS', '4']

    def run(out, *flags):
        return train.main(['--cfg_file', str(cfg_file), '--workers', '0', '--output_root', str(out), '--batch_size',
                           '2', '--epochs', '2', '--fix_random_seed', *flags, '--set', *sets])

    out = run(tmp_path / 'a')
    ckpt = out / 'ckpt'
    final, latest = load_checkpoint(ckpt / 'checkpoint_epoch_2.pth'), load_checkpoint(ckpt / 'latest_model.pth')
    assert (final['it'], latest['it'], latest['epoch'], latest['batch_in_epoch']) == (6, 4, 1, 1)
    log = next(out.glob('train_*.log')).read_text()
    assert '22 train sweeps from 3 sources: kitti 8' in log
    drawn = quotas(6, [2.0, 1.0, 1.0])
    assert (f'epoch 2 sources: kitti {2 * drawn[0]} sweeps drawn in all (0 skipped this epoch), waymo '
            f'{2 * drawn[1]} sweeps drawn in all') in log
    tb = scalars(out / 'tensorboard')
    assert tb['data/sweeps_drawn/nuscenes'] == [(3, drawn[2]), (6, 2 * drawn[2])]
    report = check_pretrained(ckpt / 'pretrained_backbone.pth', load_detector_cfg(REPO / 'cfgs' / 'detector_cfgs' /
                                                                                  'kitti_second.yaml'))
    assert report.ok and report.loaded >= report.backbone > 0

    resumed = run(tmp_path / 'b', '--ckpt', str(ckpt / 'latest_model.pth'))
    again = load_checkpoint(resumed / 'ckpt' / 'checkpoint_epoch_2.pth')
    assert again['it'] == 6 and same_tensors(again['model_state'], final['model_state'])


def test_multi_source_scan_dataset_scans_every_source_shifted(roots, tmp_path, capsys):
    from tools import scan_dataset
    cfg_file = tmp_path / 'multi.yaml'
    cfg_file.write_text(yaml.safe_dump({'_BASE_CONFIG_': str(REPO / 'cfgs' / 'also_pretrain_multi.yaml'),
                                        'DATA_CONFIG': {'SOURCES': sources(roots)}}))
    assert scan_dataset.main(['--cfg_file', str(cfg_file), '--set', *FAST_OVERRIDES[-4:]]) == 0
    out = capsys.readouterr().out
    assert out.count('source ') == 3 and f'source waymo (SHIFT_COOR {WAYMO_SHIFT}):' in out
    assert 'KittiObjectSweeps train (train)' in out and ', 8 usable' in out
    assert 'WaymoProcessedSweeps train (train)' in out and ', 2 usable' in out
    assert 'NuScenesSweeps train (train)' in out and ', 12 usable' in out
    assert out.count('bad sweeps: 0 ') == 3


def write_sources_yaml(roots, path):
    """A --data_cfg file adding the three synthetic sources (nuScenes validated on every 4th of its 12 sweeps)."""
    entries = sources(roots)
    entries[2]['SAMPLE_INTERVAL'] = {'train': 1, 'test': 4}
    path.write_text(yaml.safe_dump({'SOURCES': entries, 'SWEEPS_PER_EPOCH': 4}))
    return path


def test_multi_source_data_cfg_adds_sources_to_a_single_source_config(roots, tmp_path):
    """cfgs/also_pretrain.yaml has no SOURCES (so `--set DATA_CONFIG.SOURCES` is refused); --data_cfg merges them
    in, before --detector_cfg (which keeps them) and --set (which then reaches the keys it added)."""
    data_cfg = write_sources_yaml(roots, tmp_path / 'sources.yaml')
    base = dict(cfg_file=str(REPO / 'cfgs' / 'also_pretrain.yaml'), detector_cfg=None, data_cfg=None,
                set_cfgs=['DATA_CONFIG.DATA_PATH', str(roots['kitti'])])
    with pytest.raises(ConfigError, match='unknown key DATA_CONFIG.SOURCES'):
        config_from_args(argparse.Namespace(**dict(base, set_cfgs=['DATA_CONFIG.SOURCES', '[]'])))
    cfg = config_from_args(argparse.Namespace(**dict(
        base, data_cfg=[str(data_cfg)], detector_cfg=str(REPO / 'cfgs' / 'detector_cfgs' / 'kitti_second.yaml'),
        set_cfgs=base['set_cfgs'] + ['DATA_CONFIG.SWEEPS_PER_EPOCH', '6'])))
    assert [entry['NAME'] for entry in cfg.DATA_CONFIG.SOURCES] == ['kitti', 'waymo', 'nuscenes']
    assert cfg.DATA_CONFIG.SWEEPS_PER_EPOCH == 6 and cfg.DERIVED_FROM.endswith('kitti_second.yaml')
    assert cfg.DATA_CONFIG.POINT_CLOUD_RANGE == [0, -40, -3, 70.4, 40, 1]  # the detector's, not the file's
    check_config(cfg)
    wrapped = tmp_path / 'wrapped.yaml'
    wrapped.write_text(yaml.safe_dump({'DATA_CONFIG': {'SOURCES': sources(roots)}}))
    with pytest.raises(ConfigError, match=f'{wrapped}: a --data_cfg file holds DATA_CONFIG keys at its top level'):
        config_from_args(argparse.Namespace(**dict(base, data_cfg=[str(wrapped)])))


@pytest.mark.slow
def test_multi_source_validation_reports_each_source_as_if_alone(roots, tmp_path, one_thread, capsys):
    """Validation of all sources' val sweeps: each source's metrics are those of a validation on that source alone
    (in eval mode a sweep's pairs do not depend on the other sweeps of its batch), the overall ones pool them; the
    trainer logs them to tensorboard as val/<source>/<metric>, tools/evaluate.py prints a column per source."""
    from tools import evaluate as evaluate_tool
    data_cfg = write_sources_yaml(roots, tmp_path / 'sources.yaml')
    sets = FAST_OVERRIDES + ['DATA_CONFIG.DATA_PATH', str(roots['kitti'])]
    args = ['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'), '--data_cfg', str(data_cfg)]
    cfg = config_from_args(argparse.Namespace(cfg_file=args[1], detector_cfg=None, data_cfg=[args[3]], set_cfgs=sets))
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, 2, 0, training=False)
    assert dataset.lengths == [1, 2, 3]   # KITTI's test SAMPLE_INTERVAL is 2
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, dataset)
    writer = RecordingWriter()
    trainer = Trainer(model, torch.optim.AdamW(model.parameters()), loader, cfg.OPTIMIZATION, ckpt_dir=tmp_path,
                      device=torch.device('cpu'), tb_writer=writer, val_loader=loader, eval_interval=1)
    metrics = trainer.validate()
    assert writer.scalars == {f'val/{key}': value for key, value in metrics.items()}
    assert 'val/waymo/occ_miou' in writer.scalars and 'val/occ_miou' in writer.scalars
    for position, name in enumerate(dataset.source_names):   # the same samples, one source, one sweep a batch
        alone = torch.utils.data.Subset(dataset, range(dataset.offsets[position],
                                                       dataset.offsets[position] + dataset.lengths[position]))
        expected = evaluate(model, collate_for(torch.utils.data.DataLoader(alone, batch_size=1), model),
                            torch.device('cpu'))
        assert expected['sweeps'] == dataset.lengths[position] and expected['pairs'] > 0
        for key in ('occ_iou_occupied', 'occ_iou_empty', 'occ_miou', 'occ_acc', 'occ_precision', 'occ_recall',
                    'intensity_l1', 'pairs', 'sweeps'):
            assert metrics[f'{name}/{key}'] == pytest.approx(expected[key], rel=1e-5), (name, key)
        assert f'{name}/loss' not in metrics
    for key in ('pairs', 'sweeps'):
        assert metrics[key] == sum(metrics[f'{name}/{key}'] for name in dataset.source_names)
    assert 0 < metrics['occ_acc'] < 1

    ckpt = tmp_path / 'ckpt.pth'
    trainer.save(ckpt)
    capsys.readouterr()
    printed = evaluate_tool.main(args + ['--ckpt', str(ckpt), '--workers', '0', '--batch_size', '2', '--set', *sets])
    assert printed == pytest.approx(metrics, rel=1e-6)
    out = capsys.readouterr().out.splitlines()
    assert '6 test sweeps from 3 sources: kitti 1' in out[0]
    assert out[1].split() == ['all', 'kitti', 'waymo', 'nuscenes'] and out[1:] == format_metrics(metrics).splitlines()
    assert next(line for line in out if line.startswith('loss')).split()[2:] == ['-', '-', '-']


def hdl64_beams(xyz, origin=(0.0, 0.0, 0.0)):
    """Each point's beam of the synthetic HDL-64 (0 = lowest), from its elevation seen from `origin`."""
    delta = xyz[:, :3] - np.asarray(origin)
    elevation = np.degrees(np.arctan2(delta[:, 2], np.hypot(delta[:, 0], delta[:, 1])))
    lowest_first = np.sort(HDL64.inclinations_deg)
    beam = np.abs(elevation[:, None] - lowest_first[None]).argmin(1)
    assert np.abs(elevation - lowest_first[beam]).max() < 0.01   # on one of the 64 beams
    return beam


def test_multi_source_beam_drop_keeps_the_asked_rings_of_an_hdl64_sweep(synthetic_kitti):
    points = np.fromfile(synthetic_kitti / 'training' / 'velodyne' / '000000.bin', np.float32).reshape(-1, 4)
    beam = hdl64_beams(points)
    assert len(np.unique(beam)) == 64
    origin = np.zeros((1, 3))
    half = beam_drop_mask(points, origin, None, {'KEEP_EVERY': 2})
    np.testing.assert_array_equal(half, beam % 2 == 0)             # whole rings: 0, 2, ..., 62
    fourth = beam_drop_mask(points, origin, None, {'BEAMS': 16})
    kept = np.unique(beam[fourth])
    assert len(kept) == 16 and kept[0] == 0 and kept[-1] == 63 and np.isin(beam, kept).sum() == fourth.sum()
    assert beam_drop_mask(points, origin, None, {'BEAMS': 100}).all()

    # two lidars: rings are counted per ray origin (a second copy seen from 1 m higher, 2 m to the left)
    moved = points.copy()
    moved[:, :3] += np.float32([0.0, 2.0, 1.0])
    table = np.array([[0.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    both = beam_drop_mask(np.concatenate([points, moved]), table, np.repeat([0, 1], len(points)), {'KEEP_EVERY': 2})
    np.testing.assert_array_equal(both, np.concatenate([half, half]))


def test_multi_source_beam_drop_runs_before_the_queries(synthetic_kitti):
    """With BEAM_DROP the network input and every query's hit come from kept rings only; without, from all."""
    cfg = tiny_cfg(synthetic_kitti, *FAST_OVERRIDES[-4:])
    plain = SweepDataset(cfg.DATA_CONFIG, training=False)[0]
    cfg.DATA_CONFIG.BEAM_DROP = {'KEEP_EVERY': 2}
    check_config(cfg)
    thinned = SweepDataset(cfg.DATA_CONFIG, training=False)[0]
    for sample, odd in ((plain, True), (thinned, False)):
        for xyz in (sample['points'], sample['query_hits']):
            assert (hdl64_beams(xyz, sample['sensor_origin']) % 2 == 1).any() == odd
    assert len(thinned['points']) < 0.7 * len(plain['points'])


def test_multi_source_bad_beam_drop_is_named(roots):
    cfg = multi_cfg(roots)
    cfg.DATA_CONFIG.BEAM_DROP = {'KEEP_EVERY': 2, 'BEAMS': 32}
    with pytest.raises(ConfigError, match=r"DATA_CONFIG.BEAM_DROP: set exactly one of KEEP_EVERY .* got "
                                          r"\['KEEP_EVERY', 'BEAMS'\]"):
        check_config(cfg)
    cfg = multi_cfg(roots)
    cfg.DATA_CONFIG.SOURCES[1]['BEAM_DROP'] = {'BEAMS': 0, 'RING_GAP_DEG': 0.0}
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert 'SOURCES[1].BEAM_DROP.BEAMS must be at least 1, got 0' in str(err.value)
    assert 'SOURCES[1].BEAM_DROP.RING_GAP_DEG must be above 0' in str(err.value)
