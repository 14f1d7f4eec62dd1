"""Store: SQLite through sqlite-utils. Knows the `CallRecord` shape, nothing of httpx or HTTP serving."""

from .database import Database
from .writer import Writer, WriterStats

__all__ = ["Database", "Writer", "WriterStats"]
