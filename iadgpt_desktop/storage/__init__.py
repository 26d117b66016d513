"""The inspection history: a database (SQLite by default) plus image and mask files in the data folder.

Imports no Qt; the model library never imports this package.
"""

from iadgpt_desktop.storage.db import Database
from iadgpt_desktop.storage.errors import NotFoundError, StorageError
from iadgpt_desktop.storage.files import FileStore
from iadgpt_desktop.storage.records import (
    DECISIONS,
    UNDECIDED,
    InspectionFilter,
    InspectionRecord,
    InspectionRow,
    MessageRow,
)

__all__ = [
    "DECISIONS",
    "UNDECIDED",
    "Database",
    "FileStore",
    "InspectionFilter",
    "InspectionRecord",
    "InspectionRow",
    "MessageRow",
    "NotFoundError",
    "StorageError",
]
