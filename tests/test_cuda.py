"""On a CUDA machine only (skipped elsewhere; benchmarks/gpu_check.sh runs them): the training step on the
GPU agrees with the CPU, runs under --amp, and the head's loss and metrics need no host synchronisation."""
import pytest
import torch

from also_pcdet.datasets import build_dataloader
from also_pcdet.engine.batch import batch_to_device
from also_pcdet.engine.optimization import build_optimizer
from also_pcdet.engine.trainer import Trainer
from also_pcdet.models import build_network
from also_pcdet.models.occupancy_head import build_decoder, decode_pairs
from conftest import tiny_cfg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
CUDA = torch.device('cuda')


@pytest.fixture
def setup(synthetic_kitti):
    cfg = tiny_cfg(synthetic_kitti)
    dataset, loader = build_dataloader(cfg.DATA_CONFIG, batch_size=2, workers=0, training=True, seed=0)
    torch.manual_seed(0)
    return cfg, dataset, loader, build_network(cfg.MODEL, dataset)


def test_forward_on_cuda_matches_the_cpu(setup, one_thread):
    cfg, dataset, loader, model = setup
    batch = next(iter(loader))
    model.train()
    with torch.no_grad():
        _, cpu, _ = model(batch_to_device(batch, torch.device('cpu')))
        _, gpu, _ = model.to(CUDA)(batch_to_device(batch, CUDA))
    for key in ('loss_occupancy', 'loss_intensity', 'occ_acc'):
        assert float(gpu[key]) == pytest.approx(float(cpu[key]), rel=1e-2, abs=1e-2), key   # cuDNN uses TF32


@pytest.mark.parametrize('amp', [False, True])
def test_trainer_steps_on_cuda(setup, amp):
    cfg, dataset, loader, model = setup
    model.to(CUDA)
    trainer = Trainer(model, build_optimizer(model, cfg.OPTIMIZATION), loader, cfg.OPTIMIZATION, ckpt_dir=None,
                      device=CUDA, amp=amp)
    trainer.total_iters = 10
    batch = next(iter(loader))
    before = [p.detach().clone() for p in model.parameters()]
    tb_dict = trainer.step(batch_to_device(batch, CUDA))
    assert tb_dict is not None and torch.isfinite(tb_dict['loss']) and tb_dict['loss'].device.type == 'cuda'
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_loss_and_metrics_need_no_host_sync(setup):
    cfg, dataset, loader, model = setup
    model.to(CUDA).train()
    batch = batch_to_device(next(iter(loader)), CUDA)
    model.dense_head(model.encode(batch))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        loss, tb_dict, _ = model.dense_head.get_loss()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(loss) and all(v.device.type == 'cuda' for v in tb_dict.values() if torch.is_tensor(v))


@pytest.mark.parametrize('cells', ['all', 'referenced'])
def test_split_decoder_on_cuda(cells):
    torch.manual_seed(0)
    decoder = build_decoder(19, 24, 3).to(CUDA)
    latents, pair_cell = torch.randn(500, 16, device=CUDA), torch.randint(0, 200, (3000,), device=CUDA)
    relative = torch.randn(3000, 3, device=CUDA)
    expected = decoder(torch.cat([latents[pair_cell], relative], 1))
    torch.testing.assert_close(decode_pairs(decoder, latents, pair_cell, relative, cells=cells), expected,
                               rtol=1e-4, atol=1e-5)
