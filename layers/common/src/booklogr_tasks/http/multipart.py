"""A multipart/form-data upload, parsed as its body arrives: small fields in memory, the file part
handed on in pieces.

python-multipart's parser is push-based: `FormReader.feed` gives it the next piece of the body and
returns the pieces of the file part found in it, which the caller writes to the store. The server
feeds it from its receive loop as the socket delivers the body (http/asgi.py); on Lambda, where
API Gateway has the whole body, it is fed in slices of that (http/files.py). Either way at most one
piece of the file is in memory, whatever its size, and a body or file over its limit is refused
while it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from booklogr_tasks.core.errors import BadRequest, PayloadTooLarge

# Fields other than the file are a word or two (`type`, `allow_duplicates`).
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16


@dataclass
class StoredUpload:
    """An upload whose file is in the store under `key` (None: the form had no file part)."""

    key: str | None = None
    size: int = 0
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type header, or BadRequest."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise BadRequest("the body must be multipart/form-data (a form with the file in `file`)")
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:
        raise BadRequest("the multipart/form-data Content-Type has no valid boundary")
    return boundary


class FormReader:
    """Reads one form's parts in order: fields into `upload.fields`, the part named
    `file_field` returned piece by piece from feed(). `max_body_bytes` bounds the whole body,
    `max_file_bytes` the file part."""

    def __init__(
        self, boundary: bytes, file_field: str, max_body_bytes: int, max_file_bytes: int
    ) -> None:
        self.upload = StoredUpload()
        self.file_started = False
        self._file_field = file_field
        self._max_body, self._max_file = max_body_bytes, max_file_bytes
        self._body_bytes = 0
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._value = bytearray()
        self._in_file = False
        self._found: list[bytes] = []
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, data: bytes) -> list[bytes]:
        """Parse the next piece of the body; the pieces of the file part it held."""
        self._body_bytes += len(data)
        if self._body_bytes > self._max_body:
            raise PayloadTooLarge(f"the body is larger than the limit of {self._max_body} bytes")
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise BadRequest(f"the multipart body is malformed: {exc}") from None
        found, self._found = self._found, []
        return found

    def close(self) -> None:
        """The body has ended: BadRequest unless the form ended with it."""
        self._parser.finalize()
        if not self._ended:
            raise BadRequest("the multipart body ended before its closing boundary")

    # --- parser callbacks ---------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise BadRequest(f"the form has more than {MAX_PARTS} parts")
        self._headers.clear()
        self._name = None
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value).strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._headers.get(b"content-disposition"))
        if kind != b"form-data" or b"name" not in options:
            raise BadRequest("a part of the form has no Content-Disposition: form-data; name=...")
        self._name = _text(options[b"name"], "a field name")
        if self._name == self._file_field:
            if self.file_started:
                raise BadRequest(f"the form has more than one `{self._file_field}` part")
            self._in_file = self.file_started = True
            raw = options.get(b"filename")
            self.upload.filename = None if raw is None else _text(raw, "the file name")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.upload.size += end - start
            if self.upload.size > self._max_file:
                raise PayloadTooLarge(
                    f"The file is larger than the upload limit of {megabytes(self._max_file)}."
                )
            self._found.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise BadRequest(f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
        elif self._name is not None:
            text = _text(bytes(self._value), f"field {self._name!r}")
            self.upload.fields.setdefault(self._name, text)

    def _end(self) -> None:
        self._ended = True


def megabytes(size: int) -> str:
    """A size as a reader reads it: 32 MB."""
    return f"{size / 1_000_000:g} MB" if size >= 1_000_000 else f"{size} bytes"


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} in the form is not UTF-8 text") from None


__all__ = ["MAX_FIELD_BYTES", "MAX_PARTS", "FormReader", "StoredUpload", "boundary_of", "megabytes"]
