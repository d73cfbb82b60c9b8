"""Canonical Arrow schemas for items, events and users.

Every loader (MovieLens, a user's own Parquet/CSV) produces tables with exactly these schemas, so
everything downstream reads one shape.
"""

import pyarrow as pa

# An image is a path/URI or inline bytes; the struct mirrors the common {path, bytes} convention.
IMAGE_TYPE = pa.struct([("path", pa.string()), ("bytes", pa.binary())])
ATTRIBUTES_TYPE = pa.map_(pa.string(), pa.string())
TIMESTAMP_TYPE = pa.timestamp("s", tz="UTC")

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("text", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("image", IMAGE_TYPE),
        pa.field("attributes", ATTRIBUTES_TYPE),
        pa.field("created_at", TIMESTAMP_TYPE),
    ]
)

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("value", pa.float32()),
        pa.field("recommendation_id", pa.string()),
    ]
)

# Event types that are not interactions: an impression is a showing (the bandit counts it; item
# behaviour, user histories and training do not)
NOT_INTERACTIONS = ("impression",)

USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("attributes", ATTRIBUTES_TYPE),
    ]
)
