"""Pretrain a detector's backbone with ALSO. Same flags as OpenPCDet's tools/train.py, plus --detector_cfg.

    python tools/train.py --cfg_file cfgs/also_pretrain.yaml [--batch_size 8] [--epochs 500] ...
    python tools/train.py --cfg_file cfgs/also_pretrain.yaml --detector_cfg OpenPCDet/tools/cfgs/kitti_models/pv_rcnn.yaml
    bash tools/dist_train.sh 4 --cfg_file cfgs/also_pretrain.yaml
"""
import argparse
import shutil
import sys
from pathlib import Path

import torch
from tensorboardX import SummaryWriter

from also_pcdet import pcdet_seam
from also_pcdet.config import add_config_arguments, config_from_args, config_lines, write_resolved_config
from also_pcdet.config_checks import check_config
from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.checkpoint import (find_resume_checkpoint, remove_stale_temp_files,
                                          save_atomic)
from also_pcdet.engine.distributed import all_reduce_sum, convert_sync_batchnorm, init_distributed
from also_pcdet.engine.export import export_backbone
from also_pcdet.engine.pretrained_check import detector_cfg_of, require_fit
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.run_setup import (create_logger, output_dir_for, pick_seed, seed_everything,
                                         timestamp)
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(p, 'YAML config, e.g. cfgs/also_pretrain.yaml')
    p.add_argument('--batch_size', type=int, default=None, help='per process (default OPTIMIZATION.BATCH_SIZE_PER_GPU)')
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
    p.add_argument('--local_rank', '--local-rank', type=int, default=None, help='ignored: torchrun sets LOCAL_RANK')
    p.add_argument('--max_ckpt_save_num', type=int, default=30, help='epoch checkpoints kept (at least 1)')
    p.add_argument('--merge_all_iters_to_one_epoch', action='store_true', help='not supported; refused')
    p.add_argument('--amp', action='store_true', help='float16 mixed precision (CUDA only)')
    p.add_argument('--output_root', default='output', help='where output/<cfg>/<extra_tag>/ goes')
    p.add_argument('--eval_interval', type=int, default=0, help='validate every N epochs on the val split (0 = off)')
    p.add_argument('--fresh_start', action='store_true',
                   help='start from iteration 0 even if the output folder holds only unreadable checkpoints '
                        '(they get overwritten); without it such a folder stops the run')
    p.add_argument('--dump_final_state', metavar='DIR', default=None,
                   help='debug: every process saves its final state to DIR/rank_<R>.pth (DDP replicas must agree)')
    args = p.parse_args(argv)
    for flag, lowest in (('batch_size', 1), ('epochs', 1), ('workers', 0), ('ckpt_save_interval', 1),
                         ('eval_interval', 0)):
        value = getattr(args, flag)
        if value is not None and value < lowest:
            p.error(f'--{flag} must be at least {lowest}, got {value}')
    if args.max_ckpt_save_num < 1:
        p.error('--max_ckpt_save_num must be at least 1 (the last epoch checkpoint is exported)')
    if args.merge_all_iters_to_one_epoch:
        p.error('--merge_all_iters_to_one_epoch is not supported: use --epochs and OPTIMIZATION.CKPT_SAVE_ITERS')
    provenance = []
    cfg = config_from_args(args, provenance)
    check_config(cfg)
    return args, cfg, provenance


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
    batch_size = args.batch_size if args.batch_size is not None else cfg.OPTIMIZATION.BATCH_SIZE_PER_GPU
    epochs = args.epochs if args.epochs is not None else cfg.OPTIMIZATION.NUM_EPOCHS

    out_dir = output_dir_for(args.cfg_file, args.extra_tag, args.output_root)
    ckpt_dir = out_dir / 'ckpt'
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    logger = create_logger(out_dir / f'log_train_{timestamp()}.txt', rank)
    logger.info(f'output: {out_dir}  processes: {world_size}  device: {device}  batch/process: {batch_size}')
    for key, value in vars(args).items():  # as OpenPCDet logs them, then every resolved config key
        logger.info(f'{key:16} {value}')
    for line in config_lines(cfg):
        logger.info(line)
    for line in provenance:
        logger.info(f'derived: {line}')
    if device.type == 'cpu' and torch.get_num_threads() > 1:
        logger.warning(f'training on 1 CPU thread instead of {torch.get_num_threads()}: with several threads '
                       f'spconv\'s CPU convolutions race and return wrong features')

    seed = int(all_reduce_sum([pick_seed(args.fix_random_seed) if rank == 0 else 0])[0])
    seed_everything(seed, deterministic=args.fix_random_seed)
    if rank == 0:
        save_config(args, cfg, out_dir, seed)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch_size, args.workers, training=True, seed=seed,
                                       rank=rank, world_size=world_size)
    logger.info(f'{len(dataset)} training sweeps from {dataset.root_path} ({cfg.DATA_CONFIG.DATASET})')
    val_loader = None
    if args.eval_interval:
        _, val_loader = build_dataloader(cfg.DATA_CONFIG, batch_size, args.workers, training=False, seed=seed,
                                         rank=rank, world_size=world_size)

    model = build_network(cfg.MODEL, dataset)
    if args.sync_bn:
        model = convert_sync_batchnorm(model, device)
    model.to(device)
    if args.pretrained_model:
        model.load_params_from_file(args.pretrained_model, logger=logger, to_cpu=device.type != 'cuda')
    optimizer = build_optimizer(model, cfg.OPTIMIZATION)
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)

    writer = SummaryWriter(str(out_dir / 'tensorboard')) if rank == 0 else None
    trainer = Trainer(model, optimizer, loader, cfg.OPTIMIZATION, ckpt_dir=ckpt_dir, device=device, logger=logger,
                      tb_writer=writer, rank=rank, amp=args.amp, seed=seed,
                      ckpt_save_interval=args.ckpt_save_interval, max_ckpt_save_num=args.max_ckpt_save_num,
                      val_loader=val_loader, eval_interval=args.eval_interval)
    if rank == 0:
        for stale in remove_stale_temp_files(ckpt_dir):
            logger.warning(f'removed {stale}, left by a process killed while saving')
    resume_from = args.ckpt
    if resume_from is None:
        resume_from, errors = find_resume_checkpoint(ckpt_dir)
        if errors and resume_from is None and not args.fresh_start:
            raise RuntimeError(f'{ckpt_dir} holds only unreadable checkpoints, so this run cannot resume: '
                               + '; '.join(errors) + '. Repair or move them, or pass --fresh_start to start '
                               'from iteration 0 (they will be overwritten)')
        for error in errors:
            logger.warning(f'not resuming from an unreadable checkpoint: {error}')
    if resume_from is not None:
        trainer.resume(resume_from)
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
    main()
