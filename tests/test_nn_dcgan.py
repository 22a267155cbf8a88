"""DCGAN generator / critic and the WGAN-GP gradient penalty (pure torch, tiny sizes)."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from rnapaint.nn.dcgan import DCGANCritic, DCGANGenerator, gradient_penalty, init_dcgan_weights

NORMS = ["layer", "spectral", None]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_generator_shapes_and_range(size, upsample):
    torch.manual_seed(0)
    g = DCGANGenerator(latent_dim=16, image_size=size, width=4, upsample=upsample)
    x = g(torch.randn(3, 16) * 5)
    assert x.shape == (3, 3, size, size)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    c = DCGANCritic(image_size=size, width=4)
    assert c(x).shape == (3,)


@pytest.mark.parametrize("size", [48, 1024, 16])
def test_bad_image_size_raises(size):
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(latent_dim=8, image_size=size, width=2)
    with pytest.raises(ValueError, match="power of two"):
        DCGANCritic(image_size=size, width=2)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="upsample"):
        DCGANGenerator(8, 32, 2, upsample="bilinear")
    with pytest.raises(ValueError, match="norm"):
        DCGANCritic(32, 2, norm="batch")
    with pytest.raises(ValueError, match="z must have shape"):
        DCGANGenerator(8, 32, 2)(torch.randn(2, 9))


def test_max_channels_caps_every_level():
    g = DCGANGenerator(latent_dim=8, image_size=64, width=4, max_channels=8)
    c = DCGANCritic(image_size=64, width=4, max_channels=8)
    widths = [m.out_channels for m in [*g.modules(), *c.modules()] if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert max(widths) == 8
    assert g(torch.randn(2, 8)).shape == (2, 3, 64, 64) and c(torch.randn(2, 3, 64, 64)).shape == (2,)


def test_published_parameter_counts():
    """RNA-GAN's configuration: 2048-d input, 256 px, width 64, transposed convolutions (≈112M G, ≈45M D)."""
    k = 16  # 4 × 4 kernels
    # Generator: 2048 → (2048, 4, 4) → 1024 → 512 → 256 → 128 → 64 → 3 channels; BN after all but the last.
    chans = [2048, 1024, 512, 256, 128, 64]
    g_expected = 2048 * chans[0] * k + 2 * chans[0]  # first ConvT (no bias) + BN
    g_expected += sum(a * b * k + 2 * b for a, b in itertools.pairwise(chans))
    g_expected += 64 * 3 * k + 3  # last ConvT with bias
    # Critic: 3 → 64 (with bias) → 128 → ... → 2048 (no bias, GroupNorm affine) → 1.
    chans = [64, 128, 256, 512, 1024, 2048]
    d_expected = 3 * 64 * k + 64
    d_expected += sum(a * b * k + 2 * b for a, b in itertools.pairwise(chans))
    d_expected += 2048 * k

    with torch.device("meta"):  # no memory allocated
        g = DCGANGenerator(latent_dim=2048, image_size=256, width=64, upsample="transpose")
        c = DCGANCritic(image_size=256, width=64, norm="layer")
    n_g, n_c = _n_params(g), _n_params(c)
    print(f"generator {n_g:,} (analytic {g_expected:,}); critic {n_c:,} (analytic {d_expected:,})")
    assert abs(n_g - g_expected) / g_expected < 0.02
    assert abs(n_c - d_expected) / d_expected < 0.02
    # …and the counts reported for RNA-GAN's torchgan models.
    assert abs(n_g - 112e6) / 112e6 < 0.02 and abs(n_c - 45e6) / 45e6 < 0.02


def test_upsample_modes_use_the_right_layers():
    tr = DCGANGenerator(latent_dim=8, image_size=32, width=2, upsample="transpose")
    rs = DCGANGenerator(latent_dim=8, image_size=32, width=2, upsample="resize")
    assert any(isinstance(m, nn.ConvTranspose2d) for m in tr.modules())
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rs.modules())
    assert any(isinstance(m, nn.Upsample) for m in rs.modules())


@pytest.mark.parametrize("norm", NORMS)
def test_critic_has_no_batchnorm_and_right_norm(norm):
    c = DCGANCritic(image_size=32, width=4, norm=norm, condition_dim=3)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in c.modules())
    convs = [m for m in c.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    spectral = [parametrize.is_parametrized(m, "weight") for m in convs]
    n_groupnorm = sum(isinstance(m, nn.GroupNorm) for m in c.modules())
    if norm == "spectral":
        assert all(spectral) and n_groupnorm == 0
    elif norm == "layer":
        assert not any(spectral) and n_groupnorm == 2  # 32 px: two normed downsampling blocks
        assert all(m.num_groups == 1 for m in c.modules() if isinstance(m, nn.GroupNorm))
    else:
        assert not any(spectral) and n_groupnorm == 0


def _sample0_changes_with_sample1(critic: nn.Module) -> bool:
    """Score sample 0 in two train-mode batches that differ only in sample 1 (same critic state for both)."""
    torch.manual_seed(1)
    a = torch.randn(2, 3, 32, 32)
    b = a.clone()
    b[1] = torch.randn(3, 32, 32) * 3
    # Copies: spectral norm's power iteration updates buffers at every train-mode call.
    s_a = copy.deepcopy(critic).train()(a)[0]
    s_b = copy.deepcopy(critic).train()(b)[0]
    return not torch.allclose(s_a, s_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_critic_scores_are_per_sample(norm):
    torch.manual_seed(0)
    assert not _sample0_changes_with_sample1(DCGANCritic(image_size=32, width=4, norm=norm))


def test_batchnorm_would_fail_the_per_sample_check():
    """The check above is sensitive: a BatchNorm critic fails it."""
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Conv2d(3, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Flatten(), nn.LazyLinear(1))
    bn(torch.randn(2, 3, 32, 32))  # materialise the lazy layer
    assert _sample0_changes_with_sample1(bn)


@pytest.mark.parametrize("norm", NORMS)
def test_projection_critic_uses_condition(norm):
    torch.manual_seed(0)
    c = DCGANCritic(image_size=32, width=4, norm=norm, condition_dim=5).eval()
    x = torch.randn(3, 3, 32, 32)
    y = torch.randn(3, 5)
    out = c(x, y)
    assert out.shape == (3,)
    y2 = y.clone()
    y2[0] += 1.0
    out2 = c(x, y2)
    assert not torch.allclose(out[0], out2[0])
    torch.testing.assert_close(out[1:], out2[1:])  # only the changed sample's score moves
    # Zero condition ⇒ no projection term ⇒ same as the unconditional head.
    torch.testing.assert_close(c(x, torch.zeros(3, 5)), c.head(c.features(x)).flatten())


@pytest.mark.parametrize("norm", NORMS)
def test_auxiliary_head_regresses_each_sample_on_its_own(norm):
    torch.manual_seed(0)
    c = DCGANCritic(image_size=32, width=4, norm=norm, aux_dim=6).eval()
    x = torch.randn(3, 3, 32, 32)
    score, pred = c(x, return_aux=True)
    assert score.shape == (3,) and pred.shape == (3, 6)
    torch.testing.assert_close(score, c(x))  # the head leaves the critic's score alone
    x2 = x.clone()
    x2[0] += 1.0
    _, pred2 = c(x2, return_aux=True)
    assert not torch.allclose(pred[0], pred2[0])
    torch.testing.assert_close(pred[1:], pred2[1:])  # per sample, as the penalty requires
    if norm == "spectral":  # the norm bounds the score's slope; the regression head is left free
        assert not hasattr(c.aux, "parametrizations") and hasattr(c.head, "parametrizations")
    with pytest.raises(ValueError, match="no auxiliary head"):
        DCGANCritic(image_size=32, width=4)(x, return_aux=True)
    with pytest.raises(ValueError, match="aux_dim must be a positive integer"):
        DCGANCritic(image_size=32, width=4, aux_dim=0)


def test_condition_mismatch_raises():
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="needs a condition"):
        DCGANCritic(image_size=32, width=2, condition_dim=4)(x)
    with pytest.raises(ValueError, match="no condition_dim"):
        DCGANCritic(image_size=32, width=2)(x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="condition must have shape"):
        DCGANCritic(image_size=32, width=2, condition_dim=4)(x, torch.randn(2, 5))


class _LinearCritic(nn.Module):
    """score_b = <w, x_b>: its input gradient is w for every sample and x."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        self.seen = x.detach()
        return (x * self.w).flatten(1).sum(1)


def test_gradient_penalty_linear_critic_is_analytic_and_differentiable():
    torch.manual_seed(0)
    w = torch.randn(1, 3, 8, 8) * 0.3
    critic = _LinearCritic(w.clone())
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    gp = gradient_penalty(critic, real, fake)
    expected = (w.norm() - 1) ** 2
    assert gp.ndim == 0 and gp >= 0
    torch.testing.assert_close(gp, expected)
    gp.backward()
    # d/dw (‖w‖ - 1)² = 2 (‖w‖ - 1) w / ‖w‖
    torch.testing.assert_close(critic.w.grad, 2 * (w.norm() - 1) * w / w.norm())
    assert critic.w.grad.abs().sum() > 0


def test_gradient_penalty_interpolates_per_sample():
    torch.manual_seed(0)
    critic = _LinearCritic(torch.ones(1, 3, 8, 8))
    real, fake = torch.ones(6, 3, 8, 8), torch.zeros(6, 3, 8, 8)
    gradient_penalty(critic, real, fake)
    x_hat = critic.seen  # = eps_b everywhere in sample b
    eps = x_hat.flatten(1)
    assert torch.allclose(eps, eps[:, :1].expand_as(eps))  # one weight per sample …
    assert eps[:, 0].unique().numel() == 6  # … drawn independently per sample
    assert (eps >= 0).all() and (eps <= 1).all()


def test_gradient_penalty_reaches_real_critic_parameters():
    torch.manual_seed(0)
    c = DCGANCritic(image_size=32, width=4, norm="layer", condition_dim=3)
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    fake.requires_grad_(True)  # stands in for a generator output: the penalty must not reach it
    gp = gradient_penalty(c, real, fake, torch.randn(2, 3))
    assert gp >= 0 and torch.isfinite(gp)
    gp.backward()
    assert c.features[0].weight.grad.abs().sum() > 0 and c.projection.weight.grad.abs().sum() > 0
    assert fake.grad is None


def test_gradient_penalty_autocast_and_channels_last():
    torch.manual_seed(0)
    c = DCGANCritic(image_size=32, width=4, norm="layer").to(memory_format=torch.channels_last)
    real = (torch.rand(2, 3, 32, 32) * 2 - 1).to(memory_format=torch.channels_last)
    fake = (torch.rand(2, 3, 32, 32) * 2 - 1).to(memory_format=torch.channels_last)
    torch.manual_seed(1)
    ref = gradient_penalty(c, real.contiguous(), fake.contiguous())
    torch.manual_seed(1)
    cl = gradient_penalty(c, real, fake)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-6)

    recorder = _LinearCritic(torch.randn(1, 3, 32, 32))
    gradient_penalty(recorder, real, fake)
    assert recorder.seen.is_contiguous(memory_format=torch.channels_last)

    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(c, real, fake)
    assert gp.dtype == torch.float32 and torch.isfinite(gp)
    torch.testing.assert_close(gp, ref, rtol=0.1, atol=1e-3)  # bf16 convs: loose
    gp.backward()
    assert c.features[0].weight.grad.abs().sum() > 0


def test_init_dcgan_weights():
    torch.manual_seed(0)
    conv, bn, gn = nn.Conv2d(64, 64, 3), nn.BatchNorm2d(256), nn.GroupNorm(1, 256)
    sn = torch.nn.utils.parametrizations.spectral_norm(nn.Conv2d(64, 64, 3))
    for m in (conv, bn, gn, sn):
        nn.init.constant_(m.bias, 5.0)
        init_dcgan_weights(m)
        assert (m.bias == 0).all()
    assert abs(conv.weight.std().item() - 0.02) < 0.002
    assert abs(sn.parametrizations.weight.original.std().item() - 0.02) < 0.002
    for m in (bn, gn):
        assert abs(m.weight.mean().item() - 1) < 0.01 and abs(m.weight.std().item() - 0.02) < 0.005
    # and the constructors apply it
    g = DCGANGenerator(latent_dim=8, image_size=32, width=8)
    first = g.net[1].weight
    assert abs(first.std().item() - 0.02) < 0.003
    c = DCGANCritic(image_size=32, width=16, norm="layer")
    conv, gn = c.features[2], c.features[3]  # 16 → 32 channels (PyTorch's default init: std ≈ 0.036)
    assert abs(conv.weight.std().item() - 0.02) < 0.003
    assert isinstance(gn, nn.GroupNorm) and gn.weight.std() > 0.005 and (gn.bias == 0).all()
    c = DCGANCritic(image_size=32, width=16, norm="spectral")
    assert abs(c.features[2].parametrizations.weight.original.std().item() - 0.02) < 0.003
