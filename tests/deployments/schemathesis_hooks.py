"""Schemathesis hooks for the contract test (SCHEMATHESIS_HOOKS): what an OpenAPI document cannot
say. An item's `image` is base64 (`format: byte`) of an image file (`contentMediaType: image/*`);
schema tools fill it with base64 of random bytes, which the service rightly refuses (422: not an
image). So a schema-valid image string is swapped for a real image (a 2×2 PNG) and those cases
test the rest of the body; strings that are not base64 stay, so negative cases still test refusal."""

import base64
import binascii
import io

import schemathesis
from PIL import Image

_buffer = io.BytesIO()
Image.new("RGB", (2, 2), (200, 40, 40)).save(_buffer, format="PNG")
PNG = base64.b64encode(_buffer.getvalue()).decode()


def _real_image(item: object) -> None:
    if isinstance(item, dict) and isinstance(item.get("image"), str):
        try:
            base64.b64decode(item["image"], validate=True)
        except (binascii.Error, ValueError):
            return
        item["image"] = PNG


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.operation.path == "/v1/items/{item_id}" and case.method.upper() == "PUT":
        _real_image(case.body)
    elif case.operation.path == "/v1/items/batch" and isinstance(case.body, dict) and isinstance(case.body.get("items"), list):
        for item in case.body["items"]:
            _real_image(item)
