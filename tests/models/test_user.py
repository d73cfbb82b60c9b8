import torch

from dynrec.config import ModelConfig
from dynrec.models.user import UserEncoder, time_gap_bucket


def make(max_length=12):
    torch.manual_seed(0)
    return UserEncoder(ModelConfig(dim=16, user_layers=2, user_heads=2, max_length=max_length)).eval()


def sequence(t=8):
    torch.manual_seed(3)
    times = torch.cumsum(torch.randint(0, 5000, (1, t)), dim=1).float()
    gaps = torch.diff(times, dim=1, prepend=times[:, :1])
    return torch.nn.functional.normalize(torch.randn(1, t, 16), dim=-1), torch.randint(0, 6, (1, t)), gaps, torch.rand(1, t) * 5, times


def test_states_are_causal_and_normalised():
    encoder = make()
    items, types, gaps, values, _ = sequence()
    states = encoder(items, types, gaps, values)
    assert states.shape == (1, 8, 16)
    assert torch.allclose(states.norm(dim=-1), torch.ones(1, 8), atol=1e-5)
    changed = items.clone()
    changed[0, 5] = -changed[0, 5]
    later = encoder(changed, types, gaps, values)
    assert torch.allclose(states[0, :5], later[0, :5], atol=1e-6)  # earlier positions cannot see position 5
    assert not torch.allclose(states[0, 5:], later[0, 5:])


def test_time_gap_buckets_are_logarithmic_and_capped():
    buckets = time_gap_bucket(torch.tensor([0.0, 1.0, 3.0, 60.0, 1e12, -5.0]), 24)
    assert buckets.tolist() == [0, 1, 2, 5, 23, 0]
