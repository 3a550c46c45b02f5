"""benchmarks/learning_curve.py on a few iterations: evaluated before training and after each epoch on every val
sweep, and the trivial predictor's values equal to "all pairs empty" counted from the targets themselves."""
import math
import sys

import pytest
import torch

from conftest import REPO, tiny_cfg

sys.path.insert(0, str(REPO / 'benchmarks'))
import learning_curve  # noqa: E402
from also_pcdet.engine.batch import batch_to_device  # noqa: E402


def empty_share(model, loader) -> tuple:
    """(pairs, share of pairs whose occupancy target is empty) over `loader`, from the head's targets."""
    model.eval()
    pairs = empty = 0
    with torch.no_grad():
        for batch in loader:
            target = model(batch_to_device(batch, 'cpu'))[0]['occupancy_target']
            pairs, empty = pairs + target.numel(), empty + int((target < 0.5).sum())
    return pairs, empty / pairs


@pytest.mark.slow
def test_learning_curve_rows_and_trivial_predictor(synthetic_kitti, tmp_path, one_thread):
    cfg = tiny_cfg(synthetic_kitti, 'DATA_CONFIG.QUERIES.NUM_QUERIES', '512', 'DATA_CONFIG.SAMPLE_INTERVAL.train', '2',
                   'OPTIMIZATION.LR_SCHEDULE', 'cosine')
    result = learning_curve.run_curve(cfg, tmp_path, epochs=2)
    rows, trivial = result['rows'], result['trivial']
    assert result['train_sweeps'] == 4 and result['val_sweeps'] == 2    # SAMPLE_INTERVAL.test forced to 1
    assert [row['iteration'] for row in rows] == [0, 2, 4]              # batch 2: 2 iterations per epoch
    assert rows[0]['train_seconds'] < rows[1]['train_seconds'] < rows[2]['train_seconds']
    assert result['s_per_iteration'] > 0 and (tmp_path / 'ckpt' / 'checkpoint_epoch_2.pth').is_file()
    assert rows[0]['loss'] != rows[2]['loss']                           # the weights moved between evaluations
    lr = cfg.OPTIMIZATION.LR   # the cosine spans both epochs (4 steps), although the curve fits one epoch at a time
    assert [row['lr'] for row in rows[1:]] == pytest.approx([lr * (1 + math.cos(math.pi * s / 4)) / 2 for s in (1, 3)])

    from also_pcdet.datasets import build_dataloader
    from also_pcdet.models import build_network
    val_set, val_loader = build_dataloader(cfg.DATA_CONFIG, 2, 0, training=False)
    pairs, empty = empty_share(build_network(cfg.MODEL, val_set), val_loader)
    assert all(row['pairs'] == pairs for row in rows) and trivial['pairs'] == pairs   # the same pairs for all
    assert trivial['occ_precision'] == trivial['occ_recall'] == trivial['occ_iou_occupied'] == 0
    assert trivial['occ_acc'] == pytest.approx(empty) and trivial['occ_iou_empty'] == pytest.approx(empty)
    assert all(row['occ_acc_all_empty'] == pytest.approx(empty) for row in rows)   # evaluate's own floor
    assert trivial['occ_miou'] == pytest.approx(empty / 2)

    table = learning_curve.markdown(result).splitlines()
    assert len(table) == 2 + 3 + 1 and table[-1].startswith('| trivial ("all empty") | ')
    learning_curve.plot(result, tmp_path / 'curve.png', 'test')
    assert (tmp_path / 'curve.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_learning_curve_accuracy_by_query_kind(synthetic_kitti, one_thread):
    """The kinds read from the pair labels are the query generator's own, and the per-kind counts of an evaluation
    add up to its pairs and its accuracy."""
    import numpy as np
    from also_pcdet.datasets import build_dataloader
    from also_pcdet.datasets.queries import sample_queries
    from also_pcdet.engine.evaluation import evaluate
    from also_pcdet.models import build_network

    rng = np.random.default_rng(0)
    queries = sample_queries(rng.uniform(-20, 20, (500, 3)), rng.random(500), np.zeros(3), 300, 0.1, rng)
    kinds = learning_curve.pair_kinds(torch.as_tensor(queries['occupancy']),
                                      torch.as_tensor(queries['intensity_mask']) > 0.5)
    assert kinds.tolist() == queries['kind'].tolist()

    cfg = tiny_cfg(synthetic_kitti, 'DATA_CONFIG.QUERIES.NUM_QUERIES', '512')
    val_set, val_loader = build_dataloader(cfg.DATA_CONFIG, 2, 0, training=False)
    torch.manual_seed(0)
    model = build_network(cfg.MODEL, val_set)
    with learning_curve.KindAccuracy(model.dense_head) as counter:
        metrics = evaluate(model, val_loader, 'cpu')
    assert counter.total.sum() == metrics['pairs'] and counter.total.min() > 0
    assert float(counter.correct.sum() / counter.total.sum()) == pytest.approx(metrics['occ_acc'])
    by_kind = counter.metrics()
    assert set(by_kind) == set(learning_curve.KINDS) and all(0 <= v <= 1 for v in by_kind.values())
