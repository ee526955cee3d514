"""Population batch-norm statistics ("precise BN"): the known answer on a layer that sees its inputs directly and
the save / restore round trip (inside training: tests/test_training.py)."""
import pytest
import torch

from dfmvr_lib.training.batch_norm import (batch_norm_layers, batch_norm_state, recompute_batch_norm_statistics,
                                           restore_batch_norm_state)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def test_statistics_are_the_average_of_the_batch_statistics():
    net = _net().eval()
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(5, 3, 6, 6, generator=generator) * (i + 1) + i for i in range(4)]
    weights_before = {k: v.clone() for k, v in net.state_dict().items()
                      if "running" not in k and "num_batches" not in k}
    used = recompute_batch_norm_statistics(net, batches, lambda n, b: n(b))
    assert used == 4 and not net.training                      # mode restored
    first = net[0]
    expected_mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    expected_var = torch.stack([b.transpose(0, 1).reshape(3, -1).var(1, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(first.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(first.running_var, expected_var, atol=1e-4)
    assert first.momentum == 0.1                              # the layer's momentum is put back
    for name, value in weights_before.items():                # only the statistics change
        assert torch.equal(net.state_dict()[name], value), name
    # the deeper layer averaged over the same four batches (cumulative average, not momentum 0.1)
    assert net[2].num_batches_tracked.item() == 4


def test_state_round_trip_and_no_batches_changes_nothing():
    net = _net()
    net(torch.randn(4, 3, 6, 6))                              # some non-trivial running statistics
    saved = batch_norm_state(net)
    recompute_batch_norm_statistics(net, [torch.randn(4, 3, 6, 6) + 5.0], lambda n, b: n(b))
    assert not torch.allclose(net[0].running_mean, saved[0][0])
    restore_batch_norm_state(net, saved)
    for layer, (mean, var, count) in zip(batch_norm_layers(net), saved):
        assert torch.equal(layer.running_mean, mean) and torch.equal(layer.running_var, var)
        assert torch.equal(layer.num_batches_tracked, count)
    assert recompute_batch_norm_statistics(net, [], lambda n, b: n(b)) == 0
    assert torch.equal(net[0].running_mean, saved[0][0])
    with pytest.raises(ValueError, match="saved layers"):
        restore_batch_norm_state(net, saved[:1])
