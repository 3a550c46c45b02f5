"""Validation pass: metrics summed over all pairs, no augmentation, the --eval_interval hook."""
import importlib.util

import numpy as np
import pytest
import torch
from easydict import EasyDict

from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import batch_to_device
from also_pcdet.engine.evaluation import evaluate
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network
from conftest import REPO, tiny_cfg
from train_cli import FAST_OVERRIDES


@pytest.fixture(scope='module')
def val_setup(synthetic_kitti):
    cfg = tiny_cfg(synthetic_kitti, *FAST_OVERRIDES[-4:], 'DATA_CONFIG.SAMPLE_INTERVAL.test', '1')  # the 6.4 m box
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=0, training=False)
    torch.manual_seed(0)
    return build_network(cfg.MODEL, dataset), loader


def test_evaluate_matches_occupancy_metrics_on_one_batch(val_setup):
    model, loader = val_setup
    assert len(loader) == 1
    model.eval()
    with torch.no_grad():
        pred, metric_dict = model(batch_to_device(next(iter(loader)), torch.device('cpu')))
    metrics = evaluate(model, loader, torch.device('cpu'))
    for key in ('occ_iou_occupied', 'occ_iou_empty', 'occ_miou', 'occ_acc', 'occ_precision', 'occ_recall', 'loss'):
        assert metrics[key] == pytest.approx(metric_dict[key], rel=1e-6, abs=1e-9), key
    mask = pred['intensity_mask']
    l1 = (pred['intensity'][mask] - pred['intensity_target'][mask]).abs().mean().item()
    assert metrics['intensity_l1'] == pytest.approx(l1, rel=1e-5)
    assert metrics['pairs'] == len(pred['occupancy_logits']) and metrics['sweeps'] == 2
    assert metrics['occ_acc_all_empty'] == pytest.approx(1 - pred['occupancy_target'].float().mean().item())


def test_evaluation_has_no_augmentation(val_setup):
    model, loader = val_setup
    first, second = (evaluate(model, loader, torch.device('cpu')) for _ in range(2))
    assert first == second
    loader.dataset.set_epoch(3)  # epochs only change training samples
    assert evaluate(model, loader, torch.device('cpu')) == first
    sample = loader.dataset[0]
    np.testing.assert_array_equal(sample['queries'], loader.dataset[0]['queries'])


class RecordingWriter:
    """Stands in for tensorboardX's SummaryWriter."""

    def __init__(self):
        self.scalars, self.figures = {}, {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_figure(self, tag, figure, step):
        self.figures[tag] = figure


def test_trainer_validate_logs_to_tensorboard(val_setup, tmp_path):
    model, loader = val_setup
    writer = RecordingWriter()
    trainer = Trainer(model, torch.optim.AdamW(model.parameters()), loader, EasyDict(), ckpt_dir=tmp_path,
                      device=torch.device('cpu'), tb_writer=writer, val_loader=loader, eval_interval=1)
    metrics = trainer.validate()
    assert writer.scalars == {f'val/{key}': value for key, value in metrics.items()}
    expected = {f'val/{key}' for key in ('occ_iou_occupied', 'occ_iou_empty', 'occ_miou', 'occ_acc', 'occ_precision', 'occ_recall', 'intensity_l1')}
    assert expected <= set(writer.scalars)
    assert len(writer.figures['val/occupancy'].axes) >= 4


def test_train_tool_has_eval_interval(synthetic_kitti):
    spec = importlib.util.spec_from_file_location('train_tool', REPO / 'tools' / 'train.py')
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    argv = ['--cfg_file', str(REPO / 'cfgs' / 'also_pretrain.yaml')]
    data = ['--set', 'DATA_CONFIG.DATA_PATH', str(synthetic_kitti)]
    assert train_tool.parse_args(argv + ['--eval_interval', '5'] + data)[0].eval_interval == 5
    assert train_tool.parse_args(argv + data)[0].eval_interval == 0


def test_mean_iou_is_alsos_confusion_matrix_mean():
    """`occ_miou` is what the official ALSO code logs as `iou`: the mean over the two classes of
    diag / (row sum + column sum - diag) of the 2x2 confusion matrix; `occ_iou_occupied` is class 1 alone."""
    from also_pcdet.models.occupancy_head import occupancy_metrics
    rng = np.random.default_rng(0)
    target = torch.from_numpy((rng.random(1000) < 0.3).astype(np.float32))
    logits = torch.from_numpy(rng.normal(size=1000).astype(np.float32)) + 2 * target - 1
    cm = np.zeros((2, 2))
    np.add.at(cm, (target.numpy().astype(int), (logits > 0).numpy().astype(int)), 1)
    per_class = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    metrics = occupancy_metrics(logits, target)
    assert metrics['occ_iou_empty'] == pytest.approx(per_class[0])
    assert metrics['occ_iou_occupied'] == pytest.approx(per_class[1])
    assert metrics['occ_miou'] == pytest.approx(per_class.mean())
    assert metrics['occ_iou_occupied'] != pytest.approx(metrics['occ_miou'])
