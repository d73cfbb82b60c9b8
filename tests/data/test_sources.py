"""A team's own files through `source`: column mapping, timestamps, event types, bad rows, errors."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dynrec.config import DynrecConfig
from dynrec.data import Interactions, LoadReport, SourceError, load_source, load_tables

ROOT = Path(__file__).resolve().parents[2]
SHOP_SOURCE = {
    "items": "products.csv", "events": "interactions.csv", "users": "customers.csv",
    "columns": {
        "items": {"item_id": "sku", "title": "name", "categories": "category", "created_at": "launched"},
        "events": {"user_id": "customer", "item_id": "sku", "event_type": "action", "value": "stars", "timestamp": "at"},
        "users": {"user_id": "customer"},
    },
    "event_types": {"rated": "rating"},
    "category_separator": ";",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory, data_dir):
    """ML-100k's first 60 customers, written as a shop's CSV export by the tutorial's script."""
    folder = tmp_path_factory.mktemp("shop")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_shop_export.py"), str(folder), "--data-dir", str(data_dir),
                    "--users", "60"], check=True, capture_output=True)
    return folder


def shop_config(folder: Path, **overrides) -> DynrecConfig:
    return DynrecConfig.from_dict({"source": {**SHOP_SOURCE, "uri": str(folder), **overrides}})


def test_a_shop_export_maps_to_the_same_interactions_as_the_bundled_adapter(shop, ml100k):
    dataset = load_source(shop_config(shop))
    assert dataset.name == shop.name
    first = dataset.items.to_pylist()[0]
    assert first["item_id"] == "SKU-1" and first["categories"] == ["Animation", "Children's", "Comedy"]
    assert dict(first["attributes"]) == {"price": "41.99"}  # an unmapped column becomes an attribute
    assert first["created_at"].year == 1995
    assert dict(dataset.users.to_pylist()[0]["attributes"]) == {"age": "24", "gender": "M", "occupation": "technician"}
    ours = Interactions.from_dataset(dataset)
    bundled = ml100k.events.filter(pa.compute.is_in(ml100k.events["user_id"], value_set=pa.array([str(u) for u in range(1, 61)])))
    assert ours.n_events == bundled.num_rows
    assert set(ours.event_type_names) == {"rating"}
    # milliseconds became seconds: the same instants as the bundled file's
    assert sorted(ours.timestamps.tolist()) == sorted(bundled["timestamp"].cast("int64").to_pylist())
    assert sorted(ours.values.tolist()) == sorted(bundled["value"].to_pylist())


def write_csv(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_seconds_milliseconds_and_iso_timestamps_agree(tmp_path):
    write_csv(tmp_path, "items.csv", "item_id\na\n")
    expected = 1_700_000_000
    for name, value in (("s", "1700000000"), ("ms", "1700000000000"), ("iso", "2023-11-14T22:13:20Z"),
                        ("iso_offset", "2023-11-15T00:13:20+02:00")):
        write_csv(tmp_path, f"events_{name}.csv", f"user_id,item_id,timestamp\nu,a,{value}\n")
        dataset = load_tables(tmp_path / "items.csv", tmp_path / f"events_{name}.csv")
        assert dataset.events["timestamp"].cast("int64").to_pylist() == [expected], name


def test_unusable_rows_are_counted_by_cause_and_left_out(tmp_path):
    write_csv(tmp_path, "items.csv", "item_id,title\na,Alpha\nb,Beta\n,Nameless\nb,Beta again\n")
    write_csv(tmp_path, "events.csv", "\n".join([
        "user_id,item_id,event_type,timestamp",
        "u1,a,view,100", "u1,b,purchase,200", "u1,a,view,100",  # the third repeats the first
        "u2,zzz,view,300", ",a,view,400", "u2,a,view,yesterday", "u2,b,cart,500",
    ]) + "\n")
    report = LoadReport()
    source = DynrecConfig.from_dict({"source": {"uri": str(tmp_path), "max_bad_rows": 10}}).source
    dataset = load_tables(tmp_path / "items.csv", tmp_path / "events.csv", source=source, report=report)
    assert dataset.items["item_id"].to_pylist() == ["a", "b"]
    assert dataset.items["title"].to_pylist() == ["Alpha", "Beta again"]  # the newest row of a repeated id wins
    assert dict(report.rejected["items"]) == {"missing item_id": 1, "duplicate item_id (the last row is kept)": 1}
    causes = dict(report.rejected["events"])
    assert causes == {
        "item_id not in the items file": 1, "missing user_id": 1, "missing or unparsable timestamp": 1,
        "duplicate event (same user, item, type, time and value)": 1,
    }
    assert report.examples[("events", "item_id not in the items file")] == [4]
    assert dataset.events.num_rows == 3
    # 'cart' is outside the vocabulary: it becomes a view, and the report says so
    assert dataset.events["event_type"].to_pylist() == ["view", "purchase", "view"]
    assert any("'cart'" in note for note in report.notes)


def test_too_many_bad_rows_fail_with_the_file_and_causes(tmp_path):
    write_csv(tmp_path, "items.csv", "item_id\na\n")
    write_csv(tmp_path, "events.csv", "user_id,item_id,timestamp\nu,a,1\nu,b,2\nu,c,3\n")
    with pytest.raises(SourceError, match=r"(?s)events\.csv: 2 of 3 events rows cannot be used.*item_id not in the items file"):
        load_tables(tmp_path / "items.csv", tmp_path / "events.csv")


def test_unmapped_event_types_can_be_rejected_instead(tmp_path):
    write_csv(tmp_path, "items.csv", "item_id\na\n")
    write_csv(tmp_path, "events.csv", "user_id,item_id,event_type,timestamp\nu,a,view,1\nu,a,wishlist,2\n")
    source = DynrecConfig.from_dict({"source": {"uri": str(tmp_path), "unknown_event_type": "", "max_bad_rows": 1}}).source
    report = LoadReport()
    dataset = load_tables(tmp_path / "items.csv", tmp_path / "events.csv", source=source, report=report)
    assert dataset.events["event_type"].to_pylist() == ["view"]
    assert sum(report.rejected["events"].values()) == 1


def test_a_missing_mapped_column_names_the_file_the_column_and_the_setting(shop):
    config = shop_config(shop, columns={**SHOP_SOURCE["columns"], "events": {"user_id": "client", "item_id": "sku", "timestamp": "at"}})
    with pytest.raises(SourceError) as excinfo:
        load_source(config)
    message = str(excinfo.value)
    assert "interactions.csv" in message and "'client'" in message and "source.columns.events.user_id" in message


def test_a_missing_file_names_the_setting(tmp_path):
    with pytest.raises(SourceError, match="no items file found.*source.items"):
        load_source(DynrecConfig.from_dict({"source": {"uri": str(tmp_path)}}))


def test_parquet_folders_and_canonical_names_need_no_mapping(ml100k, tmp_path):
    items = ml100k.items.slice(0, 50)
    events = ml100k.events.filter(pa.compute.is_in(ml100k.events["item_id"], value_set=items["item_id"]))
    (tmp_path / "events").mkdir()
    pq.write_table(items, tmp_path / "items.parquet")
    pq.write_table(events.slice(0, 100), tmp_path / "events" / "part-0.parquet")
    pq.write_table(events.slice(100), tmp_path / "events" / "part-1.parquet")
    dataset = load_source(DynrecConfig.from_dict({"source": {"uri": str(tmp_path)}}))
    assert dataset.items.equals(items)
    assert dataset.events.num_rows == events.num_rows
    assert dataset.users.num_rows == len(set(events["user_id"].to_pylist()))  # no users file: ids from the events


def test_relative_image_paths_resolve_against_the_source_folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"not really a jpeg")
    write_csv(tmp_path, "items.csv", "item_id,image\na,img/a.jpg\nb,img/missing.jpg\n")
    write_csv(tmp_path, "events.csv", "user_id,item_id,timestamp\nu,a,1\n")
    report = LoadReport()
    dataset = load_tables(tmp_path / "items.csv", tmp_path / "events.csv", report=report)
    assert dataset.items["image"].to_pylist()[0] == {"path": str(tmp_path / "img" / "a.jpg"), "bytes": None}
    assert any("1 item image paths name no file" in note for note in report.notes)


def test_no_module_outside_the_data_adapters_names_a_bundled_dataset():
    """Outside dynrec/data (and the config's default), the code must work on any source."""
    offenders = []
    for folder in ("dynrec", "deployments", "training"):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("dynrec/data/") or relative == "dynrec/config.py":
                continue
            text = path.read_text()
            if "ml-1m" in text or "ml-100k" in text:
                offenders.append(relative)
    assert offenders == []
