"""OpenPCDet's tools/train.py command line works here: --batch_size is the total over all processes (a resume with
another total says where the epoch goes on), --use_amp and OPTIMIZATION.USE_AMP, --logger_iter_interval,
--ckpt_save_time_interval, and every other flag parses."""
import logging
import re
import shutil
import subprocess
from types import SimpleNamespace

import pytest
import torch

from also_pcdet.datasets import build_dataloader
from also_pcdet.datasets.sampler import ResumableSampler
from also_pcdet.engine import trainer as trainer_module
from also_pcdet.engine.checkpoint import load_checkpoint
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network
from conftest import REPO
from tools import train
from train_cli import FAST_OVERRIDES, cli_env, run_dir, scalars, train_args

# open-mmlab/OpenPCDet tools/train.py parse_config() (master): every flag and a value for it (None: a switch)
OPENPCDET_TRAIN_FLAGS = {
    '--batch_size': '8', '--epochs': '2', '--workers': '0', '--extra_tag': 'tag', '--ckpt': 'a.pth',
    '--pretrained_model': 'b.pth', '--launcher': 'none', '--tcp_port': '18889', '--sync_bn': None,
    '--fix_random_seed': None, '--ckpt_save_interval': '2', '--local_rank': '3', '--max_ckpt_save_num': '5',
    '--merge_all_iters_to_one_epoch': None, '--max_waiting_mins': '1', '--start_epoch': '1',
    '--num_epochs_to_eval': '1', '--save_to_file': None, '--use_tqdm_to_record': None,
    '--logger_iter_interval': '7', '--ckpt_save_time_interval': '60', '--wo_gpu_stat': None, '--use_amp': None,
}
CFG = str(REPO / 'cfgs' / 'also_pretrain.yaml')
SMALL_BOX = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-3.2,-3,6.4,3.2,1]']  # ~5k voxels a sweep


def test_openpcdet_flags_every_train_py_flag_parses(synthetic_kitti, monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', 'unset below')
    monkeypatch.delenv('LOCAL_RANK')
    argv = ['--cfg_file', CFG]
    for flag, value in OPENPCDET_TRAIN_FLAGS.items():
        argv += [flag] if value is None else [flag, value]
    args, cfg, _ = train.parse_args(argv + ['--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti),
                                            'OPTIMIZATION.LOG_INTERVAL', '3'])
    for flag, value in OPENPCDET_TRAIN_FLAGS.items():
        parsed = getattr(args, flag[2:])
        assert parsed == (True if value is None else type(parsed)(value)), flag
    assert cfg.OPTIMIZATION.LOG_INTERVAL == 7                     # the flag over the config's value
    assert train.os.environ['LOCAL_RANK'] == '3'                   # torch.distributed.launch without --use_env
    assert set(train.IGNORED_FLAGS) == {'max_waiting_mins', 'start_epoch', 'num_epochs_to_eval', 'save_to_file',
                                        'wo_gpu_stat', 'merge_all_iters_to_one_epoch'}


def test_openpcdet_flags_use_amp_acts_on_cuda_and_is_refused_on_the_cpu(synthetic_kitti, tmp_path, monkeypatch):
    """--use_amp, its alias --amp and OPTIMIZATION.USE_AMP turn float16 autocast on: on CUDA the run trains with a
    GradScaler (its state is saved with the checkpoint); on the CPU it is refused, naming the flag."""
    monkeypatch.chdir(REPO)
    base = ['--cfg_file', CFG, '--workers', '0', '--output_root', str(tmp_path), '--epochs', '1', '--batch_size', '4']
    sets = ['--set', *FAST_OVERRIDES, *SMALL_BOX, 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)]
    variants = {'fp32': ([], []), 'use_amp': (['--use_amp'], []), 'amp': (['--amp'], []),
                'config': ([], ['OPTIMIZATION.USE_AMP', 'True'])}
    for tag, (flags, extra) in variants.items():
        argv = base + ['--extra_tag', tag] + flags + sets + extra
        assert train.parse_args(argv)[0].use_amp == (tag != 'fp32'), tag
        if torch.cuda.is_available():
            ckpt = load_checkpoint(train.main(argv) / 'ckpt' / 'checkpoint_epoch_1.pth')
            assert ('scaler_state' in ckpt) == (tag != 'fp32'), tag
        elif tag != 'fp32':
            with pytest.raises(ValueError, match=r'^--use_amp \(alias --amp; OPTIMIZATION.USE_AMP\) needs a CUDA '):
                train.main(argv)


def test_openpcdet_flags_total_batch_must_divide_among_the_processes(synthetic_kitti):
    cfg = train.parse_args(['--cfg_file', CFG, '--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)])[1]
    assert train.batch_per_process(16, 2, cfg) == 8 and train.batch_per_process(8, 1, cfg) == 8
    assert train.batch_per_process(None, 2, cfg) == cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU == 8  # per process
    for total, world in ((15, 2), (1, 2), (12, 8)):
        with pytest.raises(ValueError, match=rf'^--batch_size {total} is the total over all processes .* among the '
                                             rf'{world} processes: pass a multiple of {world}$'):
            train.batch_per_process(total, world, cfg)


@pytest.mark.slow
def test_openpcdet_flags_logger_iter_interval_and_ckpt_save_time_interval_act(synthetic_kitti, tmp_path,
                                                                             monkeypatch):
    """4 iterations (every 2nd train sweep), each 10 s on the trainer's clock: logged every 2nd; a latest_model save
    once 25 s have passed since the epoch start or the last save (iteration 3); OPTIMIZATION.CKPT_SAVE_ITERS off."""
    monkeypatch.chdir(REPO)
    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr(trainer_module, 'time', SimpleNamespace(monotonic=lambda: next(ticks)))
    out = train.main(['--cfg_file', CFG, '--workers', '0', '--output_root', str(tmp_path), '--batch_size', '1',
                      '--epochs', '1', '--fix_random_seed', '--logger_iter_interval', '2',
                      '--ckpt_save_time_interval', '25', '--wo_gpu_stat', '--start_epoch', '3',
                      '--set', *FAST_OVERRIDES, *SMALL_BOX, 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti),
                      'DATA_CONFIG.SAMPLE_INTERVAL.train', '2', 'OPTIMIZATION.CKPT_SAVE_ITERS', '0',
                      'OPTIMIZATION.LOG_INTERVAL', '1'])
    log = next(out.glob('train_*.log')).read_text()
    assert re.findall(r'INFO  it (\d+): .* \(means over 2 steps\)', log) == ['2', '4']
    assert [step for step, _ in scalars(out / 'tensorboard')['train/loss']] == [2, 4]
    assert re.findall(r'saved \S+/latest_model\.pth \(epoch 0, iteration (\d+)\)', log) == ['3']
    assert load_checkpoint(out / 'ckpt' / 'latest_model.pth')['it'] == 3
    for flag in ('--wo_gpu_stat', '--start_epoch'):
        assert log.count(f'WARNING  {flag} (OpenPCDet) has no effect here: ') == 1
    assert 'merge_all_iters_to_one_epoch (OpenPCDet)' not in log                  # only the flags given


@pytest.fixture
def eighteen_train_sweeps(synthetic_kitti, tmp_path):
    """The 8 synthetic train sweeps listed as 18 (each of the first two three times): 9 per process of 2."""
    root = tmp_path / 'kitti'
    shutil.copytree(synthetic_kitti, root)
    train_ids = (root / 'ImageSets' / 'train.txt').read_text().split()
    (root / 'ImageSets' / 'train.txt').write_text('\n'.join(train_ids * 2 + train_ids[:2]) + '\n')
    return root


@pytest.mark.slow
def test_openpcdet_flags_total_batch_16_on_two_processes_trains_8_each(eighteen_train_sweeps, tmp_path):
    def launch(total, out):
        args = train_args(eighteen_train_sweeps, out, '--batch_size', total, '--epochs', 1, '--fix_random_seed',
                          '--dump_final_state', tmp_path / 'dump', sets=SMALL_BOX)
        return subprocess.run(['bash', str(REPO / 'tools' / 'dist_train.sh'), '2', *args], cwd=REPO,
                              env=cli_env(), capture_output=True, text=True, timeout=300)

    refused = launch(15, tmp_path / 'refused')
    assert refused.returncode != 0
    assert ('--batch_size 15 is the total over all processes (as in OpenPCDet) and does not divide among the 2 '
            'processes') in refused.stderr

    proc = launch(16, tmp_path / 'out')
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = next(run_dir(tmp_path / 'out').glob('train_*.log')).read_text()
    assert 'processes: 2' in log and 'batch: 8 per process, total_batch_size 16' in log
    for rank in (0, 1):  # 9 sweeps each: a batch of 8, then of 1 (16 a process would be a single step)
        final = load_checkpoint(tmp_path / 'dump' / f'rank_{rank}.pth')
        assert final['it'] == 2 and final['world_size'] == 2 and final['total_batch_size'] == 16
        assert final['sweeps_read'] == 9


def test_openpcdet_flags_resume_with_another_total_batch_says_where_the_epoch_resumes(tiny_config, tmp_path, caplog):
    """A checkpoint 6 batches of 1 into an epoch (8 sweeps) has used the epoch order's first 6 samples; a run with
    another total batch, or world size, goes on from there (or from the batch boundary before it) and says so."""
    cpu, logger = torch.device('cpu'), logging.getLogger('openpcdet_flags_resume')

    def trainer(batch, rank=0, world_size=1):
        dataset, loader = build_dataloader(tiny_config.DATA_CONFIG, batch, 0, training=True, seed=5, rank=rank,
                                           world_size=world_size)
        model = build_network(tiny_config.MODEL, dataset)
        return Trainer(model, build_optimizer(model, tiny_config.OPTIMIZATION), loader, tiny_config.OPTIMIZATION,
                       ckpt_dir=tmp_path, device=cpu, logger=logger, rank=rank)

    first = trainer(1)
    first.it = first.batch_in_epoch = 6
    first.save(tmp_path / 'latest_model.pth')
    order = list(ResumableSampler(8, shuffle=True, seed=5))                     # the epoch's order, one process
    cases = [(1, 1, 6, None), (3, 1, 2, 'epoch 1 continues from its sample 6 (batch 2 of 3)'),
             (4, 1, 1, 'epoch 1 resumes at sample 4, the last batch boundary before sample 6: 2 samples are '
                       'trained on twice this epoch'),
             (2, 2, 1, 'this run trains with 4 (world size 2): epoch 1 resumes at sample 4')]
    for batch, world_size, resumed, message in cases:
        for rank in range(world_size):
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger.name):
                resuming = trainer(batch, rank, world_size)
                resuming.resume(tmp_path / 'latest_model.pth')
            assert resuming.batch_in_epoch == resumed and resuming.it == 6
            if message is None:
                assert not caplog.records
            else:
                assert caplog.records[0].message.startswith(f'{tmp_path / "latest_model.pth"} was written with a '
                                                            f'total batch of 1 (world size 1), this run trains with')
                assert message in caplog.text and 'learning-rate schedule that follows it, continue from 6' in caplog.text
            sampler = resuming.loader.sampler
            sampler.set_epoch(0, start=resumed * batch)
            assert list(sampler) == order[resumed * batch * world_size:][rank::world_size]
