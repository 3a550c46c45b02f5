"""OpenPCDet-format checkpoints: atomic writes, rotation, resume discovery, weights_only loading."""
import inspect
import os
import re
import shutil
from pathlib import Path

import torch

from ..errors import UserError, special_file
from .cli import deferred_signals
from ..version import CHECKPOINT_VERSION

LOAD_TAKES_MMAP = 'mmap' in inspect.signature(torch.load).parameters  # torch >= 2.1
EPOCH_CKPT = re.compile(r'checkpoint_epoch_(\d+)\.pth$')
LATEST_NAME = 'latest_model.pth'
TEMP_SUFFIX = '.tmp'


def unwrap(model):
    """The bare model behind a DistributedDataParallel wrapper."""
    return model.module if hasattr(model, 'module') else model


def cpu_state(state: dict) -> dict:
    return {key: value.detach().cpu() for key, value in state.items()}


def checkpoint_state(model, optimizer=None, epoch: int = 0, it: int = 0, **extra) -> dict:
    """The stock OpenPCDet checkpoint dict, plus plain-value extras (e.g. rng_state, batch_in_epoch)."""
    state = {'model_state': cpu_state(unwrap(model).state_dict()),
             'optimizer_state': optimizer.state_dict() if optimizer is not None else None,
             'epoch': int(epoch), 'it': int(it), 'version': CHECKPOINT_VERSION}
    state.update(extra)
    return state


def temp_path(path: Path) -> Path:
    """Where `save_atomic` writes `path` before the rename (a hidden name the checkpoint globs skip)."""
    return path.with_name(f'.{path.name}.{os.getpid()}{TEMP_SUFFIX}')


class CheckpointWriteError(UserError, OSError):
    """A checkpoint that could not be written (a full disk, a file size limit, a read-only folder)."""


def save_atomic(state: dict, path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a crash at any
    point leaves either the old file or the new one, never a partial one. The file gets the usual
    umask permissions (unlike a `tempfile.mkstemp` file, which is private to its owner). A failed write
    (torch reports a full disk as a RuntimeError) is a CheckpointWriteError naming `path`. SIGTERM and Ctrl-C
    wait for the file to be complete (torch.save cut by a signal fails with a RuntimeError of its own)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with deferred_signals():
            with open(tmp, 'wb') as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        kept = 'the previous file is kept' if path.exists() else 'no file was written'
        raise CheckpointWriteError(f'{path}: cannot write the checkpoint ({type(err).__name__}: {err}; '
                                   f'{shutil.disk_usage(path.parent).free:,} bytes free there): {kept}') from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temp_files(ckpt_dir) -> list:
    """Delete the temporary files a process killed while saving left in `ckpt_dir`; return them."""
    stale = sorted(Path(ckpt_dir).glob(f'.*{TEMP_SUFFIX}'))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


class UnreadableCheckpoint(UserError, RuntimeError):
    """A checkpoint file torch cannot load (damaged, cut short, not a torch file, a special file)."""


def load_checkpoint(path, map_location='cpu', mmap: bool = False) -> dict:
    """Load with `weights_only=True`; a missing or unreadable file is an error naming it."""
    path = Path(path)
    if special_file(path):
        raise UnreadableCheckpoint(f'{path}: cannot load checkpoint: it is {special_file(path)}')
    if not path.is_file():
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        extra = {'mmap': mmap} if LOAD_TAKES_MMAP else {}  # mmap only saves memory: older torch reads the file
        return torch.load(path, map_location=map_location, weights_only=True, **extra)
    except Exception as err:
        text = str(err).split('WeightsUnpickler error: ', 1)[-1].strip()  # torch's advice around it is not for us
        raise UnreadableCheckpoint(f'{path}: cannot load checkpoint (not a torch file, or damaged: '
                                   f'{type(err).__name__}: {text.splitlines()[0] if text else ""})') from err


class CheckpointError(UserError, KeyError):
    """A loadable file that is no OpenPCDet checkpoint (a KeyError, as OpenPCDet's loader raises, whose
    message reads without KeyError's quotes)."""

    def __str__(self):
        return str(self.args[0])


class CheckpointMismatch(CheckpointError):
    """A checkpoint whose `model_state` does not fit the model it is loaded into."""


def state_mismatch(model_state: dict, file_state: dict, shown: int = 3) -> str:
    """How `file_state` (a checkpoint's model_state) misfits `model_state` (the model's state_dict) for a
    strict load: counts and the first `shown` keys missing from the file, unexpected in it, and of another
    shape ('' when it fits)."""
    missing = [key for key in model_state if key not in file_state]
    unexpected = [key for key in file_state if key not in model_state]
    shape = [f'{key} {tuple(file_state[key].shape)} in the file, {tuple(model_state[key].shape)} in the model'
             for key in model_state if key in file_state and file_state[key].shape != model_state[key].shape]
    parts = [f'{len(keys)} {what} (e.g. {"; ".join(map(str, keys[:shown]))})'
             for what, keys in (('keys missing from the file', missing), ('unexpected keys', unexpected),
                                ('keys of another shape', shape)) if keys]
    return ', '.join(parts)


def model_state_problem(ckpt) -> str:
    """What keeps a loaded file from being an OpenPCDet checkpoint: no `model_state` entry, or one that is not
    a dict of parameter name -> tensor ('' when nothing does)."""
    if not isinstance(ckpt, dict) or 'model_state' not in ckpt:
        keys = sorted(map(str, ckpt)) if isinstance(ckpt, dict) else f'none (it holds a {type(ckpt).__name__})'
        return f'no "model_state" entry; keys are {keys}'
    state = ckpt['model_state']
    if not isinstance(state, dict):
        return f'"model_state" is a {type(state).__name__}, not a dict of parameter name -> tensor'
    bad = [key for key, value in state.items() if not isinstance(key, str) or not torch.is_tensor(value)]
    if bad:
        return (f'"model_state" has {len(bad)} entries that are not parameter name -> tensor, e.g. {bad[0]!r}: '
                f'{type(state[bad[0]]).__name__}')
    return ''


def load_with_model_state(path, mmap: bool = False) -> dict:
    """`load_checkpoint`, requiring OpenPCDet's `model_state` (a dict of tensors): CheckpointError naming the
    file and the problem otherwise."""
    ckpt = load_checkpoint(path, mmap=mmap)
    problem = model_state_problem(ckpt)
    if problem:
        raise CheckpointError(f'{path}: {problem}')
    return ckpt


def require_shared_keys(path, model_state: dict) -> dict:
    """`path` as `load_with_model_state` loads it, for a non-strict load into a model with `model_state`:
    CheckpointMismatch naming the file unless at least one of its tensors names a key of the model."""
    ckpt = load_with_model_state(path, mmap=True)
    if not any(key in model_state for key in ckpt['model_state']):
        file_keys = list(ckpt['model_state'])
        raise CheckpointMismatch(f'{path}: none of its {len(file_keys)} tensors names a key of the model (file: '
                                 f'{file_keys[:2]}, model: {list(model_state)[:2]}): nothing would load from it')
    return ckpt


def set_aside(ckpt_dir, reason: str = 'not_fitting') -> Path:
    """Move the epoch checkpoints and `latest_model.pth` of `ckpt_dir` into a new sub-folder
    `<reason>_<N>` (out of reach of resume discovery and rotation); return that folder."""
    ckpt_dir = Path(ckpt_dir)
    number = 1 + sum(1 for _ in ckpt_dir.glob(f'{reason}_*'))
    folder = ckpt_dir / f'{reason}_{number}'
    folder.mkdir()
    for path in epoch_checkpoints(ckpt_dir) + [p for p in [ckpt_dir / LATEST_NAME] if p.is_file()]:
        os.replace(path, folder / path.name)
    return folder


def epoch_checkpoints(ckpt_dir) -> list:
    """`checkpoint_epoch_N.pth` files in `ckpt_dir`, oldest epoch first."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob('checkpoint_epoch_*.pth')
             if (m := EPOCH_CKPT.search(p.name))]
    return [p for _, p in sorted(found)]


def rotate_checkpoints(ckpt_dir, keep: int):
    """Delete the oldest epoch checkpoints so that at most `keep` remain."""
    files = epoch_checkpoints(ckpt_dir)
    for path in files[:max(len(files) - keep, 0)]:
        path.unlink(missing_ok=True)


def find_resume_checkpoint(ckpt_dir):
    """The loadable checkpoint with the most iterations among the epoch files and `latest_model.pth`
    (None if there is none). Unloadable files are skipped; their errors are returned alongside."""
    candidates = epoch_checkpoints(ckpt_dir) + [p for p in [Path(ckpt_dir) / LATEST_NAME] if p.is_file()]
    best, best_it, errors = None, -1, []
    for path in candidates:
        try:
            it = int(load_with_model_state(path, mmap=True)['it'])
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            errors.append(str(err))
            continue
        if it > best_it:
            best, best_it = path, it
    return best, errors
