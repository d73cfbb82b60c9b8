import pyarrow as pa
import pytest

from dynrec.data import DataFileNotFoundError, Interactions, load_bundled, load_ml1m
from dynrec.data.schemas import EVENTS_SCHEMA, ITEMS_SCHEMA, USERS_SCHEMA


def test_ml1m_counts_match_source(ml1m):
    # ../shared/data/ml-1m/SOURCE.md: 487,650 ratings from users 1-2999 on 3,615 movies; 3,883 / 6,040 listed
    assert ml1m.events.num_rows == 487_650
    assert len(pa.compute.unique(ml1m.events["user_id"])) == 2_999
    assert len(pa.compute.unique(ml1m.events["item_id"])) == 3_615
    assert ml1m.items.num_rows == 3_883
    assert ml1m.users.num_rows == 6_040
    stars = pa.compute.value_counts(ml1m.events["value"]).to_pylist()
    assert {int(s["values"]): s["counts"] for s in stars} == {1: 27_472, 2: 53_838, 3: 127_216, 4: 170_579, 5: 108_545}


def test_ml100k_counts_match_source(ml100k):
    assert ml100k.events.num_rows == 100_000
    assert len(pa.compute.unique(ml100k.events["user_id"])) == 943
    assert ml100k.items.num_rows == 1_682
    assert ml100k.users.num_rows == 943


def test_tables_use_canonical_schemas(ml1m, ml100k):
    for dataset in (ml1m, ml100k):
        assert dataset.items.schema.equals(ITEMS_SCHEMA)
        assert dataset.events.schema.equals(EVENTS_SCHEMA)
        assert dataset.users.schema.equals(USERS_SCHEMA)


def test_ml1m_titles_are_latin1_and_timestamps_utc(ml1m):
    titles = ml1m.items["title"].to_pylist()
    assert any("é" in t for t in titles)  # e.g. "Misérables" is latin-1 encoded in movies.dat
    assert not any("\ufffd" in t for t in titles)
    first = ml1m.events.slice(0, 1).to_pylist()[0]
    # the first line of the ratings file is 1::1193::5::978300760
    assert (first["user_id"], first["item_id"], first["value"]) == ("1", "1193", 5.0)
    assert int(first["timestamp"].timestamp()) == 978300760


def test_ml1m_text_skips_abstract_fallbacks_and_images_skip_placeholders(ml1m, data_dir):
    texts = [t for t in ml1m.items["text"].to_pylist() if t is not None]
    assert 2_800 < len(texts) < 3_000  # ~2,940 real abstracts per the data README
    assert not any(t.startswith("Movie: ") or t == "Abstract not found." for t in texts)
    images = [i for i in ml1m.items["image"].to_pylist() if i is not None]
    assert len(images) == 3_256 - 3  # three posters are grey placeholders
    assert all(i["path"].endswith(".jpg") for i in images)


def test_users_carry_readable_attributes(ml1m):
    first = dict(ml1m.users.slice(0, 1).to_pylist()[0]["attributes"])
    # users.dat line 1: 1::F::1::10::48067
    assert first == {"gender": "F", "age": "under 18", "occupation": "K-12 student", "zip": "48067"}


def test_missing_file_names_file_and_variable(tmp_path):
    with pytest.raises(DataFileNotFoundError) as excinfo:
        load_ml1m(tmp_path)
    message = str(excinfo.value)
    assert "ratings.users-0001-2999.dat.gz" in message and "DYNREC_DATA_DIR" in message


def test_unknown_dataset_is_a_clear_error(data_dir):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_bundled("ml-20m", data_dir)


def test_interactions_index_the_whole_catalogue(ml1m):
    interactions = Interactions.from_dataset(ml1m)
    assert interactions.n_items == 3_883 and interactions.n_users == 2_999
    assert interactions.n_events == 487_650
    assert list(interactions.user_ids[:3]) == ["1", "2", "3"]
