"""The demo's two record listeners (``monitor.add_listener``: run on the writer thread, before a record is stored).

* :func:`backdate` moves a seeded call into the past. The seeder makes every call for real, now, inside
  ``monitor.tags(**{SHIFT_TAG: seconds})``; the listener adds those seconds to the call's start and drops the tag.
  Every call of one scenario shares one shift, so the gaps between its calls and attempts (retry back-off
  included) stay as they really were.
* :func:`keep_private` drops the captured content (prompts, answers, tool arguments) of calls that must not
  keep it: the documents summarised by ``/summarize`` and developers' code. The demo captures content for
  everything else.
"""

from __future__ import annotations

from ..record import CallRecord

SHIFT_TAG = "demo.shift"
"""The tag carrying a seeded call's shift in seconds (negative: into the past). Never stored."""

PRIVATE_FEATURES = frozenset({"summarize", "code-review"})


def backdate(record: CallRecord) -> None:
    """Shift a seeded call's start by its :data:`SHIFT_TAG` (calls without the tag are left alone)."""
    shift = record.tags.get(SHIFT_TAG)
    if shift is None:
        return
    # a new dict: the tags dict of a call is shared with the other calls made in the same block
    record.tags = {k: v for k, v in record.tags.items() if k != SHIFT_TAG}
    record.started_at += float(shift)


def keep_private(record: CallRecord) -> None:
    """Forget the content of calls whose ``feature`` tag is in :data:`PRIVATE_FEATURES`."""
    if record.tags.get("feature") in PRIVATE_FEATURES:
        record.request_content = None
        record.response_content = None
        record.tool_arguments = None
