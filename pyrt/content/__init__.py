"""Content-addressed blob storage: verified, atomic, resumable ingests; garbage collection."""

from pyrt.content.gc import GcResult, collect
from pyrt.content.store import ContentStore, IngestStatus, Writer

__all__ = ["ContentStore", "GcResult", "IngestStatus", "Writer", "collect"]
