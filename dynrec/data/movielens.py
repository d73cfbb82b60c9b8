"""MovieLens loaders (ML-1M with posters and DBpedia abstracts, ML-100k) into the canonical schemas.

Files are read from the data folder (`DYNREC_DATA_DIR`); nothing is downloaded.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dynrec.data.dataset import Dataset
from dynrec.data.files import require_file
from dynrec.data.schemas import EVENTS_SCHEMA, ITEMS_SCHEMA, TIMESTAMP_TYPE, USERS_SCHEMA

ML1M_RATINGS = "ml-1m/ratings.users-0001-2999.dat.gz"
ML1M_MOVIES = "ml-1m/movies.dat"
ML1M_USERS = "ml-1m/users.dat"
ML1M_ABSTRACTS = "ml-1m-dbpedia-abstracts/dbpedia_abstracts.json"
ML1M_POSTER_MANIFEST = "ml-1m-posters/posters_manifest.csv"
ML100K_RATINGS = "ml-100k/u.data"
ML100K_ITEMS = "ml-100k/u.item"
ML100K_USERS = "ml-100k/u.user"
ML100K_GENRES = "ml-100k/u.genre"

# From the ML-1M README: occupation codes and age-bucket codes.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
ML1M_AGE_BUCKETS = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}

_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")
# The abstracts file pads movies it has no abstract for with these; they carry no description.
_ABSTRACT_FALLBACK = re.compile(r"^(Movie: .*, Genres: \[.*\]|Abstract not found\.)\s*$", re.DOTALL)


def _ratings_table(raw: bytes, delimiter: str) -> pa.Table:
    """Parse `user, item, rating, unix-seconds` lines into the canonical events table."""
    parsed = pacsv.read_csv(
        io.BytesIO(raw),
        read_options=pacsv.ReadOptions(column_names=["user", "item", "rating", "ts"]),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(
            column_types={"user": pa.int64(), "item": pa.int64(), "rating": pa.float32(), "ts": pa.int64()}
        ),
    )
    n = parsed.num_rows
    return pa.table(
        {
            "user_id": pc.cast(parsed["user"], pa.string()),
            "item_id": pc.cast(parsed["item"], pa.string()),
            "event_type": pa.array(["rating"] * n, pa.string()),
            "timestamp": pc.cast(parsed["ts"], TIMESTAMP_TYPE),
            "value": parsed["rating"],
            "recommendation_id": pa.nulls(n, pa.string()),
        },
        schema=EVENTS_SCHEMA,
    )


def _title_year(title: str) -> int | None:
    match = _TITLE_YEAR.search(title)
    return int(match.group(1)) if match else None


def _jan_first(year: int | None) -> datetime | None:
    return datetime(year, 1, 1, tzinfo=timezone.utc) if year else None


def _read_abstracts(data_dir: Path) -> dict[str, str]:
    raw = json.loads(require_file(data_dir, ML1M_ABSTRACTS).read_text(encoding="utf-8"))
    return {str(k): v.strip() for k, v in raw.items() if v and not _ABSTRACT_FALLBACK.match(v.strip())}


def _read_posters(data_dir: Path) -> dict[str, str]:
    """Item id -> absolute poster path, leaving out the grey placeholders the manifest flags."""
    manifest = require_file(data_dir, ML1M_POSTER_MANIFEST)
    root = manifest.parent
    with manifest.open(newline="", encoding="utf-8") as handle:
        return {
            row["item_id"]: str(root / row["file"])
            for row in csv.DictReader(handle)
            if row["placeholder"].strip() == "0" and (root / row["file"]).is_file()
        }


def load_ml1m(data_dir: str | Path, *, with_text: bool = True, with_images: bool = True) -> Dataset:
    """ML-1M: all 3,883 movies, all 6,040 users, and the partial ratings (users 1-2999).

    Item text is the DBpedia abstract (fallback strings skipped, so missing text stays null);
    the image is the poster thumbnail path. `created_at` is 1 January of the title's year.
    """
    data_dir = Path(data_dir)
    with gzip.open(require_file(data_dir, ML1M_RATINGS), "rb") as handle:
        events = _ratings_table(handle.read().replace(b"::", b"\t"), "\t")

    abstracts = _read_abstracts(data_dir) if with_text else {}
    posters = _read_posters(data_dir) if with_images else {}
    rows = {name: [] for name in ITEMS_SCHEMA.names}
    for line in require_file(data_dir, ML1M_MOVIES).read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        item_id, title, genres = line.split("::")
        year = _title_year(title)
        rows["item_id"].append(item_id)
        rows["title"].append(title)
        rows["text"].append(abstracts.get(item_id))
        rows["categories"].append(genres.split("|") if genres else [])
        rows["image"].append({"path": posters[item_id], "bytes": None} if item_id in posters else None)
        rows["attributes"].append({"year": str(year)} if year else {})
        rows["created_at"].append(_jan_first(year))
    items = pa.table(rows, schema=ITEMS_SCHEMA)

    user_rows = {"user_id": [], "attributes": []}
    for line in require_file(data_dir, ML1M_USERS).read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        user_id, gender, age, occupation, zip_code = line.split("::")
        user_rows["user_id"].append(user_id)
        user_rows["attributes"].append(
            {
                "gender": gender,
                "age": ML1M_AGE_BUCKETS.get(age, age),
                "occupation": ML1M_OCCUPATIONS[int(occupation)],
                "zip": zip_code,
            }
        )
    users = pa.table(user_rows, schema=USERS_SCHEMA)
    return Dataset("ml-1m", items, events, users)


def load_ml100k(data_dir: str | Path) -> Dataset:
    """ML-100k: 100,000 ratings, 943 users, 1,682 items; `created_at` is the release date."""
    data_dir = Path(data_dir)
    events = _ratings_table(require_file(data_dir, ML100K_RATINGS).read_bytes(), "\t")

    genres = [
        line.split("|")[0]
        for line in require_file(data_dir, ML100K_GENRES).read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    rows = {name: [] for name in ITEMS_SCHEMA.names}
    for line in require_file(data_dir, ML100K_ITEMS).read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        item_id, title, release = fields[0], fields[1], fields[2]
        flags = fields[5:]
        released = datetime.strptime(release, "%d-%b-%Y").replace(tzinfo=timezone.utc) if release else None
        rows["item_id"].append(item_id)
        rows["title"].append(title)
        rows["text"].append(None)
        rows["categories"].append([g for g, flag in zip(genres, flags) if flag == "1"])
        rows["image"].append(None)
        rows["attributes"].append({"imdb_url": fields[4]} if fields[4] else {})
        rows["created_at"].append(released)
    items = pa.table(rows, schema=ITEMS_SCHEMA)

    user_rows = {"user_id": [], "attributes": []}
    for line in require_file(data_dir, ML100K_USERS).read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        user_id, age, gender, occupation, zip_code = line.split("|")
        user_rows["user_id"].append(user_id)
        user_rows["attributes"].append({"age": age, "gender": gender, "occupation": occupation, "zip": zip_code})
    users = pa.table(user_rows, schema=USERS_SCHEMA)
    return Dataset("ml-100k", items, events, users)


BUNDLED: dict[str, Callable[[Path], Dataset]] = {"ml-1m": load_ml1m, "ml-100k": load_ml100k}


def load_bundled(name: str, data_dir: str | Path) -> Dataset:
    """A bundled example dataset by name, from the data folder."""
    if name not in BUNDLED:
        raise ValueError(f"unknown dataset '{name}'; choose one of {sorted(BUNDLED)}, or set source.uri to your own files")
    return BUNDLED[name](Path(data_dir))
