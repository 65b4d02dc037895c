"""task_meta_gradient, called directly: one task's meta-gradient against central differences of the meta objective
written from scratch, the patch-by-patch outer backward, and a log that draws no random numbers of training's."""
import pytest
import torch
from basicsr.archs.srvgg_arch import SRVGGNetCompact
from torch.func import functional_call
from torch.nn import functional as F

from metaf2n_plugin.archs.masknet_arch import MaskNet
from metaf2n_plugin.models.adaptation import AdaptationSettings, adapt_to_faces
from metaf2n_plugin.models.meta_gradient import task_meta_gradient
from conftest import DropoutSRForTests

SETTINGS = AdaptationSettings(lr=0.5, steps=2)
MASK_REG = 0.1


def networks(sr_class=None):
    torch.manual_seed(0)
    return (sr_class or tiny_srvgg)(), MaskNet(6, 4, 2)


def tiny_srvgg():
    return SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4)


def task(seed=0):
    g = torch.Generator().manual_seed(seed)
    faces = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    backgrounds = torch.rand(3, 3, 8, 8, generator=g), torch.rand(3, 3, 32, 32, generator=g)
    return faces, backgrounds


def outer_loss(sr, target, mask_weights):
    return {'l_pix': F.l1_loss(sr, target), 'l_mask': MASK_REG * (mask_weights - 1).square().mean()}


def objective(net_g, net_mask, faces, backgrounds):
    """L_out(theta'(theta, MaskNet)), from scratch: the inner steps, then the outer loss of the adapted network."""
    adapted = adapt_to_faces(net_g, net_mask, *faces, SETTINGS)
    sr = functional_call(net_g, adapted, (backgrounds[0], ))
    return sum(outer_loss(sr, backgrounds[1], adapted.mask_weights).values()).item()


def test_the_meta_gradient_of_theta_and_masknet_matches_central_differences(float64):
    net_g, net_mask = networks()
    faces, backgrounds = task()
    sr, log = task_meta_gradient(net_g, net_mask, faces, backgrounds, outer_loss, SETTINGS)
    assert sr.shape == (3, 3, 32, 32) and not sr.requires_grad
    assert sum(log[key] for key in ('l_pix', 'l_mask')).item() == pytest.approx(
        objective(net_g, net_mask, faces, backgrounds), rel=1e-12)
    for net in (net_g, net_mask):
        for name, param in net.named_parameters():
            index = tuple(
                torch.randint(size, (1, ), generator=torch.Generator().manual_seed(1)).item() for size in param.shape)
            original, values = param.data[index].item(), []
            for sign in (1, -1):
                param.data[index] = original + sign * 1e-6
                values.append(objective(net_g, net_mask, faces, backgrounds))
            param.data[index] = original
            assert param.grad[index].item() == pytest.approx((values[0] - values[1]) / 2e-6, rel=1e-5, abs=1e-9), name


def test_patch_by_patch_and_all_at_once_give_the_same_gradient(float64):
    grads = []
    for chunk in (1, 0):
        net_g, net_mask = networks()
        task_meta_gradient(net_g, net_mask, *task(), outer_loss, SETTINGS, outer_chunk=chunk)
        grads.append([p.grad.clone() for net in (net_g, net_mask) for p in net.parameters()])
    for by_patch, at_once in zip(*grads):
        torch.testing.assert_close(by_patch, at_once, rtol=1e-10, atol=1e-14)


def test_first_order_gives_masknet_only_the_regulariser(float64):
    net_g, net_mask = networks()
    faces, backgrounds = task()
    task_meta_gradient(net_g, net_mask, faces, backgrounds, outer_loss, SETTINGS, first_order=True)
    first = [p.grad.clone() for p in net_mask.parameters()]
    net_mask.zero_grad()
    weights = net_mask(torch.cat([F.interpolate(faces[0], size=(32, 32), mode='bicubic'), faces[1]], dim=1))
    (MASK_REG * (weights - 1).square().mean()).backward()
    for got, regulariser in zip(first, net_mask.parameters()):
        torch.testing.assert_close(got, regulariser.grad, rtol=1e-12, atol=0)


def test_logging_the_inner_loss_after_the_step_leaves_the_gradient_and_the_random_state_as_they_were():
    runs = []
    for log_after in (False, True):
        net_g, net_mask = networks(DropoutSRForTests)
        torch.manual_seed(3)
        _, log = task_meta_gradient(net_g, net_mask, *task(), outer_loss, SETTINGS, log_inner_after=log_after)
        runs.append(
            ([p.grad.clone() for net in (net_g, net_mask) for p in net.parameters()], torch.get_rng_state(), log))
    (grads, state, log), (logged_grads, logged_state, logged) = runs
    assert 'l_inner_after' not in log and logged['l_inner_after'] < logged['l_inner_before']
    assert torch.equal(state, logged_state)
    assert all(torch.equal(a, b) for a, b in zip(grads, logged_grads))
