"""The pieces every curation step shares: document metadata keys, the filter base class and the
writer that records each dropped document with its step and reason.

A document's metadata always carries `repo`, `path`, `language`, `size_bytes` (bytes as read),
`stars`, `license`, `source`. A step that drops a document returns `self.drop(doc, reason, detail)`;
the drop goes to `DIR/dropped/<step>/<Class>-<rank>.parquet` (schema `DROPPED_SCHEMA`).
"""

from __future__ import annotations

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers import ParquetWriter

DROPPED_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("repo", pa.string()),
        ("path", pa.string()),
        ("language", pa.string()),
        ("size_bytes", pa.int64()),
        ("step", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


class DroppedRecord:
    """Adapter turning a dropped document into one `DROPPED_SCHEMA` row for `step`."""

    def __init__(self, step: str):
        self.step = step

    def __call__(self, _writer, doc: Document) -> dict:
        meta = doc.metadata
        return {
            "id": doc.id,
            "repo": meta.get("repo", ""),
            "path": meta.get("path", ""),
            "language": meta.get("language") or "unknown",
            "size_bytes": int(meta.get("size_bytes", 0)),
            "step": self.step,
            "reason": meta["filter_reason"],  # set by datatrove's BaseFilter from our (False, reason)
            "detail": str(meta.get("drop_detail", ""))[:500],
        }


def dropped_writer(out_dir: str, step: str, writer_tag: str) -> ParquetWriter:
    """The exclusion writer of one step instance: `out_dir/dropped/<step>/<writer_tag>-<rank>.parquet`."""
    return ParquetWriter(
        f"{out_dir}/dropped",
        output_filename=f"{step}/{writer_tag}-${{rank}}.parquet",
        adapter=DroppedRecord(step),
        schema=DROPPED_SCHEMA,
        use_content_defined_chunking=False,
        write_page_index=False,
        max_file_size=-1,
    )


class CurationFilter(BaseFilter):
    """A datatrove filter with a step name; `drop()` records the reason and a human detail."""

    step = "filter"

    def __init__(self, out_dir: str | None = None, **kwargs):
        writer = dropped_writer(out_dir, self.step, type(self).__name__) if out_dir else None
        super().__init__(exclusion_writer=writer, **kwargs)

    @staticmethod
    def drop(doc: Document, reason: str, detail: object = "") -> tuple[bool, str]:
        doc.metadata["drop_detail"] = detail
        return False, reason
