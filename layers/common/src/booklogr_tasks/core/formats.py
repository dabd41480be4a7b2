"""Export formats: what each one's files are (content type, extension).

An export job declares its format when it registers (jobs.exports.base.register_export), so a
new format is one module: every finished export of every format is a row of the one `exports`
table (by its `format` column), and storage, downloads, the file list and the OpenAPI document
read what a format is from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Format names go into file names, URL paths and SQL values: short, lower-case, no separators.
FORMAT_NAME = re.compile(r"[a-z][a-z0-9]{0,19}")
EXTENSION = re.compile(r"[a-z0-9]{1,10}")
# What a file of no known format (BookLogr's own, or a format no longer registered) is served as.
UNKNOWN_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class ExportFormat:
    name: str
    content_type: str
    extension: str

    def __post_init__(self) -> None:
        if not FORMAT_NAME.fullmatch(self.name):
            raise ValueError(f"export format {self.name!r}: lower-case letters and digits only")
        if not EXTENSION.fullmatch(self.extension):
            raise ValueError(f"export format {self.name!r}: bad extension {self.extension!r}")
        if "/" not in self.content_type or ";" in self.content_type:
            raise ValueError(f"export format {self.name!r}: bad content type")


FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    known = FORMATS.get(fmt.name)
    if known is not None and known != fmt:
        raise ValueError(f"export format {fmt.name!r} is registered twice, differently")
    FORMATS[fmt.name] = fmt
    return fmt


def export_formats() -> list[str]:
    """The registered formats, in the order they registered."""
    return list(FORMATS)


def content_type_of(fmt: str) -> str:
    known = FORMATS.get(fmt)
    return UNKNOWN_CONTENT_TYPE if known is None else known.content_type


def file_extension(fmt: str) -> str:
    """The extension (without the dot) of a file of this export format."""
    known = FORMATS.get(fmt)
    return fmt if known is None else known.extension


def content_type_of_extension(extension: str) -> str:
    """The content type of a file named `*.<extension>` (BookLogr's own exports carry no
    format, only their extension): a format's that is named after its extension first."""
    named = FORMATS.get(extension)
    if named is not None and named.extension == extension:
        return named.content_type
    for fmt in FORMATS.values():
        if fmt.extension == extension:
            return fmt.content_type
    return UNKNOWN_CONTENT_TYPE
