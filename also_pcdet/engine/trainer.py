"""The training loop: steps, skipped sweeps, non-finite losses, checkpoints, progress and tensorboard."""
import logging
import math

import torch
import tqdm

from .batch import batch_to_device, collate_for
from .checkpoint import LATEST_NAME, checkpoint_state, load_checkpoint, rotate_checkpoints, save_atomic, unwrap
from .distributed import all_reduce_sum
from .evaluation import evaluate, format_metrics
from .visualization import render_sample
from .optimization import learning_rate, set_learning_rate
from ..datasets.sweep_checks import MIN_VOXELS
from ..models.occupancy_head import read_scalars
from ..spconv_compat import single_threaded_on_cpu


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
                 eval_interval=0):
        if amp and device.type != 'cuda':
            raise ValueError('--amp needs a CUDA device (float16 autocast); train in fp32 on the CPU')
        self.model, self.optimizer, self.loader, self.opt_cfg = model, optimizer, loader, opt_cfg
        self.ckpt_dir, self.device, self.rank, self.seed = ckpt_dir, device, rank, int(seed)
        self.logger = logger or logging.getLogger(__name__)
        self.tb = tb_writer
        self.amp = amp
        self.scaler = grad_scaler(amp)
        self.ckpt_save_interval, self.max_ckpt_save_num = ckpt_save_interval, max_ckpt_save_num
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
                                world_size=self.loader.sampler.world_size,
                                stock_input_scale=self.loader.dataset.stock_input_scale,
                                bad_sweeps=dict(self.bad_sweeps), sweeps_read=self.sweeps_read, **extra)

    def save(self, path):
        if self.rank == 0:
            save_atomic(self.state(), path)
            self.logger.info(f'saved {path} (epoch {self.epoch}, iteration {self.it})')
        self.last_saved = f'{path} (iteration {self.it})'

    def resume(self, path):
        """Restore model, optimizer, counters and RNG state from a checkpoint written by `state`."""
        ckpt = load_checkpoint(path, map_location='cpu')
        unwrap(self.model).load_state_dict(ckpt['model_state'])
        if ckpt.get('optimizer_state') is not None:
            self.optimizer.load_state_dict(ckpt['optimizer_state'])
        if self.amp and ckpt.get('scaler_state'):
            self.scaler.load_state_dict(ckpt['scaler_state'])
        self.epoch, self.it = int(ckpt['epoch']), int(ckpt['it'])
        self.batch_in_epoch = int(ckpt.get('batch_in_epoch', 0))
        if ckpt.get('world_size', self.loader.sampler.world_size) != self.loader.sampler.world_size:
            self.logger.warning(f'{path} was written by {ckpt["world_size"]} processes, this run has '
                                f'{self.loader.sampler.world_size}: restarting epoch {self.epoch + 1} from its start')
            self.batch_in_epoch = 0
        self.seed = int(ckpt.get('seed', self.seed))
        self.bad_sweeps = {str(k): str(v) for k, v in (ckpt.get('bad_sweeps') or {}).items()}
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
            raise RuntimeError(f'{len(self.bad_sweeps)} unusable sweeps of {self.sweeps_read} read (~{share:.0f} '
                               f'per epoch on this process): more than DATA_CONFIG.MAX_BAD_FRACTION={limit} '
                               f'allows; first: {location}: {reason}')

    # ----- epochs -----
    def fit(self, total_epochs: int, save_every_iters: int = 0):
        """Train until `total_epochs` epochs are done, starting from the current (possibly resumed) state."""
        self.total_epochs = total_epochs
        self.total_iters = total_epochs * math.ceil(self.loader.sampler.per_rank / self.loader.batch_size)
        with single_threaded_on_cpu(self.device):
            self._run_epochs(total_epochs, save_every_iters)

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
        """Metrics on `val_loader` (all ranks), logged and written to tensorboard under val/ with a
        picture of the first val sweep (rank 0)."""
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
        for batch in bar:
            self.note_skipped(batch['skipped'], batch['batch_size'])
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
            if save_every_iters and self.it % save_every_iters == 0 and not self.nonfinite_run:
                self.save(self.ckpt_dir / LATEST_NAME)
        bad = int(all_reduce_sum([len(self.bad_sweeps) - bad_before])[0])
        if self.rank == 0:
            self.logger.info(f'epoch {self.epoch + 1}: {self.it} iterations in all, {bad} newly skipped sweeps, '
                             f'{self.nonfinite_total} non-finite steps skipped')
            if self.tb is not None:
                self.tb.add_scalar('data/skipped_sweeps', len(self.bad_sweeps), self.it)
                self.tb.add_scalar('train/nonfinite_steps', self.nonfinite_total, self.it)

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
        self.logger.info(f'it {self.it}: ' + ', '.join(f'{k}={v:.4g}' for k, v in values.items())
                         + (f' (means over {len(steps)} steps)' if len(steps) > 1 else ''))
