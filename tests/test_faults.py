"""Faults a multi-day run meets: loader workers outliving a killed run, a resume into a folder of another model,
a nuScenes past sweep missing, a split changed after a MAX_BAD_FRACTION stop, listed data that gives no sweep,
damaged or special files, a YAML repeating a key, a full disk. Each names the file and the problem."""
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from also_pcdet.config import ConfigError, cfg_from_list, cfg_from_yaml_file
from also_pcdet.datasets import SweepDataset, build_dataloader
from also_pcdet.datasets.readers import SweepError
from also_pcdet.datasets.readers.waymo import read_waymo_info
from also_pcdet.datasets.sources import build_source
from also_pcdet.datasets.synthetic.layout_writers import (write_kitti360, write_nuscenes_infos, write_once,
                                                          write_waymo_processed_sweeps)
from also_pcdet.engine.checkpoint import CheckpointMismatch, UnreadableCheckpoint, load_checkpoint, save_atomic
from also_pcdet.engine.cli import Terminated, raise_terminated, run_main
from also_pcdet.engine.evaluation import load_trained
from also_pcdet.errors import RunError
from also_pcdet.models import build_network
from conftest import REPO, tiny_cfg
from tools import check_pretrained, evaluate, scan_dataset, train
from train_cli import FAST_OVERRIDES, cli_env, run_dir, run_train, train_args, train_command

SMALL_BOX = ['DATA_CONFIG.POINT_CLOUD_RANGE', '[0,-3.2,-3,6.4,3.2,1]']


def kitti_copy(synthetic_kitti, root, frames):
    shutil.copytree(synthetic_kitti, root)
    (root / 'ImageSets' / 'train.txt').write_text(''.join(f'{f:06d}\n' for f in frames))
    return root


def train_in_process(root, out_root, *flags, sets=()):
    """One small in-process run of tools/train.py on `root` (one batch of up to 4 sweeps an epoch)."""
    return train.main(['--cfg_file', 'cfgs/also_pretrain.yaml', '--workers', '0', '--batch_size', '4',
                       '--fix_random_seed', '--output_root', str(out_root), *map(str, flags), '--set',
                       *FAST_OVERRIDES, *SMALL_BOX, 'DATA_CONFIG.DATA_PATH', str(root), *map(str, sets)])


def exit_of(main, argv, capsys) -> tuple:
    """(exit status, stderr lines) of `run_main(main, argv)`, as the tool's command line ends."""
    with pytest.raises(SystemExit) as stop:
        run_main(main, argv)
    return stop.value.code, capsys.readouterr().err.strip().splitlines()


# ----- orphaned loader workers -----

def children(pid: int) -> list:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='reads /proc')
@pytest.mark.parametrize('signum', [signal.SIGKILL, signal.SIGTERM], ids=['SIGKILL', 'SIGTERM'])
def test_orphan_loader_workers_die_with_a_killed_training_run(synthetic_kitti, tmp_path, signum):
    args = train_args(synthetic_kitti, tmp_path, '--workers', 2, '--epochs', 1000, '--batch_size', 1)
    proc = subprocess.Popen(train_command(args), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while len(workers := children(proc.pid)) < 2:  # the loader forks its workers at its first batch
            assert proc.poll() is None, f'train.py exited {proc.returncode}: {proc.stderr.read()[-3000:]}'
            assert time.time() < deadline, 'no loader workers after 180 s'
            time.sleep(0.5)
        time.sleep(1)  # the workers fill the pipe to the main process
        proc.send_signal(signum)
        proc.wait(timeout=60)
        gone = time.time() + 5
        while any(alive(pid) for pid in workers) and time.time() < gone:  # all gone within 5 s
            time.sleep(0.1)
        assert [pid for pid in workers if alive(pid)] == []
        if signum == signal.SIGTERM:  # stopped like Ctrl-C: one line, no traceback
            err = proc.stderr.read()
            assert proc.returncode == 143 and 'train.py: stopped by SIGTERM' in err and 'Traceback' not in err, err
    finally:
        proc.kill()
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)


# ----- resume into a folder of another model; checkpoints that are none or do not fit -----

@pytest.mark.slow  # three small in-process training runs
def test_resume_mismatch_names_the_checkpoint_keys_and_ways_out(synthetic_kitti, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = kitti_copy(synthetic_kitti, tmp_path / 'kitti', (1, 3))
    out = train_in_process(root, tmp_path / 'out', '--epochs', 1)
    other = ['MODEL.BACKBONE_2D.NUM_FILTERS', '[64,256]']  # another BEV backbone (128 filters) into the same folder
    with pytest.raises(CheckpointMismatch) as err:
        train_in_process(root, tmp_path / 'out', '--epochs', 2, sets=other)
    message = str(err.value)
    assert message.startswith(f'cannot resume from {out / "ckpt" / "checkpoint_epoch_1.pth"}: it does not fit')
    assert re.search(r'keys of another shape \(e\.g\. backbone_2d\.blocks\.0\.1\.weight \(128, (\d+), 3, 3\) in '
                     r'the file, \(64, \1, 3, 3\) in the model', message), message
    assert '--fresh_start' in message and '--extra_tag' in message and '\n' not in message

    train_in_process(root, tmp_path / 'out', '--epochs', 1, '--fresh_start', sets=other)  # the old run goes aside
    assert load_checkpoint(out / 'ckpt' / 'not_fitting_1' / 'checkpoint_epoch_1.pth')['model_state'][
        'backbone_2d.blocks.0.1.weight'].shape[0] == 128
    assert load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_1.pth')['model_state'][
        'backbone_2d.blocks.0.1.weight'].shape[0] == 64


@pytest.mark.slow
def test_resume_mismatch_ends_train_py_with_one_line_unless_debug(synthetic_kitti, tmp_path):
    """The command line's end in a real process; the first run and the --debug one in this process (run_main)."""
    train.main(train_args(synthetic_kitti, tmp_path, '--epochs', 1, sets=['DATA_CONFIG.SAMPLE_INTERVAL.train', 4]))
    other = ['DATA_CONFIG.SAMPLE_INTERVAL.train', 4, 'MODEL.BACKBONE_2D.NUM_FILTERS', '[64,256]']
    proc = run_train(train_args(synthetic_kitti, tmp_path, '--epochs', 2, sets=other), check=False)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert last.startswith(f'train.py: error: cannot resume from {run_dir(tmp_path) / "ckpt"}')
    log = max(run_dir(tmp_path).glob('train_*.log'), key=lambda p: p.stat().st_mtime).read_text()
    assert 'Traceback' in log and 'CheckpointMismatch' in log  # the log file keeps the traceback
    with pytest.raises(CheckpointMismatch, match='^cannot resume from '):   # --debug: raised, so Python prints it
        run_main(train.main, train_args(synthetic_kitti, tmp_path, '--epochs', 2, '--debug', sets=other))


def test_resume_mismatch_and_non_checkpoints_in_every_reading_tool(synthetic_kitti, tmp_path, capsys, one_thread):
    cfg = tiny_cfg(synthetic_kitti)
    model = build_network(cfg.MODEL, SweepDataset(cfg.DATA_CONFIG, training=False))
    state = {key: value.clone() for key, value in model.state_dict().items()}
    state['backbone_2d.blocks.0.1.weight'] = torch.zeros(32, 64, 3, 3)
    other = save_atomic({'model_state': state, 'epoch': 1, 'it': 1}, tmp_path / 'other.pth')
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint\n')
    with pytest.raises(CheckpointMismatch, match=rf'^{other} does not fit the configured model: 1 keys of another '
                                                 rf'shape \(e\.g\. backbone_2d\.blocks\.0\.1\.weight \(32, 64, 3, 3\)'):
        load_trained(model, other)
    with pytest.raises(CheckpointMismatch, match='backbone'):  # tools/probe.py, det_probe.py
        load_trained(model, other, backbone_only=True)
    with pytest.raises(UnreadableCheckpoint, match=rf'^{text}: cannot load checkpoint \(not a torch file, or '
                                                   rf'damaged: UnpicklingError: '):
        load_trained(model, text)

    data = ['--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti), *FAST_OVERRIDES]
    for ckpt, problem in ((other, 'does not fit the configured model'), (text, 'cannot load checkpoint')):
        status, err = exit_of(evaluate.main, ['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml'), '--ckpt',
                                              str(ckpt), '--workers', '0', *data], capsys)
        assert status == 1 and len(err) == 1 and f'error: {ckpt}' in err[0] and problem in err[0], err
    status, err = exit_of(check_pretrained.main, ['--ckpt', str(text), '--detector_cfg',
                                                  str(REPO / 'cfgs' / 'also_pretrain.yaml')], capsys)
    assert status == 1 and err == [f'{Path(sys.argv[0]).name}: error: {text}: cannot load checkpoint (not a torch '
                                   f'file, or damaged: UnpicklingError: Unsupported operand 110)']


def test_resume_mismatch_of_pretrained_model_and_ckpt_flags(synthetic_kitti, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint\n')
    unrelated = save_atomic({'model_state': {'head.weight': torch.zeros(3)}}, tmp_path / 'unrelated.pth')
    root = kitti_copy(synthetic_kitti, tmp_path / 'kitti', (1,))
    for flag in ('--pretrained_model', '--ckpt'):
        with pytest.raises(UnreadableCheckpoint, match=rf'^{text}: cannot load checkpoint'):
            train_in_process(root, tmp_path / 'out', '--epochs', 1, flag, text)
    with pytest.raises(CheckpointMismatch, match=rf"^{unrelated}: none of its 1 tensors names a key of the model"):
        train_in_process(root, tmp_path / 'out', '--epochs', 1, '--pretrained_model', unrelated)
    with pytest.raises(CheckpointMismatch, match=rf'^cannot resume from {unrelated}: .*1 unexpected keys'):
        train_in_process(root, tmp_path / 'out', '--epochs', 1, '--ckpt', unrelated)
    assert not list((tmp_path / 'out').rglob('checkpoint_epoch_*.pth'))


# ----- nuScenes past sweeps -----

@pytest.fixture(scope='module')
def nuscenes_infos(tmp_path_factory):
    """Scene 0, frames 0-10: key frames 0 and 10 (train), frames 1-9 past sweeps of key frame 10."""
    root = tmp_path_factory.mktemp('nuscenes')
    return root, write_nuscenes_infos(root, 11, seed=0)


def nuscenes_copy(nuscenes_infos, root):
    shutil.copytree(nuscenes_infos[0], root)
    cfg = cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain_nuscenes_10sweeps.yaml')
    return cfg_from_list(['DATA_CONFIG.DATA_PATH', str(root)], cfg), [root / p.relative_to(nuscenes_infos[0])
                                                                     for p in nuscenes_infos[1]]


@pytest.mark.parametrize('damage, reason', [
    (lambda path: path.unlink(), 'cannot read: No such file or directory'),
    (lambda path: path.write_bytes(b''), 'empty sweep (0 bytes)'),
    (lambda path: path.write_bytes(path.read_bytes()[:-7]), 'truncated: '),
])
def test_missing_sweep_is_named_with_its_key_frame(nuscenes_infos, tmp_path, damage, reason):
    cfg, paths = nuscenes_copy(nuscenes_infos, tmp_path / 'nuscenes')
    damage(paths[7])  # a past sweep of key frame 10
    source = build_source(cfg.DATA_CONFIG, cfg.DATA_CONFIG.DATA_PATH, cfg.DATA_CONFIG.DATA_SPLIT.train)
    assert source.path(1) == paths[10] and source.read(0)  # key frame 0 does not merge it
    with pytest.raises(SweepError) as err:
        source.read(1)
    assert err.value.path == str(paths[10])  # the key frame, whose file is fine, is the sample skipped ...
    assert err.value.reason.startswith(f'its past sweep {paths[7]}: {reason}')  # ... for its past sweep


def test_missing_sweep_folder_is_named_as_such(nuscenes_infos, tmp_path):
    cfg, paths = nuscenes_copy(nuscenes_infos, tmp_path / 'nuscenes')
    shutil.rmtree(tmp_path / 'nuscenes' / 'sweeps')  # a key-frame-only download
    with pytest.raises(SweepError, match=rf"^{tmp_path / 'nuscenes' / 'sweeps' / 'LIDAR_TOP'}: folder of the past "
                                         rf"sweeps that .*nuscenes_infos_10sweeps_train.pkl merges"):
        build_source(cfg.DATA_CONFIG, cfg.DATA_CONFIG.DATA_PATH, cfg.DATA_CONFIG.DATA_SPLIT.train)
    cfg_from_list(['DATA_CONFIG.MAX_SWEEPS', '1'], cfg)  # key frames alone need no sweeps/
    assert len(build_source(cfg.DATA_CONFIG, cfg.DATA_CONFIG.DATA_PATH, cfg.DATA_CONFIG.DATA_SPLIT.train)) == 2


# ----- bad-sweep records against the current split -----

@pytest.mark.slow  # three small in-process training runs
def test_split_changed_after_a_bad_sweep_stop_forgets_unlisted_records(synthetic_kitti, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = kitti_copy(synthetic_kitti, tmp_path / 'kitti', (1, 2, 3))
    bad = root / 'training' / 'velodyne' / '000002.bin'
    bad.write_bytes(bad.read_bytes()[:-6])
    out = train_in_process(root, tmp_path / 'out', '--epochs', 1, sets=['DATA_CONFIG.MAX_BAD_FRACTION', 0.5])
    assert load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_1.pth')['bad_sweeps'].keys() == {str(bad)}
    with pytest.raises(RunError, match=r'^1 unusable sweeps .*MAX_BAD_FRACTION=0\.0 allows; first: \S+000002\.bin'):
        train_in_process(root, tmp_path / 'out', '--epochs', 2, sets=['DATA_CONFIG.MAX_BAD_FRACTION', 0.0])

    (root / 'ImageSets' / 'train.txt').write_text('000001\n000003\n')  # the fix: the bad sweep leaves the split
    train_in_process(root, tmp_path / 'out', '--epochs', 2, sets=['DATA_CONFIG.MAX_BAD_FRACTION', 0.0])
    final = load_checkpoint(out / 'ckpt' / 'checkpoint_epoch_2.pth')
    assert final['it'] == 2 and final['bad_sweeps'] == {}
    logs = '\n'.join(path.read_text() for path in out.glob('train_*.log'))
    assert 'forgot 1 of the 1 unusable sweeps the checkpoint records: the split no longer lists them' in logs


# ----- listed, but giving no sweep -----

def scan(cfg_name, root, capsys, *sets):
    status = scan_dataset.main(['--cfg_file', str(REPO / 'cfgs' / cfg_name), '--set', 'DATA_CONFIG.DATA_PATH',
                                str(root), *sets])
    return status, capsys.readouterr().out.splitlines()


def test_silently_dropped_empty_once_sequence_is_counted_and_reported(tmp_path, capsys, caplog):
    paths = write_once(tmp_path, 16, seed=1)  # raw_small lists the fourth sequence (frames 12-15)
    for path in paths[12:]:
        path.unlink()
    empty = tmp_path / 'data' / paths[12].parent.parent.name / 'lidar_roof'
    (tmp_path / 'ImageSets' / 'raw_small.txt').write_text(f'{paths[0].parent.parent.name}\n{empty.parent.name}\n')
    status, lines = scan('also_pretrain_once.yaml', tmp_path, capsys)
    assert status == 0 and lines[0].endswith('4 sweeps listed, 4 scanned (every 1), 4 usable')
    assert lines[1:3] == ['listed, giving no sweep: 1', f'  {empty}: listed, but holds no .bin file']
    cfg = cfg_from_list(['DATA_CONFIG.DATA_PATH', str(tmp_path)],
                        cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain_once.yaml'))
    build_dataloader(cfg.DATA_CONFIG, 1, 0, training=True)  # what training warns about (its log file too)
    assert f"split 'raw_small' under {tmp_path}: 1 listed item(s) give no sweep: {empty}: listed, but holds no " \
           f".bin file" in caplog.text


def test_silently_dropped_kitti360_window_frames_and_an_all_missing_split(tmp_path, capsys):
    write_kitti360(tmp_path, 6, seed=1)  # one drive, frames 0-5
    windows = tmp_path / 'windows.txt'
    drive = '2013_05_28_drive_0000_sync'
    windows.write_text(f'data_3d_semantics/train/{drive}/static/0000000004_0000000009.ply\n')
    status, lines = scan('also_pretrain_kitti360.yaml', tmp_path, capsys, 'DATA_CONFIG.DATA_SPLIT.train', str(windows))
    folder = tmp_path / 'data_3d_raw' / drive / 'velodyne_points' / 'data'
    assert status == 0 and lines[0].endswith('2 sweeps listed, 2 scanned (every 1), 2 usable')
    assert lines[1:3] == ['listed, giving no sweep: 1',
                          f'  {folder}: 4 of the 6 frames its windows name are not there (the drive has frames 0..5)']

    windows.write_text(f'data_3d_semantics/train/{drive}/static/0000000010_0000000019.ply\n')  # past the end
    status, lines = scan('also_pretrain_kitti360.yaml', tmp_path, capsys, 'DATA_CONFIG.DATA_SPLIT.train', str(windows))
    assert status == scan_dataset.NOTHING_USABLE and lines[0].endswith('0 sweeps listed, 0 scanned (every 1), 0 usable')
    assert lines[-1].startswith('nothing usable')
    cfg = cfg_from_list(['DATA_CONFIG.DATA_PATH', str(tmp_path), 'DATA_CONFIG.DATA_SPLIT.train', str(windows)],
                        cfg_from_yaml_file(REPO / 'cfgs' / 'also_pretrain_kitti360.yaml'))
    with pytest.raises(RunError, match=rf'no sweeps listed for split .*: 1 listed item\(s\) give no sweep: {folder}: '
                                       rf'10 of the 10 frames'):
        build_dataloader(cfg.DATA_CONFIG, 1, 0, training=True)


# ----- damaged and special files -----

def test_waymo_info_with_six_lidar_counts_names_the_count_mismatch(tmp_path):
    write_waymo_processed_sweeps(tmp_path, 4, seed=0)
    info = next(tmp_path.rglob('*.pkl'))
    infos = pickle.loads(info.read_bytes())
    infos[0]['num_points_of_each_lidar'] = list(infos[0]['num_points_of_each_lidar']) + [0]
    info.write_bytes(pickle.dumps(infos))
    with pytest.raises(SweepError, match=rf"^{info}: frame \d+: num_points_of_each_lidar \[.*\] has 6 counts; "
                                         rf"Waymo has 5 lidars \(TOP, FRONT, SIDE_LEFT, SIDE_RIGHT, REAR\)"):
        read_waymo_info(info)


def test_damaged_pickle_and_fifo_files_are_named_and_never_block(synthetic_kitti, tmp_path, nuscenes_infos):
    cfg, _ = nuscenes_copy(nuscenes_infos, tmp_path / 'nuscenes')
    infos = tmp_path / 'nuscenes' / 'nuscenes_infos_10sweeps_train.pkl'
    infos.write_bytes(infos.read_bytes()[:100])
    with pytest.raises(SweepError, match=rf'^{infos}: cannot read the info pkl .*: '):
        build_source(cfg.DATA_CONFIG, cfg.DATA_CONFIG.DATA_PATH, cfg.DATA_CONFIG.DATA_SPLIT.train)
    infos.unlink()
    os.mkfifo(infos)
    with pytest.raises(SweepError, match=rf'^{infos}: it is a FIFO \(named pipe\), not a regular file'):
        build_source(cfg.DATA_CONFIG, cfg.DATA_CONFIG.DATA_PATH, cfg.DATA_CONFIG.DATA_SPLIT.train)

    root = kitti_copy(synthetic_kitti, tmp_path / 'kitti', (1, 2))
    sweep = root / 'training' / 'velodyne' / '000001.bin'
    sweep.unlink()
    os.mkfifo(sweep)  # reading it would wait for a writer forever
    sample = SweepDataset(tiny_cfg(root).DATA_CONFIG, training=True)[0]
    assert sample['frame_id'] == '000002'
    assert sample['skipped'] == [(str(sweep), 'it is a FIFO (named pipe), not a regular file (reading it could '
                                              'wait forever)')]
    ckpt = tmp_path / 'fifo.pth'
    os.mkfifo(ckpt)
    with pytest.raises(UnreadableCheckpoint, match=rf'^{ckpt}: cannot load checkpoint: it is a FIFO'):
        load_checkpoint(ckpt)


def test_a_yaml_repeating_a_section_is_refused_naming_file_and_key(tmp_path, synthetic_kitti, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg_file = tmp_path / 'twice.yaml'
    cfg_file.write_text('_BASE_CONFIG_: cfgs/also_pretrain.yaml\nOPTIMIZATION:\n    LR: 0.01\nDATA_CONFIG:\n'
                        '    MAX_BAD_FRACTION: 0.1\nOPTIMIZATION:\n    NUM_EPOCHS: 3\n')
    with pytest.raises(ConfigError, match=rf"^{cfg_file}: key 'OPTIMIZATION' appears twice in one mapping "
                                          rf"\(lines 2 and 6\)"):
        train.main(['--cfg_file', str(cfg_file), '--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)])


def test_a_detector_config_repeating_a_key_is_read_as_openpcdet_reads_it_with_a_warning(tmp_path):
    """OpenPCDet's own yaml.safe_load keeps the last of a repeated key: a user's detector config is read the same
    way (refusing it would refuse a config OpenPCDet trains from), with a warning naming the file and the key."""
    from also_pcdet.detector_config import load_detector_cfg
    detector = tmp_path / 'det.yaml'
    detector.write_text('MODEL:\n    NAME: A\nMODEL:\n    NAME: SECONDNet\n')
    with pytest.warns(UserWarning, match=rf"{detector}: key 'MODEL' appears twice .*the last one wins"):
        cfg = load_detector_cfg(detector)
    assert cfg.MODEL.NAME == 'SECONDNet'

class SignalsWhilePickled:
    """Sends `signum` to this (the main) thread while torch.save pickles it, then pickles as the int 7. To the thread,
    not the process: the kernel may hand a process-directed signal to another thread (xdist's, tensorboard's) whose C
    handler then runs only later, and the test would race it."""

    def __init__(self, signum):
        self.signum = signum

    def __reduce__(self):
        signal.pthread_kill(threading.get_ident(), self.signum)
        return int, (7,)


@pytest.mark.parametrize('signum, stops', [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)],
                         ids=['SIGINT', 'SIGTERM'])
def test_a_signal_while_saving_waits_for_the_complete_checkpoint(tmp_path, signum, stops):
    """A kill that lands inside torch.save used to cut it ('unexpected pos': reported as a failed write, exit 1);
    the signal now acts once the file is complete and renamed."""
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, raise_terminated),     # as run_main sets it
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}  # as Python starts
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, list(previous))
    try:
        with pytest.raises(stops):
            save_atomic({'it': 3, 'w': torch.ones(1000), 'x': SignalsWhilePickled(signum)}, tmp_path / 'latest.pth')
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for number, handler in previous.items():
            signal.signal(number, handler)
    saved = torch.load(tmp_path / 'latest.pth', weights_only=False)   # the int 7 is pickled as int(7)
    assert saved['it'] == 3 and saved['x'] == 7 and torch.equal(saved['w'], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ['latest.pth']

def test_a_full_disk_while_saving_names_the_checkpoint_and_keeps_the_old_one(tmp_path):
    """A file size limit (RLIMIT_FSIZE) makes the write fail as a full disk does, in a child process."""
    path = save_atomic({'it': 1}, tmp_path / 'latest_model.pth')
    code = ('import resource, signal, sys, torch\n'
            'from also_pcdet.engine.checkpoint import save_atomic\n'
            'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
            'resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))\n'
            f'save_atomic({{"it": 2, "w": torch.zeros(100000)}}, {str(path)!r})\n')
    proc = subprocess.run([sys.executable, '-c', code], env=cli_env(), capture_output=True, text=True, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith(f'also_pcdet.engine.checkpoint.CheckpointWriteError: {path}: '
                                                    f'cannot write the checkpoint (')
    assert last.endswith('bytes free there): the previous file is kept')
    assert load_checkpoint(path) == {'it': 1} and [p.name for p in tmp_path.iterdir()] == ['latest_model.pth']
