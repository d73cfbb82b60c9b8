import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from dynrec.data import Interactions, load_tables


def test_parquet_round_trip_keeps_canonical_tables(ml100k, tmp_path):
    items, events = ml100k.items.slice(0, 50), ml100k.events.slice(0, 500)
    events = events.filter(pa.compute.is_in(events["item_id"], value_set=items["item_id"]))
    pq.write_table(items, tmp_path / "items.parquet")
    pq.write_table(events, tmp_path / "events.parquet")
    pq.write_table(ml100k.users, tmp_path / "users.parquet")
    loaded = load_tables(tmp_path / "items.parquet", tmp_path / "events.parquet", tmp_path / "users.parquet")
    assert loaded.items.equals(items)
    assert loaded.events.equals(events)
    assert loaded.users.equals(ml100k.users)


def test_csv_uses_plain_columns(tmp_path):
    (tmp_path / "items.csv").write_text(
        "item_id,title,categories,attributes,image\n"
        'a,Alpha,Drama|War,"{""year"": ""1999""}",/tmp/a.jpg\n'
        "b,Beta,,,\n"
    )
    (tmp_path / "events.csv").write_text(
        "user_id,item_id,event_type,timestamp,value\n"
        "u1,a,click,2024-01-02T03:04:05Z,\n"
        "u1,b,rating,2024-01-03T00:00:00Z,4.5\n"
    )
    dataset = load_tables(tmp_path / "items.csv", tmp_path / "events.csv")
    first = dataset.items.to_pylist()[0]
    assert first["categories"] == ["Drama", "War"]
    assert dict(first["attributes"]) == {"year": "1999"}
    assert first["image"] == {"path": "/tmp/a.jpg", "bytes": None}
    assert dataset.users["user_id"].to_pylist() == ["u1"]
    interactions = Interactions.from_dataset(dataset)
    assert interactions.sequence(0).tolist() == [0, 1]
    assert interactions.values.tolist() == [1.0, 4.5]


def test_missing_required_column_is_named(tmp_path):
    pacsv.write_csv(pa.table({"user_id": ["u"], "item_id": ["a"]}), tmp_path / "events.csv")
    pacsv.write_csv(pa.table({"item_id": ["a"]}), tmp_path / "items.csv")
    with pytest.raises(ValueError, match="'event_type' is missing"):
        load_tables(tmp_path / "items.csv", tmp_path / "events.csv")


def test_events_for_unknown_items_are_rejected(tmp_path):
    pacsv.write_csv(pa.table({"item_id": ["a"]}), tmp_path / "items.csv")
    pacsv.write_csv(
        pa.table({"user_id": ["u"], "item_id": ["zzz"], "event_type": ["click"], "timestamp": [1_700_000_000]}),
        tmp_path / "events.csv",
    )
    dataset = load_tables(tmp_path / "items.csv", tmp_path / "events.csv")
    with pytest.raises(ValueError, match="not in the catalogue"):
        Interactions.from_dataset(dataset)
