"""What the inspector's item and health pages read from the store, on both backends: kept image
files (from the API and from imports, which copy a path's file in), and the event log a page at a
time."""

import dataclasses
import io

import pyarrow as pa
from PIL import Image

from dynrec.data.schemas import IMAGE_TYPE
from dynrec.state import StoredEvent
from dynrec.state.imports import import_dataset
from tests.conftest import tiny_dataset


def png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_are_kept_replaced_and_survive_a_reopen(open_backend):
    open_store, crash = open_backend
    store = open_store()
    assert store.item_image("a") is None and store.image_ids() == set()
    store.put_images({"a": png("red"), "b": png("blue")})
    store.put_images({"a": png("green")})
    crash()
    store = open_store()
    assert store.item_image("a") == png("green") and store.item_image("b") == png("blue")
    assert store.image_ids() == {"a", "b"} and store.item_image("c") is None


def test_the_event_log_reads_page_by_page_in_order(open_backend):
    store = open_backend[0]()
    store.add_events([StoredEvent(f"i{n % 3}", 1000 + n, 1.0, "click" if n % 2 else "view", f"u{n}") for n in range(7)])
    pages, after = [], 0
    while page := store.event_page(after, 3):
        pages.append(page)
        after = page[-1][0]
    assert [len(p) for p in pages] == [3, 3, 1]
    rows = [row for page in pages for row in page]
    assert [r[0] for r in rows] == list(range(1, 8))
    assert rows[0] == (1, "i0", "view", 1000) and rows[5] == (6, "i2", "click", 1005)
    store.erase_user("u3")  # a gap in the sequence is skipped, not read as the end
    assert [r[0] for r in store.event_page(2, 2)] == [3, 5]


def test_an_import_keeps_each_items_image_from_its_bytes_or_its_path(open_backend, tmp_path):
    store = open_backend[0]()
    poster = tmp_path / "poster.png"
    poster.write_bytes(png("red"))
    dataset = tiny_dataset(["inline", "by-path", "missing-file", "none"], [("u1", "inline", 1)])
    images = [{"path": None, "bytes": png("blue")}, {"path": str(poster), "bytes": None},
              {"path": str(tmp_path / "gone.png"), "bytes": None}, None]
    items = dataset.items.set_column(dataset.items.schema.get_field_index("image"), "image", pa.array(images, IMAGE_TYPE))
    dataset = dataclasses.replace(dataset, items=items)
    summary = import_dataset(dataset, store, progress=False)
    assert summary.images_kept == 2 and "images  2 kept in the store" in summary.lines()
    assert store.item_image("inline") == png("blue") and store.item_image("by-path") == png("red")
    assert store.image_ids() == {"inline", "by-path"}
    # a re-run writes no item again, and keeps only what the store still lacks
    poster.write_bytes(png("green"))
    assert import_dataset(dataset, store, progress=False).images_kept == 0
    assert store.item_image("by-path") == png("red")
