"""Metadata in SQLite (WAL), with a versioned schema and ordered migrations."""

from pyrt.metadata.db import Database
from pyrt.metadata.schema import MIGRATIONS, Migration, migrate

__all__ = ["MIGRATIONS", "Database", "Migration", "migrate"]
