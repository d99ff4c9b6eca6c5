"""FLOPs per bin of a detector's three pass kinds, on a two-layer detector whose counts are known by hand."""
import pytest
import torch

from benchmark.flops import pass_flops

F, T, H, H2 = 4, 6, 5, 3


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(F * T, H, bias=False), torch.nn.Linear(H, H2, bias=False)

    def score(self, x):
        return self.b(self.a(x.flatten(1))).pow(2).sum(1)


def test_three_pass_kinds_count_the_products_each_runs():
    det = TwoLayers()
    det.a.weight.requires_grad_(False)  # flags and mode come back as they were
    det.train()
    got = pass_flops(det, torch.randn(1, 1, F, T))
    bins = F * T
    forward = 2 * bins * H + 2 * H * H2
    assert got["forward"] == pytest.approx(forward / bins)
    # d score / d x: back through b (to the hidden layer), then through a (to the input)
    assert got["backward_input"] == pytest.approx((2 * H2 * H + 2 * H * bins) / bins)
    # d score / d weights: b's and a's weight gradients, and the hidden layer's, not the input's
    assert got["backward_train"] == pytest.approx((2 * H * H2 + 2 * H2 * H + 2 * bins * H) / bins)
    assert [p.requires_grad for p in det.parameters()] == [False, True] and det.training
    assert all(p.grad is None for p in det.parameters())
