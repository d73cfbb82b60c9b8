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


def test_embedding_at_the_last_event_is_the_full_forwards_state_there():
    """`embed` runs the final block at each window's last real event alone; right-padded windows of
    other lengths (the padding filled with other events) give what `forward` gives at that event."""
    encoder = make()
    items, types, gaps, values, _ = sequence()
    batch = [t.expand(4, *t.shape[1:]).clone() for t in (items, types, gaps, values)]
    batch[0][:, -1] = -batch[0][:, -1]  # padding that a wrong mask would let the earlier events see
    lengths = torch.tensor([8, 7, 3, 1])
    with torch.no_grad():
        expected = torch.stack([encoder(*(t[row : row + 1, :n] for t in batch))[0, -1] for row, n in enumerate(lengths.tolist())])
        embedded = encoder.embed(*batch, lengths)
    assert embedded.shape == (4, 16)
    assert torch.allclose(embedded, expected, atol=1e-5)


def test_time_gap_buckets_are_logarithmic_and_capped():
    buckets = time_gap_bucket(torch.tensor([0.0, 1.0, 3.0, 60.0, 1e12, -5.0]), 24)
    assert buckets.tolist() == [0, 1, 2, 5, 23, 0]


def test_extending_cached_keys_and_values_gives_the_whole_sequences_states():
    """Any split of a sequence into a first encode and later steps gives, at each step's last event,
    the state `forward` gives there over the whole sequence; and a step reads the cache it is given."""
    encoder = make()
    items, types, gaps, values, _ = sequence()
    layers, dim = len(encoder.blocks), items.shape[-1]

    def extend(start, end, past, items=items):  # past and present as (layers, 2, events, dim)
        embedding, present = encoder.extend(items[0, start:end], types[0, start:end], gaps[0, start:end],
                                            values[0, start:end], [(past[layer, 0], past[layer, 1]) for layer in range(layers)])
        assert present.shape == (end - start, layers * 2 * dim)
        return embedding, present.reshape(end - start, layers, 2, dim).permute(1, 2, 0, 3)

    with torch.no_grad():
        states = encoder(items, types, gaps, values)[0]
        past = torch.zeros(layers, 2, 0, dim)
        for start, end in ((0, 3), (3, 4), (4, 6), (6, 7), (7, 8)):
            embedding, present = extend(start, end, past)
            assert present.shape == (layers, 2, end - start, dim)
            assert torch.allclose(embedding, states[end - 1], atol=1e-5), (start, end)
            past = torch.cat([past, present], dim=2)
        _, whole = extend(0, 8, torch.zeros(layers, 2, 0, dim))
        assert torch.allclose(past, whole, atol=1e-5)  # a step's keys and values are the full encode's
        changed = items.clone()
        changed[0, 2] = -changed[0, 2]  # another history before the last event: other keys and values
        _, other_past = extend(0, 7, torch.zeros(layers, 2, 0, dim), changed)
        other, _ = extend(7, 8, other_past)
        assert torch.allclose(other, encoder(changed, types, gaps, values)[0, 7], atol=1e-5)
        assert not torch.allclose(other, states[7], atol=1e-3)
