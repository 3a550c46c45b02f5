"""The occupancy head's fast paths give what the plain definitions give: the decoder with its first
layer split per BEV cell, the device-side metrics and the branch-free masked L1."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from easydict import EasyDict

from also_pcdet.models.column_neighbours import column_neighbours
from also_pcdet.models.occupancy_head import (AlsoOccupancyHead, build_decoder, decode_pairs,
                                              metrics_from_counts, occupancy_counts, occupancy_metrics,
                                              read_scalars)

LATENT = 16
HEAD_CFG = EasyDict(LATENT_SIZE=LATENT, RADIUS=1.0, MAX_NEIGHBOURS=32, DECODER_HIDDEN=24, DECODER_LAYERS=3,
                    LOSS_WEIGHTS=EasyDict(OCCUPANCY=1.0, INTENSITY=1.0))


def naive_decode(decoder, cell_latents, pair_cell, relative):
    """The definition: every (query, latent) pair concatenated and decoded on its own."""
    return decoder(torch.cat([cell_latents[pair_cell], relative], dim=1))


@pytest.mark.parametrize('cells', ['auto', 'all', 'referenced'])
@pytest.mark.parametrize('num_cells,num_pairs', [(50, 400), (400, 50), (64, 64), (300, 1)])
def test_split_decoder_equals_the_concatenated_decoder(num_cells, num_pairs, cells):
    """Both ways (every cell of the map, or only the referenced ones), with repeated and unused cells:
    same outputs and same gradients for the weights and the latents."""
    torch.manual_seed(0)
    decoder = build_decoder(LATENT + 3, 24, 3).double()
    latents = torch.randn(num_cells, LATENT, dtype=torch.float64)
    pair_cell = torch.randint(0, num_cells // 3 + 1, (num_pairs,))   # a third of the cells, many repeated
    relative = torch.randn(num_pairs, 3, dtype=torch.float64)
    outputs, grads = [], []
    for decode in (naive_decode, lambda *args: decode_pairs(*args, cells=cells)):
        decoder.zero_grad()
        leaf = latents.clone().requires_grad_()
        out = decode(decoder, leaf, pair_cell, relative)
        (out * torch.linspace(-1, 2, out.numel(), dtype=torch.float64).reshape(out.shape)).sum().backward()
        outputs.append(out.detach())
        grads.append([leaf.grad] + [p.grad.clone() for p in decoder.parameters()])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-12)
    for fast, plain in zip(grads[1], grads[0]):
        torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)
    assert outputs[0].abs().max() > 1e-3    # not trivially zero


def make_head():
    torch.manual_seed(1)
    return AlsoOccupancyHead(HEAD_CFG, input_channels=8, num_class=1, class_names=[], grid_size=[64, 80, 40],
                             point_cloud_range=[0, -8, -3, 12.8, 8, 1], voxel_size=[0.2, 0.2, 0.1]).double()


def test_head_keeps_its_state_dict_and_matches_the_plain_forward():
    """Checkpoints keep loading: the same keys and shapes as the concatenating decoder; the head's
    forward equals decoding every pair of its own column search with the plain decoder."""
    head = make_head()
    expected = {'latent_proj.weight': (LATENT, 8, 1, 1), 'latent_proj.bias': (LATENT,),
                'decoder.0.weight': (24, LATENT + 3), 'decoder.0.bias': (24,), 'decoder.2.weight': (24, 24),
                'decoder.2.bias': (24,), 'decoder.4.weight': (24, 24), 'decoder.4.bias': (24,),
                'decoder.5.weight': (2, 24), 'decoder.5.bias': (2,)}
    assert {key: tuple(v.shape) for key, v in head.state_dict().items()} == expected
    rng = np.random.default_rng(0)
    queries = np.concatenate([rng.integers(0, 2, (300, 1)), rng.uniform([-0.5, -8.5, -3], [13.3, 8.5, 1], (300, 3))], 1)
    batch = {'spatial_features_2d': torch.randn(2, 8, 10, 8, dtype=torch.float64),
             'queries': torch.as_tensor(queries), 'query_occupancy': torch.as_tensor(rng.integers(0, 2, 300)).double(),
             'query_intensity': torch.as_tensor(rng.uniform(0, 1, 300)),
             'query_intensity_mask': torch.as_tensor(rng.integers(0, 2, 300)).double()}
    head(batch)
    ret = head.forward_ret_dict
    flat = head.latent_proj(batch['spatial_features_2d']).permute(0, 2, 3, 1).reshape(-1, LATENT)
    assert len(ret['query_index']) > len(flat) > 0     # both branches are exercised by the unit test above
    q_index, cell, centres = column_neighbours(batch['queries'][:, 1:3], batch['queries'][:, 0], [0.0, -8.0],
                                               head.cell_size((10, 8)), (10, 8), 1.0, 32)
    relative = batch['queries'][q_index, 1:4] - F.pad(centres, (0, 1))
    plain = naive_decode(head.decoder, flat, cell, relative)
    torch.testing.assert_close(ret['occupancy_logits'], plain[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret['intensity'], plain[:, 1], rtol=1e-12, atol=1e-12)


def test_loss_and_metrics_match_their_definitions():
    head = make_head()
    rng = np.random.default_rng(2)
    logits = torch.as_tensor(rng.normal(size=500))
    target = torch.as_tensor(rng.integers(0, 2, 500)).double()
    intensity, intensity_target = torch.as_tensor(rng.normal(size=500)), torch.as_tensor(rng.uniform(0, 1, 500))
    for mask in (torch.as_tensor(rng.integers(0, 2, 500)) > 0, torch.zeros(500, dtype=torch.bool)):
        head.forward_ret_dict = {'occupancy_logits': logits, 'occupancy_target': target, 'intensity': intensity,
                                 'intensity_target': intensity_target, 'intensity_mask': mask, 'num_queries': 100}
        loss, tb_dict, _ = head.get_loss()
        l1 = F.l1_loss(intensity[mask], intensity_target[mask]) if mask.any() else torch.tensor(0.0)
        torch.testing.assert_close(tb_dict['loss_intensity'], l1.double(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, target) + l1.double())
    # metrics: device tensors, equal to counting by hand; numbers and tensors give the same values
    pred, truth = logits.numpy() > 0, target.numpy() > 0.5
    tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
    tn = 500 - tp - fp - fn
    counts = occupancy_counts(logits, target)
    assert all(torch.is_tensor(v) for v in counts.values())
    assert {k: int(v) for k, v in counts.items()} == {'tp': tp, 'fp': fp, 'fn': fn, 'tn': tn}
    on_device = read_scalars(occupancy_metrics(logits, target))
    on_host = metrics_from_counts({'tp': tp, 'fp': fp, 'fn': fn, 'tn': tn})
    iou_occupied, iou_empty = tp / (tp + fp + fn), tn / (tn + fp + fn)
    assert on_host == pytest.approx({'occ_iou_occupied': iou_occupied, 'occ_iou_empty': iou_empty,
                                     'occ_miou': (iou_occupied + iou_empty) / 2, 'occ_acc': (tp + tn) / 500,
                                     'occ_precision': tp / (tp + fp), 'occ_recall': tp / (tp + fn)})
    assert on_device == pytest.approx(on_host, rel=1e-6)
    assert read_scalars(tb_dict) == pytest.approx(dict(on_host, loss_occupancy=float(tb_dict['loss_occupancy']),
                                                       loss_intensity=0.0, pairs_per_query=5.0), rel=1e-6)
