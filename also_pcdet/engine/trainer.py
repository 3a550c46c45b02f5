"""The training loop: steps, skipped sweeps, non-finite losses, checkpoints, progress and tensorboard."""
import logging
import math
import time
from collections import Counter

import torch
import tqdm

from .batch import batch_to_device, collate_for
from .checkpoint import (LATEST_NAME, CheckpointMismatch, checkpoint_state, load_with_model_state,
                         rotate_checkpoints, save_atomic, state_mismatch, unwrap)
from .distributed import all_reduce_sum
from .evaluation import evaluate, format_metrics
from .visualization import render_sample
from .optimization import learning_rate, set_learning_rate
from ..config import ConfigError
from ..datasets.sweep_checks import MIN_VOXELS
from ..errors import RunError
from ..models.occupancy_head import read_scalars


def grad_scaler(enabled: bool):
    """A CUDA GradScaler: `torch.amp.GradScaler('cuda')` from torch 2.3, `torch.cuda.amp.GradScaler` before."""
    if hasattr(torch.amp, 'GradScaler'):
        return torch.amp.GradScaler('cuda', enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


class Trainer:
    """Runs epochs over `loader` (whose sampler is a ResumableSampler) and owns the run's state:
    epoch, iteration, batches done in the current epoch. Only rank 0 writes files."""

    def __init__(self, model, optimizer, loader, opt_cfg, *, ckpt_dir, device, logger=None, tb_writer=None,
                 rank=0, amp=False, seed=0, ckpt_save_interval=1, max_ckpt_save_num=30, val_loader=None,
                 eval_interval=0, ckpt_save_time_interval=0, log_iterations=True):
        if amp and device.type != 'cuda':
            raise ConfigError('--use_amp (alias --amp; OPTIMIZATION.USE_AMP) needs a CUDA device (float16 autocast); '
                             'train in fp32 on the CPU')
        self.model, self.optimizer, self.loader, self.opt_cfg = model, optimizer, loader, opt_cfg
        self.ckpt_dir, self.device, self.rank, self.seed = ckpt_dir, device, rank, int(seed)
        self.logger = logger or logging.getLogger(__name__)
        self.tb = tb_writer
        self.amp = amp
        self.scaler = grad_scaler(amp)
        self.ckpt_save_interval, self.max_ckpt_save_num = ckpt_save_interval, max_ckpt_save_num
        self.ckpt_save_time_interval = ckpt_save_time_interval  # seconds between latest_model saves (0: off)
        self.log_iterations = log_iterations  # False (--use_tqdm_to_record): step values to the bar only
        self.epoch, self.it, self.batch_in_epoch = 0, 0, 0
        self.bad_sweeps, self.sweeps_read = {}, 0  # unusable sweep -> reason; sweeps read (good and bad)
        self.nonfinite_total, self.nonfinite_run = 0, 0
        self.last_saved = None
        self.val_loader, self.eval_interval = val_loader, eval_interval
        self.pending_logs = []   # tb_dicts of the steps since the last LOG_INTERVAL
        for data in (loader, val_loader):
            if data is not None:
                collate_for(data, model)

    # ----- state -----
    def state(self, **extra) -> dict:
        rng = {'torch': torch.get_rng_state()}
        if torch.cuda.is_available():
            rng['cuda'] = torch.cuda.get_rng_state_all()
        if self.amp:
            extra['scaler_state'] = self.scaler.state_dict()
        return checkpoint_state(self.model, self.optimizer, epoch=self.epoch, it=self.it,
                                batch_in_epoch=self.batch_in_epoch, seed=self.seed, rng_state=rng,
                                world_size=self.loader.sampler.world_size, total_batch_size=self.total_batch,
                                stock_input_scale=self.loader.dataset.stock_input_scale,
                                bad_sweeps=dict(self.bad_sweeps), sweeps_read=self.sweeps_read, **extra)

    @property
    def total_batch(self) -> int:
        return self.loader.batch_size * self.loader.sampler.world_size

    def save(self, path):
        if self.rank == 0:
            save_atomic(self.state(), path)
            self.logger.info(f'saved {path} (epoch {self.epoch}, iteration {self.it})')
        self.last_saved = f'{path} (iteration {self.it})'

    def resume(self, path):
        """Restore model, optimizer, counters and RNG state from a checkpoint written by `state`. A checkpoint
        of another model is a CheckpointMismatch naming it, its first misfitting keys and the ways out."""
        ckpt = load_with_model_state(path)
        mismatch = state_mismatch(unwrap(self.model).state_dict(), ckpt['model_state'])
        if mismatch:
            raise CheckpointMismatch(f'cannot resume from {path}: it does not fit the configured model: {mismatch}. '
                                     f'Start this folder over with --fresh_start (its checkpoints are moved aside), '
                                     f'or train into another folder with another --extra_tag')
        unwrap(self.model).load_state_dict(ckpt['model_state'])
        if ckpt.get('optimizer_state') is not None:
            self.optimizer.load_state_dict(ckpt['optimizer_state'])
        if self.amp and ckpt.get('scaler_state'):
            self.scaler.load_state_dict(ckpt['scaler_state'])
        self.epoch, self.it = int(ckpt['epoch']), int(ckpt['it'])
        self.batch_in_epoch = self.resumed_batch_in_epoch(ckpt, path)
        self.seed = int(ckpt.get('seed', self.seed))
        self.bad_sweeps = self.listed_bad_sweeps({str(k): str(v) for k, v in (ckpt.get('bad_sweeps') or {}).items()})
        self.sweeps_read = int(ckpt.get('sweeps_read', 0))
        rng = ckpt.get('rng_state') or {}
        if 'torch' in rng:
            torch.set_rng_state(rng['torch'])
        if 'cuda' in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng['cuda'])
        self.last_saved = f'{path} (iteration {self.it})'
        self.logger.info(f'resumed from {path}: epoch {self.epoch}, iteration {self.it}, '
                         f'{self.batch_in_epoch} batches into the next epoch, {len(self.bad_sweeps)} unusable sweeps '
                         f'known')

    def resumed_batch_in_epoch(self, ckpt: dict, path) -> int:
        """Where the epoch resumes, in this run's batches. Every process's i-th sample is the epoch order's
        (i * world_size + rank)-th, so a checkpoint `batch_in_epoch` batches of total B into an epoch has used the
        order's first batch_in_epoch * B samples, whatever the world size; with another total batch the epoch
        resumes at the last batch boundary of this run at or before that sample."""
        done, world = int(ckpt.get('batch_in_epoch', 0)), self.loader.sampler.world_size
        old_world, old_total = ckpt.get('world_size', world), ckpt.get('total_batch_size')
        if old_total is None:  # written before total_batch_size was stored: the batch is unknown
            if old_world == world:
                return done
            self.logger.warning(f'{path} was written by {old_world} processes, this run has {world}: '
                                f'restarting epoch {self.epoch + 1} from its start')
            return 0
        if (old_world, old_total) == (world, self.total_batch):
            return done
        sample = done * old_total
        resumed = sample // self.total_batch
        where = (f'continues from its sample {sample} (batch {resumed} of {self.total_batch})'
                 if resumed * self.total_batch == sample else
                 f'resumes at sample {resumed * self.total_batch}, the last batch boundary before sample {sample}: '
                 f'{sample - resumed * self.total_batch} samples are trained on twice this epoch')
        self.logger.warning(f'{path} was written with a total batch of {old_total} (world size {old_world}), this '
                            f'run trains with {self.total_batch} (world size {world}): epoch {self.epoch + 1} {where}; '
                            f'the iteration count, and the learning-rate schedule that follows it, continue from '
                            f'{int(ckpt["it"])}')
        return resumed

    def listed_bad_sweeps(self, bad_sweeps: dict) -> dict:
        """The unusable-sweep records of a checkpoint that the current split still lists: a sweep removed from
        the split since (e.g. after a MAX_BAD_FRACTION stop) is forgotten, with a warning, and no longer counts."""
        if not bad_sweeps:
            return bad_sweeps
        dataset = self.loader.dataset
        listed = {dataset.source.location(index) for index in dataset.sample_ids}
        kept = {location: reason for location, reason in bad_sweeps.items() if location in listed}
        if len(kept) < len(bad_sweeps):
            self.logger.warning(f'forgot {len(bad_sweeps) - len(kept)} of the {len(bad_sweeps)} unusable sweeps the '
                                f'checkpoint records: the split no longer lists them (MAX_BAD_FRACTION counts the '
                                f'{len(kept)} left)')
        return kept

    # ----- one step -----
    def all_ranks_agree(self, ok) -> bool:
        """Whether `ok` (a bool or a 0-d bool tensor on the device) holds on every rank; reading it is the
        trainer's one host read per step."""
        return all_reduce_sum([0.0 if bool(ok) else 1.0])[0] == 0

    def step(self, batch):
        """Forward, backward and update; returns the tb_dict (0-d tensors on the device, read by
        `log_step` every LOG_INTERVAL steps), or None when the step was skipped. The loss and the
        gradient norm are checked for non-finite values together, in one host read."""
        set_learning_rate(self.optimizer, learning_rate(self.opt_cfg, self.it, self.total_iters))
        self.optimizer.zero_grad(set_to_none=True)
        buffers = [buf.detach().clone() for buf in unwrap(self.model).buffers()]  # BatchNorm statistics
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            ret, tb_dict, _ = self.model(batch)
        loss = ret['loss']
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip = self.opt_cfg.get('GRAD_NORM_CLIP', 0) or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(unwrap(self.model).parameters(), clip)
        finite = torch.isfinite(loss) if self.amp else torch.isfinite(loss) & torch.isfinite(grad_norm)
        if not self.all_ranks_agree(finite):       # with --amp the scaler skips steps with inf gradients itself
            if self.amp:
                self.scaler.update()               # closes the unscale_ above; lowers the scale
            what = f'loss is {loss.item()}' if not torch.isfinite(loss) else f'gradient norm is {grad_norm.item()}'
            return self.skip_nonfinite(what, buffers)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        unwrap(self.model).update_global_step()  # OpenPCDet's step counter (a state_dict buffer)
        self.nonfinite_run = 0
        tb_dict.update(loss=loss.detach(), grad_norm=grad_norm.detach(), lr=self.optimizer.param_groups[0]['lr'])
        return tb_dict

    def skip_nonfinite(self, what: str, buffers: list):
        """Undo the step: drop the gradients and restore the buffers (BatchNorm running statistics) the
        forward pass updated; stop after MAX_NONFINITE_STEPS skipped steps in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buf, saved in zip(unwrap(self.model).buffers(), buffers):
                buf.copy_(saved)
        self.nonfinite_total += 1
        self.nonfinite_run += 1
        limit = self.opt_cfg.get('MAX_NONFINITE_STEPS', 10)
        self.logger.warning(f'iteration {self.it}: {what}; step skipped ({self.nonfinite_run} in a row, '
                            f'{self.nonfinite_total} in this run)')
        if self.nonfinite_run >= limit:
            kept = f'the last good checkpoint, {self.last_saved}, is kept' if self.last_saved else \
                'no checkpoint was written in this run'
            raise FloatingPointError(f'{self.nonfinite_run} non-finite steps in a row (limit OPTIMIZATION.'
                                     f'MAX_NONFINITE_STEPS={limit}); stopping: {kept}. Lower the LR, enable '
                                     f'GRAD_NORM_CLIP or check the data.')
        return None

    # ----- skipped sweeps -----
    def note_skipped(self, skipped, used: int):
        """Count a batch's `used` sweeps and the `skipped` (location, reason) on the way; warn once per unusable
        sweep. More unusable sweeps than MAX_BAD_FRACTION of this process's share stops the run (0.0: the first)."""
        self.sweeps_read += used + len(skipped)
        for location, reason in skipped:
            if location not in self.bad_sweeps:
                self.bad_sweeps[location] = reason
                self.logger.warning(f'skipped sweep {location}: {reason}')
        limit = self.loader.dataset.dataset_cfg.get('MAX_BAD_FRACTION', 0.05)
        share = len(self.loader.dataset) / self.loader.sampler.world_size
        if len(self.bad_sweeps) > limit * share:
            location, reason = next(iter(self.bad_sweeps.items()))
            raise RunError(f'{len(self.bad_sweeps)} unusable sweeps of {self.sweeps_read} read (~{share:.0f} '
                           f'per epoch on this process): more than DATA_CONFIG.MAX_BAD_FRACTION={limit} '
                           f'allows; first: {location}: {reason}')

    # ----- epochs -----
    def fit(self, total_epochs: int, save_every_iters: int = 0, schedule_epochs: int = None):
        """Train until `total_epochs` epochs are done, starting from the current (possibly resumed) state. The LR
        schedule spans `schedule_epochs` (default `total_epochs`): a run fit epoch by epoch passes its full length."""
        self.total_epochs = total_epochs
        self.total_iters = (schedule_epochs or total_epochs) * math.ceil(self.loader.sampler.per_rank
                                                                         / self.loader.batch_size)
        self._run_epochs(total_epochs, save_every_iters)  # the caller's torch threads (spconv_compat: exact)

    def _run_epochs(self, total_epochs: int, save_every_iters: int):
        epochs = tqdm.trange(self.epoch, total_epochs, desc='epochs', disable=self.rank != 0,
                             initial=self.epoch, total=total_epochs, dynamic_ncols=True)
        for _ in epochs:
            self.train_one_epoch(save_every_iters)
            self.epoch += 1
            self.batch_in_epoch = 0
            if self.epoch % self.ckpt_save_interval == 0 or self.epoch == total_epochs:
                self.save(self.ckpt_dir / f'checkpoint_epoch_{self.epoch}.pth')
                if self.rank == 0:
                    rotate_checkpoints(self.ckpt_dir, self.max_ckpt_save_num)
            if self.val_loader is not None and self.eval_interval and self.epoch % self.eval_interval == 0:
                self.validate()

    def validate(self) -> dict:
        """Metrics on `val_loader` (all ranks), logged and written to tensorboard under val/ (a multi-source run's
        per source under val/<source>/ too) with a picture of the first val sweep (rank 0)."""
        metrics = evaluate(self.model, self.val_loader, self.device)
        if self.rank == 0:
            self.logger.info(f'validation after epoch {self.epoch} (iteration {self.it}):\n{format_metrics(metrics)}')
            if self.tb is not None:
                for key, value in metrics.items():
                    self.tb.add_scalar(f'val/{key}', value, self.it)
                self.tb.add_figure('val/occupancy', render_sample(self.model, self.val_loader.dataset[0], self.device),
                                   self.it)
        return metrics

    def train_one_epoch(self, save_every_iters: int):
        sampler, dataset = self.loader.sampler, self.loader.dataset
        sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.loader.batch_size)
        dataset.set_epoch(self.epoch)
        self.model.train()
        bar = tqdm.tqdm(self.loader, desc=f'epoch {self.epoch + 1}', leave=False, disable=self.rank != 0,
                        dynamic_ncols=True)
        bad_before = len(self.bad_sweeps)
        skipped_by_source = Counter()  # multi-source runs
        next_timed_save = time.monotonic() + self.ckpt_save_time_interval  # as OpenPCDet: timed from the epoch start
        for batch in bar:
            self.note_skipped(batch['skipped'], batch['batch_size'])
            skipped_by_source.update(batch.get('skipped_source', ()))
            voxels = len(batch['voxel_coords'])
            if self.all_ranks_agree(voxels >= MIN_VOXELS):
                tb_dict = self.step(batch_to_device(batch, self.device))
            else:  # unreachable through check_sweep; BatchNorm cannot train on a handful of voxels
                self.logger.warning(f'iteration {self.it}: a batch with {voxels} voxels (at least {MIN_VOXELS} on '
                                    f'every process); step skipped')
                tb_dict = None
            self.it += 1
            self.batch_in_epoch += 1
            if tb_dict is not None:
                self.log_step(tb_dict, bar)
            timed = self.ckpt_save_time_interval and time.monotonic() >= next_timed_save
            if (timed or save_every_iters and self.it % save_every_iters == 0) and not self.nonfinite_run:
                self.save(self.ckpt_dir / LATEST_NAME)
                next_timed_save = time.monotonic() + self.ckpt_save_time_interval
        bad = int(all_reduce_sum([len(self.bad_sweeps) - bad_before])[0])
        self.log_sources(skipped_by_source)
        if self.rank == 0:
            self.logger.info(f'epoch {self.epoch + 1}: {self.it} iterations in all, {bad} newly skipped sweeps, '
                             f'{self.nonfinite_total} non-finite steps skipped')
            if self.tb is not None:
                self.tb.add_scalar('data/skipped_sweeps', len(self.bad_sweeps), self.it)
                self.tb.add_scalar('train/nonfinite_steps', self.nonfinite_total, self.it)

    def log_sources(self, skipped: Counter):
        """Multi-source runs (DATA_CONFIG.SOURCES): the sweeps drawn from each source in all epochs so far (the
        sampler's record, all ranks; a skipped sweep is replaced by one of its source) and the unusable ones
        skipped this epoch, to the log and to tensorboard data/sweeps_drawn/<source>, data/sweeps_skipped/<source>."""
        names = getattr(self.loader.dataset, 'source_names', None)
        if not names:
            return
        skipped = [int(count) for count in all_reduce_sum([skipped[name] for name in names])]
        drawn = self.loader.sampler.drawn_per_source(self.epoch + 1)
        if self.rank != 0:
            return
        self.logger.info(f'epoch {self.epoch + 1} sources: ' + ', '.join(
            f'{name} {count} sweeps drawn in all ({bad} skipped this epoch)'
            for name, count, bad in zip(names, drawn, skipped)))
        if self.tb is not None:
            for name, count, bad in zip(names, drawn, skipped):
                self.tb.add_scalar(f'data/sweeps_drawn/{name}', count, self.it)
                self.tb.add_scalar(f'data/sweeps_skipped/{name}', bad, self.it)

    def log_step(self, tb_dict: dict, bar):
        """Keep the step's values (device tensors); every LOG_INTERVAL steps read their means over the
        interval in one transfer and write them to the progress bar, tensorboard and the log."""
        if self.rank != 0:
            return
        self.pending_logs.append(tb_dict)
        if self.it % self.opt_cfg.get('LOG_INTERVAL', 50):
            return
        steps, self.pending_logs = self.pending_logs, []
        means = {key: torch.stack([torch.as_tensor(step[key]).float() for step in steps]).mean()
                 if torch.is_tensor(value) else sum(step[key] for step in steps) / len(steps)
                 for key, value in steps[-1].items() if key != 'lr'}
        values = dict(read_scalars(means), lr=steps[-1]['lr'])
        bar.set_postfix(loss=f'{values["loss"]:.4f}', acc=f'{values["occ_acc"]:.3f}', it=self.it)
        if self.tb is not None:
            for key, value in values.items():
                group = 'meta_data' if key == 'lr' else 'train'
                self.tb.add_scalar(f'{group}/{"learning_rate" if key == "lr" else key}', value, self.it)
        if self.log_iterations:
            self.logger.info(f'it {self.it}: ' + ', '.join(f'{k}={v:.4g}' for k, v in values.items())
                             + (f' (means over {len(steps)} steps)' if len(steps) > 1 else ''))
