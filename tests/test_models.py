"""MSRResNet: exact parameter/FLOP counts, layer semantics (MMagic vs BasicSR) and initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from facesr.models import MSRResNet, build_model, count_flops, count_params, format_size


def conv_params(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


@pytest.mark.parametrize("blocks,expected", [(16, 1_517_571), (24, 2_108_419)])
def test_param_counts(blocks, expected):
    model = build_model("msrresnet", num_blocks=blocks)
    assert count_params(model) == expected
    # The BasicSR variant has the same layers, hence the same count.
    assert count_params(MSRResNet(num_blocks=blocks, variant="basicsr")) == expected


def test_largest_model_under_course_cap():
    cap = 2_276_356
    assert count_params(MSRResNet(num_blocks=26)) == 2_256_131 <= cap
    assert count_params(MSRResNet(num_blocks=27)) > cap


@pytest.mark.parametrize("blocks,flops,text", [(16, 41_555_066_880, "41.555G"), (24, 51_218_743_296, "51.219G")])
def test_flops_like_mmagic_get_flops(blocks, flops, text):
    # The meta device gives shapes without arithmetic, so the 3x128x128 count is instant.
    model = MSRResNet(num_blocks=blocks).to("meta")
    n = count_flops(model, (3, 128, 128))
    assert n == flops
    assert n.output_shape == (3, 512, 512)
    assert format_size(flops) == text


def test_flops_real_forward_matches_meta_and_scales_with_area():
    model = MSRResNet(num_blocks=16)
    small = count_flops(model, (3, 32, 32))  # every counted op is proportional to H*W
    assert small * 16 == 41_555_066_880
    assert count_flops(model.to("meta"), (3, 32, 32)) == small


def test_mmagic_forward_equals_hand_written_reference(ref_forward, randomise):
    torch.manual_seed(0)
    model = randomise(MSRResNet(num_blocks=3, mid_channels=16), seed=1).eval()
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        out = model(x)
        ref = ref_forward(model.state_dict(), x, 3)
    assert out.shape == (2, 3, 48, 40)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_no_activation_after_pixel_shuffle_in_mmagic_variant(ref_forward, randomise):
    mm = randomise(MSRResNet(num_blocks=2, mid_channels=16, variant="mmagic"), seed=2).eval()
    bs = MSRResNet(num_blocks=2, mid_channels=16, variant="basicsr").eval()
    bs.load_state_dict(mm.state_dict())  # same weights, different forward
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        out_mm, out_bs = mm(x), bs(x)
        sd = mm.state_dict()
        torch.testing.assert_close(out_bs, ref_forward(sd, x, 2, variant="basicsr"), rtol=0, atol=1e-6)
        torch.testing.assert_close(out_mm, ref_forward(sd, x, 2, variant="mmagic"), rtol=0, atol=1e-6)
    assert (out_mm - out_bs).abs().max() > 1e-3


def test_upsampled_features_can_be_negative_in_mmagic_variant(randomise):
    # Without an activation, the pixel-shuffle output keeps negative values; BasicSR's LReLU shrinks them 10x.
    mm = randomise(MSRResNet(num_blocks=1, mid_channels=8), seed=3).eval()
    feats = {}
    mm.upsample2.register_forward_hook(lambda m, i, o: feats.__setitem__("up2", o.detach().clone()))
    with torch.no_grad():
        mm(torch.rand(1, 3, 6, 6))
    assert feats["up2"].min() < 0


def _std(tensors):
    return torch.cat([t.detach().flatten() for t in tensors]).std().item()


@pytest.mark.parametrize("variant,up_std", [("mmagic", math.sqrt(2 / 576)), ("basicsr", 0.1 * math.sqrt(2 / 576))])
def test_init_scales(variant, up_std):
    torch.manual_seed(0)
    m = MSRResNet(num_blocks=16, variant=variant)
    assert _std([m.conv_first.weight]) == pytest.approx(0.1 * math.sqrt(2 / 27), rel=0.08)  # ~0.0272
    trunk = [b.conv1.weight for b in m.trunk_net] + [b.conv2.weight for b in m.trunk_net]
    assert _std(trunk) == pytest.approx(0.1 * math.sqrt(2 / 576), rel=0.02)  # ~0.00589
    assert _std([m.conv_hr.weight]) == pytest.approx(0.1 * math.sqrt(2 / 576), rel=0.05)
    assert _std([m.conv_last.weight]) == pytest.approx(0.1 * math.sqrt(2 / 576), rel=0.1)
    up = [m.upsample1.upsample_conv.weight, m.upsample2.upsample_conv.weight]
    assert _std(up) == pytest.approx(up_std, rel=0.02)  # ~0.0589 (mmagic) / ~0.00589 (basicsr)
    for name, p in m.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_scales_build_and_output_shape(scale):
    m = MSRResNet(num_blocks=2, mid_channels=16, upscale_factor=scale).eval()
    with torch.no_grad():
        out = m(torch.rand(1, 3, 7, 9))
    assert out.shape == (1, 3, 7 * scale, 9 * scale)
    n_up = 2 if scale == 4 else 1
    up_ch = 16 * (4 if scale == 4 else scale * scale)
    expected = (
        conv_params(3, 16)
        + 2 * 2 * conv_params(16, 16)
        + n_up * conv_params(16, up_ch)
        + conv_params(16, 16)
        + conv_params(16, 3)
    )
    assert count_params(m) == expected
    assert m.arch_config()["upscale_factor"] == scale


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="upscale_factor"):
        MSRResNet(upscale_factor=8)
    with pytest.raises(ValueError, match="variant"):
        MSRResNet(variant="kair")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("edsr")


def test_identity_residual_when_body_is_zero():
    # With all conv weights zero the network is exactly the bilinear x4 skip.
    m = MSRResNet(num_blocks=1, mid_channels=8).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        x = torch.rand(1, 3, 5, 5)
        out = m(x)
    expected = torch.nn.functional.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("res_scale", [1.0, 0.2])
def test_residual_block_fast_path_changes_no_bit(res_scale):
    """The block skips ``* res_scale`` when it is 1.0 and adds in place; output and gradients equal
    MMagic's ``identity + out * res_scale`` exactly."""
    from facesr.models.msrresnet import ResidualBlockNoBN

    torch.manual_seed(0)
    block = ResidualBlockNoBN(8, res_scale=res_scale)
    torch.nn.init.normal_(block.conv2.weight, std=0.2)
    x = torch.randn(2, 8, 9, 11, requires_grad=True)

    def mmagic(x):
        return x + block.conv2(block.relu(block.conv1(x))) * block.res_scale

    ref = mmagic(x)
    assert torch.equal(block(x), ref)
    g_fast = torch.autograd.grad(block(x).square().sum(), [x, *block.parameters()])
    g_ref = torch.autograd.grad(mmagic(x).square().sum(), [x, *block.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(g_fast, g_ref))
