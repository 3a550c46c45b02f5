"""Pretrain a detector's backbone with ALSO. Same flags as OpenPCDet's tools/train.py, plus --detector_cfg.
--batch_size is the total over all processes, as in OpenPCDet (docs/training.md).

    python tools/train.py --cfg_file cfgs/also_pretrain.yaml [--batch_size 8] [--epochs 500] ...
    python tools/train.py --cfg_file cfgs/also_pretrain.yaml --detector_cfg OpenPCDet/tools/cfgs/kitti_models/pv_rcnn.yaml
    bash tools/dist_train.sh 4 --cfg_file cfgs/also_pretrain.yaml
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

from also_pcdet import pcdet_seam
from also_pcdet.config import (ConfigError, add_config_arguments, config_from_args, config_lines,
                               write_resolved_config)
from also_pcdet.config_checks import check_config
from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.checkpoint import (CheckpointMismatch, find_resume_checkpoint, remove_stale_temp_files,
                                          require_shared_keys, save_atomic, set_aside)
from also_pcdet.engine.cli import run_main
from also_pcdet.errors import RunError
from also_pcdet.engine.distributed import all_reduce_sum, convert_sync_batchnorm, init_distributed
from also_pcdet.engine.export import export_backbone
from also_pcdet.engine.pretrained_check import detector_cfg_of, require_fit
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.run_setup import (create_logger, output_dir_for, pick_seed, seed_everything,
                                         summary_writer, timestamp)
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network


_AFTER_TRAINING = 'selects what OpenPCDet evaluates on detection after training; pretraining runs no such evaluation'
IGNORED_FLAGS = {  # OpenPCDet train.py flags that have no effect here, and why
    'max_waiting_mins': _AFTER_TRAINING, 'start_epoch': _AFTER_TRAINING, 'num_epochs_to_eval': _AFTER_TRAINING,
    'save_to_file': _AFTER_TRAINING,
    'wo_gpu_stat': 'this tool never logs gpustat output',
    'merge_all_iters_to_one_epoch': 'epochs run as usual, each a fresh shuffle of every sweep once (resumable '
                                    'mid-epoch); OpenPCDet\'s option draws all epochs\' iterations as one long epoch',
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(p, 'YAML config, e.g. cfgs/also_pretrain.yaml')
    p.add_argument('--batch_size', type=int, default=None,
                   help='total over all processes, divided among them (default OPTIMIZATION.BATCH_SIZE_PER_GPU '
                        'per process)')
    p.add_argument('--epochs', type=int, default=None, help='default OPTIMIZATION.NUM_EPOCHS')
    p.add_argument('--workers', type=int, default=4, help='data loader workers per process')
    p.add_argument('--extra_tag', default='default', help='output sub-folder name')
    p.add_argument('--ckpt', default=None, help='resume from this checkpoint (default: latest in the output dir)')
    p.add_argument('--pretrained_model', default=None, help='initialise weights from a checkpoint (non-strict)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--tcp_port', type=int, default=18888)
    p.add_argument('--sync_bn', action='store_true', help='convert BatchNorm to SyncBatchNorm (GPUs only)')
    p.add_argument('--fix_random_seed', action='store_true', help='seed 666 everywhere: reproducible runs')
    p.add_argument('--ckpt_save_interval', type=int, default=1, help='epochs between epoch checkpoints')
    p.add_argument('--local_rank', '--local-rank', type=int, default=None,
                   help='set by the legacy torch.distributed.launch; used when LOCAL_RANK is not in the environment')
    p.add_argument('--max_ckpt_save_num', type=int, default=30, help='epoch checkpoints kept (at least 1)')
    p.add_argument('--merge_all_iters_to_one_epoch', action='store_true', help='accepted; ignored with a warning')
    p.add_argument('--use_amp', '--amp', dest='use_amp', action='store_true',
                   help='float16 mixed precision, CUDA only (also OPTIMIZATION.USE_AMP)')
    p.add_argument('--logger_iter_interval', type=int, default=None,
                   help='log (and write to tensorboard) every N iterations (default OPTIMIZATION.LOG_INTERVAL)')
    p.add_argument('--ckpt_save_time_interval', type=int, default=300,
                   help='seconds between latest_model.pth saves within an epoch (0 = off)')
    p.add_argument('--use_tqdm_to_record', action='store_true',
                   help='per-iteration values go to the progress bar only, not to the log')
    for flag in ('max_waiting_mins', 'start_epoch', 'num_epochs_to_eval'):
        p.add_argument(f'--{flag}', type=int, default=None, help='accepted; ignored with a warning')
    for flag in ('save_to_file', 'wo_gpu_stat'):
        p.add_argument(f'--{flag}', action='store_true', help='accepted; ignored with a warning')
    p.add_argument('--output_root', default='output', help='where output/<cfg>/<extra_tag>/ goes')
    p.add_argument('--eval_interval', type=int, default=0, help='validate every N epochs on the val split (0 = off)')
    p.add_argument('--fresh_start', action='store_true',
                   help='start from iteration 0 even if the output folder holds only unreadable checkpoints '
                        '(they get overwritten) or checkpoints of another model (moved to ckpt/not_fitting_<N>/); '
                        'without it such a folder stops the run')
    p.add_argument('--dump_final_state', metavar='DIR', default=None,
                   help='debug: every process saves its final state to DIR/rank_<R>.pth (DDP replicas must agree)')
    args = p.parse_args(argv)
    for flag, lowest in (('batch_size', 1), ('epochs', 1), ('workers', 0), ('ckpt_save_interval', 1),
                         ('eval_interval', 0), ('logger_iter_interval', 1), ('ckpt_save_time_interval', 0)):
        value = getattr(args, flag)
        if value is not None and value < lowest:
            p.error(f'--{flag} must be at least {lowest}, got {value}')
    if args.max_ckpt_save_num < 1:
        p.error('--max_ckpt_save_num must be at least 1 (the last epoch checkpoint is exported)')
    if args.local_rank is not None:  # torch.distributed.launch without --use_env passes it as a flag only
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    provenance = []
    cfg = config_from_args(args, provenance)
    if args.logger_iter_interval is not None:
        cfg.OPTIMIZATION.LOG_INTERVAL = args.logger_iter_interval
    check_config(cfg)
    args.use_amp = args.use_amp or cfg.OPTIMIZATION.get('USE_AMP', False)  # as OpenPCDet
    return args, cfg, provenance


def batch_per_process(total, world_size: int, cfg) -> int:
    """OpenPCDet's contract: --batch_size is the total over the `world_size` processes and must divide evenly
    among them; without it each process takes OPTIMIZATION.BATCH_SIZE_PER_GPU."""
    if total is None:
        return cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU
    if total % world_size:
        raise ConfigError(f'--batch_size {total} is the total over all processes (as in OpenPCDet) and does not '
                         f'divide among the {world_size} processes: pass a multiple of {world_size}')
    return total // world_size


def save_config(args, cfg, out_dir: Path, seed: int):
    """OpenPCDet copies --cfg_file into the output folder; that file names its `_BASE_CONFIG_`s, so the config
    as this run resolved it (bases and --set applied) is written beside it as `<cfg name>_resolved.yaml`."""
    cfg_file = Path(args.cfg_file)
    copy = out_dir / cfg_file.name
    if not (copy.exists() and copy.samefile(cfg_file)):
        shutil.copyfile(cfg_file, copy)
    write_resolved_config(cfg, out_dir / f'{cfg_file.stem}_resolved.yaml', header=(
        f'{cfg_file} as resolved by: {" ".join(sys.argv)}\n'
        f'seed {seed}{" (--fix_random_seed)" if args.fix_random_seed else ""}; rerun: '
        f'python tools/train.py --cfg_file <this file> with the same flags, without --set'))


def main(argv=None):
    args, cfg, provenance = parse_args(argv)
    rank, world_size, local_rank = init_distributed(args.launcher, args.tcp_port)
    device = torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else torch.device('cpu')
    global_cfg = pcdet_seam.pcdet_global_cfg()
    if global_cfg is not None:
        global_cfg.update(cfg)
    batch_size = batch_per_process(args.batch_size, world_size, cfg)
    epochs = args.epochs if args.epochs is not None else cfg.OPTIMIZATION.NUM_EPOCHS

    out_dir = output_dir_for(args.cfg_file, args.extra_tag, args.output_root)
    ckpt_dir = out_dir / 'ckpt'
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    logger = create_logger(out_dir / f'train_{timestamp()}.log', rank)
    logger.info(f'output: {out_dir}  processes: {world_size}  device: {device}  batch: {batch_size} per process, '
                f'total_batch_size {batch_size * world_size}')
    for key, value in vars(args).items():  # as OpenPCDet logs them, then every resolved config key
        logger.info(f'{key:16} {value}')
    for line in config_lines(cfg):
        logger.info(line)
    for line in provenance:
        logger.info(f'derived: {line}')
    for flag, why in IGNORED_FLAGS.items():
        if getattr(args, flag) not in (None, False):
            logger.warning(f'--{flag} (OpenPCDet) has no effect here: {why}')
    if device.type == 'cpu':   # several threads are exact (spconv_compat) but were slower on a busy 2-core machine
        asked = 'OMP_NUM_THREADS' in os.environ and not args.fix_random_seed
        if not asked:
            torch.set_num_threads(1)
        why = ('OMP_NUM_THREADS' if asked else '--fix_random_seed makes runs bit-identical' if args.fix_random_seed
               else 'the CPU default; OMP_NUM_THREADS=N for N (docs/measurements.md)')
        logger.info(f'training on {torch.get_num_threads()} CPU thread(s): {why}')

    seed = int(all_reduce_sum([pick_seed(args.fix_random_seed) if rank == 0 else 0])[0])
    seed_everything(seed, deterministic=args.fix_random_seed)
    if rank == 0:
        save_config(args, cfg, out_dir, seed)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch_size, args.workers, training=True, seed=seed,
                                       rank=rank, world_size=world_size)
    logger.info(dataset.describe() if cfg.DATA_CONFIG.get('SOURCES') else
                f'{len(dataset)} training sweeps from {dataset.root_path} ({cfg.DATA_CONFIG.DATASET})')
    val_loader = None
    if args.eval_interval:
        _, val_loader = build_dataloader(cfg.DATA_CONFIG, batch_size, args.workers, training=False, seed=seed,
                                         rank=rank, world_size=world_size)

    model = build_network(cfg.MODEL, dataset)
    if args.sync_bn:
        model = convert_sync_batchnorm(model, device)
    model.to(device)
    if args.pretrained_model:
        require_shared_keys(args.pretrained_model, model.state_dict())  # a non-checkpoint or another model: one line
        model.load_params_from_file(args.pretrained_model, logger=logger, to_cpu=device.type != 'cuda')
    optimizer = build_optimizer(model, cfg.OPTIMIZATION)
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)

    writer = summary_writer(out_dir / 'tensorboard') if rank == 0 else None
    trainer = Trainer(model, optimizer, loader, cfg.OPTIMIZATION, ckpt_dir=ckpt_dir, device=device, logger=logger,
                      tb_writer=writer, rank=rank, amp=args.use_amp, seed=seed,
                      ckpt_save_interval=args.ckpt_save_interval, max_ckpt_save_num=args.max_ckpt_save_num,
                      val_loader=val_loader, eval_interval=args.eval_interval,
                      ckpt_save_time_interval=args.ckpt_save_time_interval, log_iterations=not args.use_tqdm_to_record)
    if rank == 0:
        for stale in remove_stale_temp_files(ckpt_dir):
            logger.warning(f'removed {stale}, left by a process killed while saving')
    resume_from = args.ckpt
    if resume_from is None:
        resume_from, errors = find_resume_checkpoint(ckpt_dir)
        if errors and resume_from is None and not args.fresh_start:
            raise RunError(f'{ckpt_dir} holds only unreadable checkpoints, so this run cannot resume: '
                           + '; '.join(errors) + '. Repair or move them, or pass --fresh_start to start '
                           'from iteration 0 (they will be overwritten)')
        for error in errors:
            logger.warning(f'not resuming from an unreadable checkpoint: {error}')
    if resume_from is not None and args.fresh_start and args.ckpt is None:
        try:
            trainer.resume(resume_from)
        except CheckpointMismatch as err:  # --fresh_start: the folder's checkpoints of another model go aside
            aside = set_aside(ckpt_dir) if rank == 0 else 'a sub-folder'
            logger.warning(f'--fresh_start: {err}; moved its checkpoints to {aside}, starting from iteration 0')
            resume_from = None
    elif resume_from is not None:
        trainer.resume(resume_from)
    if resume_from is not None:
        dataset.seed = loader.sampler.seed = trainer.seed  # the resumed run's data continues the original's
        if val_loader is not None:
            val_loader.dataset.seed = trainer.seed

    try:
        trainer.fit(epochs, save_every_iters=cfg.OPTIMIZATION.get('CKPT_SAVE_ITERS', 0))
    except FloatingPointError as err:
        logger.error(str(err))
        raise SystemExit(1) from err
    if args.dump_final_state:
        save_atomic(trainer.state(), Path(args.dump_final_state) / f'rank_{rank}.pth')
    if rank == 0:
        final = ckpt_dir / f'checkpoint_epoch_{trainer.epoch}.pth'
        if not final.exists():  # --ckpt of a finished run from another folder: nothing was trained here
            trainer.save(final)
        exported = export_backbone(final, ckpt_dir / 'pretrained_backbone.pth', cfg.MODEL.get('VFE'))
        logger.info(f'exported {len(exported["model_state"])} backbone tensors to {ckpt_dir / "pretrained_backbone.pth"}')
        writer.close()
        detector = cfg.get('DERIVED_FROM') or args.cfg_file
        try:  # what OpenPCDet's --pretrained_model will load from it
            report = require_fit(ckpt_dir / 'pretrained_backbone.pth', detector_cfg_of(cfg), detector)
        except ValueError as err:
            logger.error(str(err))
            raise SystemExit(1) from err
        logger.info(f'checked against {detector}: {report.done_line} (every backbone key; M adds global_step)')
    if world_size > 1:
        torch.distributed.destroy_process_group()
    return out_dir


if __name__ == '__main__':
    run_main(main)
