"""Run set-up shared by the tools: output folders, logger, seeds."""
import logging
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tensorboardX import SummaryWriter


def output_dir_for(cfg_file, extra_tag: str, root='output') -> Path:
    """OpenPCDet's layout: output/<cfg sub-folders below cfgs/>/<cfg name>/<extra_tag>/ (also for an
    absolute --cfg_file; a config outside any cfgs/ folder goes straight under output/)."""
    cfg_path = Path(cfg_file)
    parts = cfg_path.parent.parts
    below = parts[len(parts) - parts[::-1].index('cfgs'):] if 'cfgs' in parts else ()
    return Path(root).joinpath(*below, cfg_path.stem, extra_tag)


def create_logger(log_file=None, rank: int = 0) -> logging.Logger:
    """Console + file logger; ranks other than 0 only report errors."""
    logger = logging.getLogger('also_pcdet')
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    logger.handlers.clear()
    logger.propagate = False
    fmt = logging.Formatter('%(asctime)s  %(levelname)5s  %(message)s')
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None and rank == 0:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


def summary_writer(log_dir) -> SummaryWriter:
    """A tensorboardX SummaryWriter with an event file of its own. tensorboardX names the file
    events.out.tfevents.<unix seconds>.<host> and opens it with 'wb', so a run resumed within the same second
    would truncate the first run's scalars. The suffix (nanoseconds, pid) keeps each file, and the names still
    sort in start order, the order TensorBoard reads them in."""
    return SummaryWriter(str(log_dir), filename_suffix=f'.{time.time_ns()}.{os.getpid()}')


def timestamp() -> str:
    return time.strftime('%Y%m%d-%H%M%S')


def pick_seed(fixed: bool) -> int:
    """666 with --fix_random_seed (OpenPCDet's value), else fresh entropy."""
    return 666 if fixed else int.from_bytes(os.urandom(4), 'little') % (2 ** 31)


def seed_everything(seed: int, deterministic: bool):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
