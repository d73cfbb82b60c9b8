"""Write ML-100k out as a shop's CSV export, standing in for a team's own files (docs/own-data.md).

    .venv/bin/python scripts/make_shop_export.py OUT_DIR [--data-dir DIR] [--users N]

It writes the shapes a product database hands over, with its own column names and none of dynrec's:
- `products.csv`: sku, name, category (";"-separated), launched (ISO date), price; no images, no
  descriptions;
- `customers.csv`: customer, age, gender, occupation;
- `interactions.csv`: customer, sku, action ("rated"), stars, at (milliseconds since 1970).
`docs/own-data.md` maps these columns with `source.columns` and imports them. `--users` keeps the
first N customers (a small cut for tests).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynrec.config import DynrecConfig  # noqa: E402
from dynrec.data import load_ml100k  # noqa: E402


def write_export(out: Path, data_dir: Path, users: int = 0) -> None:
    dataset = load_ml100k(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep = None if not users else {str(u) for u in range(1, users + 1)}
    with open(out / "products.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sku", "name", "category", "launched", "price"])
        for row in dataset.items.to_pylist():
            launched = row["created_at"].date().isoformat() if row["created_at"] else ""
            price = f"{(int(row['item_id']) * 37) % 40 + 4.99:.2f}"
            writer.writerow([f"SKU-{row['item_id']}", row["title"], ";".join(row["categories"] or []), launched, price])
    with open(out / "customers.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "age", "gender", "occupation"])
        for row in dataset.users.to_pylist():
            if keep is None or row["user_id"] in keep:
                attributes = dict(row["attributes"])
                writer.writerow([f"C{row['user_id']}", attributes["age"], attributes["gender"], attributes["occupation"]])
    with open(out / "interactions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "sku", "action", "stars", "at"])
        for row in dataset.events.to_pylist():
            if keep is None or row["user_id"] in keep:
                millis = int(row["timestamp"].timestamp()) * 1000
                writer.writerow([f"C{row['user_id']}", f"SKU-{row['item_id']}", "rated", f"{row['value']:g}", millis])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", type=Path, default=None, help="the bundled datasets (default: DYNREC_DATA_DIR)")
    parser.add_argument("--users", type=int, default=0, help="keep only the first N customers (0: all)")
    args = parser.parse_args()
    write_export(args.out, args.data_dir or DynrecConfig().data.data_dir, args.users)
    print(f"wrote {args.out}/products.csv, customers.csv and interactions.csv")


if __name__ == "__main__":
    main()
