"""Crash safety: atomic checkpoint writes, rotation, resume discovery, and a training process killed with
SIGKILL mid-epoch that, restarted, ends bit-identical to a run that was never interrupted."""
import os
import signal
import subprocess
import threading
from types import SimpleNamespace

import pytest

from also_pcdet.engine.checkpoint import (find_resume_checkpoint, load_checkpoint, rotate_checkpoints,
                                          save_atomic, temp_path)
from also_pcdet.engine.run_setup import summary_writer
from conftest import REPO
from tools import train
from train_cli import (cli_env, run_dir, same_optimizer_state, same_tensors, scalars, train_args,
                       train_command)

# 4 of the 8 train sweeps at batch 1: 4 steps an epoch; `latest_model.pth` every 3 steps
SMALL_RUN = ('--batch_size', 1, '--fix_random_seed')
SMALL_SETS = ['DATA_CONFIG.SAMPLE_INTERVAL.train', 2, 'OPTIMIZATION.CKPT_SAVE_ITERS', 3]


def test_save_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = save_atomic({'it': 1}, tmp_path / 'latest_model.pth')
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask          # readable like any file the user writes
    with pytest.raises(TypeError, match='pickle'):
        save_atomic({'it': 2, 'lock': threading.Lock()}, path)       # fails once the temporary file exists
    assert load_checkpoint(path) == {'it': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['latest_model.pth']


def test_a_resume_in_the_same_second_keeps_the_first_runs_scalars(tmp_path, monkeypatch):
    """tensorboardX names an event file by the second and opens it with 'wb'; both runs' writers start in one
    second here, and each keeps its file, read back in start order."""
    monkeypatch.setattr('tensorboardX.event_file_writer.time', SimpleNamespace(time=lambda: 1_700_000_000.0))
    for step in (1, 2):
        writer = summary_writer(tmp_path)
        writer.add_scalar('train/loss', float(step), step)
        writer.close()
    assert len(list(tmp_path.glob('events.out.tfevents.1700000000.*'))) == 2
    assert scalars(tmp_path)['train/loss'] == [(1, 1.0), (2, 2.0)]


def test_rotation_and_resume_discovery(tmp_path):
    for epoch in range(1, 5):
        save_atomic({'model_state': {}, 'it': 10 * epoch}, tmp_path / f'checkpoint_epoch_{epoch}.pth')
    rotate_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint_epoch_3.pth', 'checkpoint_epoch_4.pth']
    save_atomic({'model_state': {}, 'it': 45}, tmp_path / 'latest_model.pth')
    assert find_resume_checkpoint(tmp_path) == (tmp_path / 'latest_model.pth', [])
    (tmp_path / 'checkpoint_epoch_5.pth').write_bytes(b'PK\x03\x04 truncated')  # not written by save_atomic
    best, errors = find_resume_checkpoint(tmp_path)
    assert best == tmp_path / 'latest_model.pth' and len(errors) == 1 and 'checkpoint_epoch_5.pth' in errors[0]


def kill_at(args, marker, timeout):
    """Run train.py with `args` and SIGKILL it the moment its log shows `marker`: its output is read as it is
    written (no polling delay), so the kill lands within the steps that follow the marker whatever the load."""
    with subprocess.Popen(train_command(args), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        written = []
        try:
            for line in proc.stderr:
                written.append(line)
                if marker in line:
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            timer.cancel()
    assert marker in ''.join(written), (f'no {marker!r} (train.py exit {proc.returncode}, {timeout} s limit):\n'
                                        f'{"".join(written)[-3000:]}')


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(synthetic_kitti, tmp_path, capsys):
    """The kill hits a real process; the other runs are in this one (the same code, without a process start)."""
    reference = run_dir(tmp_path / 'reference') / 'ckpt'
    train.main(train_args(synthetic_kitti, tmp_path / 'reference', *SMALL_RUN, '--epochs', 2,
                          '--ckpt_save_interval', 2, sets=SMALL_SETS))
    assert sorted(p.name for p in reference.iterdir()) == ['checkpoint_epoch_2.pth', 'latest_model.pth',
                                                           'pretrained_backbone.pth']
    expected = load_checkpoint(reference / 'checkpoint_epoch_2.pth')

    args = train_args(synthetic_kitti, tmp_path / 'run', *SMALL_RUN, '--epochs', 2, '--max_ckpt_save_num', 1,
                      sets=SMALL_SETS)
    kill_at(args, 'latest_model.pth (epoch 1, iteration 6)', timeout=240)
    ckpt = run_dir(tmp_path / 'run') / 'ckpt'
    assert sorted(p.name for p in ckpt.iterdir()) == ['checkpoint_epoch_1.pth', 'latest_model.pth']
    latest = load_checkpoint(ckpt / 'latest_model.pth')
    assert (latest['epoch'], latest['it'], latest['batch_in_epoch']) == (1, 6, 2)
    assert load_checkpoint(ckpt / 'checkpoint_epoch_1.pth')['it'] == 4
    stale = temp_path(ckpt / 'latest_model.pth')                    # what a kill during a save leaves behind
    stale.write_bytes((ckpt / 'latest_model.pth').read_bytes()[:4096])

    capsys.readouterr()
    train.main(args)
    assert f'resumed from {ckpt / "latest_model.pth"}: epoch 1, iteration 6, 2 batches' in capsys.readouterr().err
    assert not stale.exists()
    assert sorted(p.name for p in ckpt.iterdir()) == ['checkpoint_epoch_2.pth', 'latest_model.pth',
                                                      'pretrained_backbone.pth']  # --max_ckpt_save_num 1
    final = load_checkpoint(ckpt / 'checkpoint_epoch_2.pth')
    assert (final['epoch'], final['it']) == (expected['epoch'], expected['it']) == (2, 8)
    assert same_tensors(final['model_state'], expected['model_state'])
    assert same_optimizer_state(final['optimizer_state'], expected['optimizer_state'])

    # --ckpt: continue the reference run for one more epoch in a fresh output folder
    train.main(train_args(synthetic_kitti, tmp_path / 'more', *SMALL_RUN, '--epochs', 3,
                          '--ckpt', reference / 'checkpoint_epoch_2.pth', sets=SMALL_SETS))
    assert f'resumed from {reference / "checkpoint_epoch_2.pth"}: epoch 2, iteration 8, 0 batches' in \
        capsys.readouterr().err
    third = load_checkpoint(run_dir(tmp_path / 'more') / 'ckpt' / 'checkpoint_epoch_3.pth')
    assert (third['epoch'], third['it']) == (3, 12)
