"""Which named modules run, and in which order, in a PyTorch port (spec clause 14.6)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from parcnetv2.conformance.torch_trace import trace_module  # noqa: E402


class Holder(nn.Module):
    """Parameters only, no forward: its parent computes with them."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.arange(1.0, 4.0))


class CastsUpFront(nn.Module):
    """Casts every weight to float64 first (registration order a, b), then uses b before a."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = Holder(), Holder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wa, wb = self.a.weight.double(), self.b.weight.double()
        y = x.double().type_as(wb)  # an activation converted like a weight stays an activation
        return (y * wb) * wa


def _order(model: nn.Module) -> list[tuple[str, str]]:
    calls = trace_module(model, ["a", "b"], lambda: model(torch.ones(3)))
    return [(c.name, c.via) for c in calls]


def test_a_weight_cast_up_front_runs_where_it_is_used():
    assert _order(CastsUpFront()) == [("b", "parameters"), ("a", "parameters")]


def test_a_skipped_holder_is_not_seen():
    class SkipsA(CastsUpFront):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _unused = self.a.weight.double()
            return x * self.b.weight

    assert _order(SkipsA()) == [("b", "parameters")]
