"""Faster inference layers with the same results: batch norms folded into their convolutions
(maskllp.backbones.batch_norms_folded: the same outputs, the original layers back afterwards,
training-mode modules left alone) and the strided 2x2 max pool (MaxPool2x2)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

from maskllp.backbones import _conv_bn_pairs, batch_norms_folded


def _randomise_batch_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters away from the identity, so folding is not trivial."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return module.eval()


def _small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4))


def test_a_folded_sequence_computes_the_same_and_is_restored_afterwards():
    net = _randomise_batch_norms(_small_net())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    layers = list(net)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = net(x)
        with batch_norms_folded(net):
            assert [type(m) for m in net] == [nn.Conv2d, nn.Identity, nn.ReLU, nn.Conv2d, nn.Identity]
            folded = net(x)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-6)
    assert list(net) == layers  # the very same module objects
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_every_conv_bn_pair_of_a_resnet_is_found_and_folded_exactly():
    import torchvision

    torch.manual_seed(0)
    net = _randomise_batch_norms(torchvision.models.resnet18(weights=None))
    # stem 1 + 8 basic blocks x 2 + 3 downsample branches
    assert len(_conv_bn_pairs(net)) == 20
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
        with batch_norms_folded(net):
            assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
            folded = net(x)
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 20


def test_training_mode_and_errors_leave_the_layers_as_they_were():
    net = _randomise_batch_norms(_small_net()).train()
    layers = list(net)
    with batch_norms_folded(net):  # batch statistics: nothing can be folded
        assert list(net) == layers
    net.eval()
    with pytest.raises(RuntimeError, match="inside"), batch_norms_folded(net, None):
        assert isinstance(net[1], nn.Identity)
        raise RuntimeError("inside")
    assert list(net) == layers


def test_stage1_detection_is_the_same_with_folded_batch_norms(ihc_rgb, monkeypatch):
    """The U-Net and the patch encoder of the default measurement classifier, both with non-trivial
    batch norms: the same cells, positions and tumour probabilities (fp32)."""
    import maskllp.detection.model as model_module
    from maskllp.config.detection import ClassifierConfig, DetectorConfig, MaskConfig, TilingConfig
    from maskllp.detection.model import DetectorModel, Stage1Model, build_classifier, build_unet
    from maskllp.io.grid import ArrayImage

    torch.manual_seed(0)
    det_cfg = DetectorConfig(base_channels=4, depth=2)
    cls_cfg = ClassifierConfig(patch_features=True)
    detector = DetectorModel(_randomise_batch_norms(build_unet(det_cfg), 1), det_cfg, 0.5, 0.0, 3.0)
    classifier = _randomise_batch_norms(build_classifier(cls_cfg), 2)
    assert len(_conv_bn_pairs(classifier)) == 4  # the patch encoder's four blocks
    model = Stage1Model(detector, classifier, cls_cfg, MaskConfig(), TilingConfig(tile=64))
    image = np.ascontiguousarray(ihc_rgb[:160, :160])
    heat = detector.heatmap(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    detector.peak_threshold = float(np.quantile(heat, 0.99))
    real = model_module.batch_norms_folded

    @contextlib.contextmanager
    def checked(*modules):
        with real(*modules):  # detect folds both networks: no batch norm is left inside
            nets = (detector.net, classifier)
            assert not any(isinstance(m, nn.BatchNorm2d) for n in nets for m in n.modules())
            yield

    monkeypatch.setattr(model_module, "batch_norms_folded", checked)
    folded = model.detect(ArrayImage(image, 0.5))
    monkeypatch.setattr(model_module, "batch_norms_folded", lambda *m: contextlib.nullcontext())
    plain = model.detect(ArrayImage(image, 0.5))
    assert len(plain) > 5 and len(folded) == len(plain)
    np.testing.assert_allclose(folded.yx, plain.yx, atol=1e-4)
    np.testing.assert_allclose(folded.tumour_score, plain.tumour_score, atol=1e-5)


def test_the_strided_max_pool_equals_the_library_kernel_and_trains_through_it():
    from maskllp.backbones import MaxPool2x2

    pool, reference = MaxPool2x2(), nn.MaxPool2d(2)
    for shape in [(3, 4, 8, 8), (2, 16, 7, 9), (1, 1, 2, 2)]:
        x = torch.randn(shape)
        x[0, 0, :2, :2] = 1.0  # a tie
        for layout in (torch.contiguous_format, torch.channels_last):
            y = x.contiguous(memory_format=layout)
            with torch.no_grad():
                assert torch.equal(pool(y), reference(y))
            assert torch.equal(pool(y.to(torch.bfloat16)), reference(y.to(torch.bfloat16)))
    x = torch.randn(2, 3, 6, 6, requires_grad=True)  # training: the library kernel and its gradient
    pool(x).sum().backward()
    assert x.grad is not None and int(x.grad.sum()) == 2 * 3 * 3 * 3
