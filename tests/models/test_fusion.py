import pytest
import torch

from dynrec.config import ModelConfig
from dynrec.models.fusion import ItemFusion


def make(modalities=("id", "text", "image", "behaviour"), n_items=10):
    torch.manual_seed(0)
    return ItemFusion(n_items, 6, 5, 4, ModelConfig(modalities=modalities, dim=16, fusion_heads=2)).eval()


def inputs(n=4, lead=()):
    torch.manual_seed(1)
    return dict(
        item_index=torch.arange(n),
        text=torch.randn(n, 6),
        text_mask=torch.tensor([True, False, True, True][:n]),
        image=torch.randn(n, 5),
        image_mask=torch.tensor([True, True, False, False][:n]),
        behaviour=torch.randn(*lead, n, 4),
    )


def test_output_is_unit_norm_with_snapshot_dims():
    fusion = make()
    out = fusion(**inputs())
    assert out.shape == (4, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert fusion(**inputs(lead=(3,))).shape == (3, 4, 16)


def test_masked_modalities_do_not_influence_the_embedding():
    fusion = make()
    base = inputs()  # item 1 has no text; items 2 and 3 have no image
    text_changed = {**base, "text": base["text"] + 10.0}
    image_changed = {**base, "image": base["image"] - 10.0}
    assert torch.allclose(fusion(**base)[1], fusion(**text_changed)[1], atol=1e-6)
    assert not torch.allclose(fusion(**base)[0], fusion(**text_changed)[0])
    assert torch.allclose(fusion(**base)[2:], fusion(**image_changed)[2:], atol=1e-6)
    assert not torch.allclose(fusion(**base)[0], fusion(**image_changed)[0])


def test_new_items_embed_from_content_only():
    fusion = make(n_items=3)
    new = {**inputs(2), "item_index": torch.tensor([3, 99])}
    out = fusion(**new)
    assert torch.isfinite(out).all()
    # the ID table is never read for items without an ID
    with torch.no_grad():
        fusion.id_embedding.weight.add_(5.0)
    assert torch.allclose(out, fusion(**new), atol=1e-6)


def test_item_with_every_modality_missing_still_embeds():
    fusion = make(modalities=("text", "image"))
    data = {**inputs(2), "text_mask": torch.tensor([False, False]), "image_mask": torch.tensor([False, False])}
    out = fusion(**data)
    assert torch.isfinite(out).all() and torch.allclose(out[0], out[1], atol=1e-6)


def test_id_only_configuration_and_bad_modalities():
    fusion = make(modalities=("id",))
    assert fusion(torch.arange(4)).shape == (4, 16)
    with pytest.raises(ValueError, match="modalities"):
        make(modalities=("id", "audio"))
