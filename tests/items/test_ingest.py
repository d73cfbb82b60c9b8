"""The item ingest flow without a service: body checks, and joining encoder outputs to items."""

import base64

import numpy as np
import pytest

from dynrec.api.schemas import ItemIn
from dynrec.encoders.image import ImageEncoder
from dynrec.items.ingest import Refused, encoded_items, item_upload


def upload(item_id, **body):
    return item_upload(item_id, ItemIn(title=item_id, **body), max_image_bytes=100, now=1_700_000_000)


def test_bodies_are_checked_and_prepared_for_the_encoders():
    plain = upload("tent", text="A tent", categories=["outdoor"])
    assert plain.image is None and plain.record["created_at"] == 1_700_000_000 and "A tent" in plain.text
    assert upload("pic", image=base64.b64encode(b"\x89PNG").decode()).image == b"\x89PNG"
    with pytest.raises(Refused) as bad:
        upload("bad", image="%%%")
    assert bad.value.status == 422
    with pytest.raises(Refused) as large:
        upload("large", image=base64.b64encode(b"x" * 101).decode())
    assert large.value.status == 413


def test_encoder_outputs_join_back_and_an_undecodable_image_refuses_its_item():
    uploads = [upload("a"), upload("b", image=base64.b64encode(b"one").decode()), upload("c"),
               upload("d", image=base64.b64encode(b"two").decode())]
    text = np.arange(4, dtype=np.float32)[:, None] * np.ones((4, 384), np.float32)
    images = np.ones((2, ImageEncoder.dim), np.float32) * np.array([[1.0], [2.0]], np.float32)
    items, refused = encoded_items(uploads, text, images, np.array([True, False]))
    assert [i.item_id for i in items] == ["a", "b", "c"] and list(refused) == [3]
    assert items[1].image_mask and items[1].image_vec[0] == 1.0 and items[2].text_vec[0] == 2.0
    assert items[0].image_vec.shape == (ImageEncoder.dim,) and items[0].image_mask is False
    only_text, none_refused = encoded_items([upload("x")], text[:1], None, None)
    assert only_text[0].image_vec.shape == (ImageEncoder.dim,) and not none_refused
