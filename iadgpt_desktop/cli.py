"""`iadgpt`: the model library's command line, plus `inspect --db` writing into the app's history.

The model library never imports the database layer; this entry point adds it around the library's
own `inspect`, so headless batch runs show up in the desktop app's History view.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from iadgpt import cli as model_cli

log = logging.getLogger("iadgpt")


def _history_sink(args: argparse.Namespace):
    """A callback that stores each inspection (image copy, mask, result) in the history database."""
    from iadgpt_desktop.settings import default_data_dir
    from iadgpt_desktop.storage import repository
    from iadgpt_desktop.storage.db import Database
    from iadgpt_desktop.storage.records import InspectionRecord

    spec = args.db
    if "://" in spec:
        data_dir = Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()
        db = Database.open(data_dir, spec)
    else:
        db = Database.open(Path(spec).expanduser())
    product_id = None
    if args.product:
        with db.Session.begin() as s:
            product_id = repository.get_or_create_product(s, args.product, args.class_name)

    def store(path: Path, result, mask: Path) -> None:
        image_rel, sha = db.files.store_image(path)
        mask_rel = db.files.store_mask(result.anomaly_map)
        record = InspectionRecord.from_result(result, source=f"cli:{path.parent}", image_path=image_rel,
                                              image_sha256=sha, mask_path=mask_rel, product_id=product_id)
        with db.Session.begin() as s:
            repository.add_inspection(s, record)

    return db, store


def main(argv: list[str] | None = None) -> int:
    parser = model_cli.build_parser()
    inspect = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "inspect")[1]
    inspect.add_argument("--db", help="store every result in the desktop app's history: its data folder, "
                                      "or an SQLAlchemy URL (then --data-dir holds images and masks)")
    inspect.add_argument("--data-dir", help="with a --db URL: where stored images and masks go")
    inspect.add_argument("--product", help="with --db: the product name the inspections belong to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    db = None
    try:
        if getattr(args, "db", None):
            db, args.on_result = _history_sink(args)
        return model_cli.run(args)
    except Exception as exc:  # noqa: BLE001 - the command-line boundary: one sentence, non-zero exit
        from iadgpt_desktop.storage.errors import StorageError

        if isinstance(exc, StorageError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
    finally:
        if db is not None:
            db.close()


if __name__ == "__main__":
    sys.exit(main())
