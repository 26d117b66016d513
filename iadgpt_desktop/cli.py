"""`iadgpt`: the model library's command line, plus `inspect --db` writing into the app's history.

The model library never imports the database layer; this entry point adds it around the library's
own `inspect`, so headless batch runs show up in the desktop app's History view.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from iadgpt import cli as model_cli

log = logging.getLogger("iadgpt")


def _history_sink(args: argparse.Namespace):
    """Callbacks that store each inspection (image copy, mask, result) in the history database.

    Returns (db, store, skip): `store(path, result, mask)` keeps one result, `skip(path)` is true for a
    file whose content was already inspected from the same batch argument, so an interrupted batch
    resumes where it stopped instead of inspecting a file twice.
    """
    from iadgpt.weights import sha256_file
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
    source_of = _batch_sources(args.paths)

    def skip(path: Path) -> bool:
        # Asked of the database for every file, just before it is inspected, so a run beside another
        # one over the same folder skips what the other has stored meanwhile (the claim in `store`
        # settles the rest: two runs at once never both store an image).
        try:
            sha = sha256_file(path)
        except OSError:
            return False  # unreadable: let the inspection report it as an image error
        with db.Session() as s:
            return repository.is_inspected(s, source_of(path), sha)

    def store(path: Path, result, mask: Path) -> None:
        # Image and mask files are written atomically before the row, one transaction per image, so a
        # kill at any moment leaves either a whole row (with its files) or none.
        source = source_of(path)
        image_rel, sha = db.files.store_image(path)
        mask_rel = db.files.store_mask(result.anomaly_map)
        record = InspectionRecord.from_result(result, source=source, image_path=image_rel,
                                              image_sha256=sha, mask_path=mask_rel, product_id=product_id,
                                              file_name=Path(path).name)
        with db.Session.begin() as s:
            repository.add_batch_inspection(s, record)

    return db, store, skip


def _batch_sources(paths: list[str]) -> Callable[[Path], str]:
    """A function giving each image the `source` of the batch argument it was found through.

    The source is "cli:" + the resolved folder or file named on the command line, the same on every
    run, so a rerun of the same batch finds what it already stored. Arguments are tried in the order
    given, as `iter_image_files` keeps the first argument that reaches a file.
    """
    arguments = [(Path(os.path.abspath(p)), f"cli:{Path(p).resolve()}") for p in paths]

    def source_of(path: Path) -> str:
        absolute = Path(os.path.abspath(path))
        for root, source in arguments:
            if absolute == root or absolute.is_relative_to(root):
                return source
        return f"cli:{absolute.resolve().parent}"

    return source_of


def cmd_doctor(args: argparse.Namespace) -> int:
    from iadgpt_desktop.doctor import doctor

    return doctor(smoke=not args.quick)


def _add_doctor(sub) -> None:
    doc = sub.add_parser("doctor", help="check the installation: libraries, GPU, weights, data folder, Qt")
    doc.add_argument("--quick", action="store_true", help="skip the CPU smoke test of the no-download presets")
    doc.set_defaults(func=cmd_doctor)


def main(argv: list[str] | None = None) -> int:
    parser = model_cli.build_parser(add_commands=_add_doctor)  # doctor checks the app's settings, db and Qt
    inspect = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "inspect")[1]
    inspect.add_argument("--db", help="store every result in the desktop app's history: its data folder, "
                                      "or an SQLAlchemy URL (then --data-dir holds images and masks); a rerun of the "
                                      "same batch skips images it already stored")
    inspect.add_argument("--data-dir", help="with a --db URL: where stored images and masks go")
    inspect.add_argument("--product", help="with --db: the product name the inspections belong to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    db = None
    try:
        if getattr(args, "db", None):
            db, args.on_result, args.skip = _history_sink(args)
        return model_cli.run(args)
    except Exception as exc:  # noqa: BLE001 - the command-line boundary: one sentence, non-zero exit
        from sqlalchemy.exc import SQLAlchemyError

        from iadgpt_desktop.storage.errors import StorageError, classify

        if isinstance(exc, StorageError | SQLAlchemyError):
            print(f"error: {classify(exc)}", file=sys.stderr)
            return 2
        raise
    finally:
        if db is not None:
            db.close()


if __name__ == "__main__":
    sys.exit(main())
