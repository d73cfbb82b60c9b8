"""The item ingest flow, from an API body to what the fusion step stores.

`item_upload` checks one body (image size and encoding) and prepares what the encoders read;
`encoded_items` joins the encoders' outputs back onto the uploads, refusing an image that could
not be decoded. The Ingress runs the encoders between the two, as one batch for any number of
items, so `PUT /v1/items/{id}` and `POST /v1/items/batch` take one path.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from dynrec.api.schemas import ItemIn
from dynrec.encoders.content import item_text
from dynrec.encoders.image import ImageEncoder


class Refused(ValueError):
    """One item the API refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ItemUpload:
    item_id: str
    record: dict  # title, text, categories, attributes, created_at: what the item log keeps
    text: str  # what the text encoder reads
    image: bytes | None


@dataclass
class EncodedItem:
    """An item with its content vectors: what crosses to the fusion step."""

    item_id: str
    record: dict
    text_vec: np.ndarray
    image_vec: np.ndarray
    image_mask: bool


def decode_image(encoded: str, max_bytes: int) -> bytes:
    if len(encoded) > max_bytes * 4 // 3 + 4:
        raise Refused(413, f"image larger than {max_bytes} bytes")
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(422, "image is not valid base64") from None
    if len(image) > max_bytes:
        raise Refused(413, f"image larger than {max_bytes} bytes")
    return image


def item_upload(item_id: str, body: ItemIn, max_image_bytes: int, now: int) -> ItemUpload:
    image = decode_image(body.image, max_image_bytes) if body.image else None
    record = {**body.model_dump(exclude={"image"}), "created_at": now}
    return ItemUpload(item_id, record, item_text(body.title, body.categories, body.text), image)


def encoded_items(uploads: list[ItemUpload], text_vectors: np.ndarray, image_vectors: np.ndarray | None,
                  image_valid: np.ndarray | None) -> tuple[list[EncodedItem], dict[int, Refused]]:
    """The uploads with their vectors; `image_vectors` and `image_valid` hold a row for each
    upload that has an image, in order (None when none has). An image that could not be decoded
    refuses its item."""
    items, refused, next_image = [], {}, 0
    blank = np.zeros(ImageEncoder.dim, np.float32)
    for index, (upload, text_vec) in enumerate(zip(uploads, text_vectors)):
        image_vec, image_mask = blank, False
        if upload.image is not None:
            image_vec, image_mask = image_vectors[next_image], bool(image_valid[next_image])
            next_image += 1
            if not image_mask:
                refused[index] = Refused(422, "image could not be decoded (send a JPEG, PNG, GIF or WebP file)")
                continue
        items.append(EncodedItem(upload.item_id, upload.record, text_vec, image_vec, image_mask))
    return items, refused
