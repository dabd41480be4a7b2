"""A multipart/form-data body read as a stream: small fields in memory, one file part streamed.

python-multipart's parser is push-based (it calls back with each piece it finds); storage pulls
(`save_upload` reads a file object). MultipartForm bridges the two: reading the file part pulls
the next chunk of the body through the parser, so at most one chunk of the file is in memory,
whatever its size, and a body that is too large is refused while it is read.
"""

from __future__ import annotations

import io
from collections import deque
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from booklogr_tasks.core.errors import BadRequest, PayloadTooLarge

CHUNK_BYTES = 64 * 1024
# Fields other than the file are a word or two (`type`, `allow_duplicates`).
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type header, or BadRequest."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise BadRequest("the body must be multipart/form-data (a form with the file in `file`)")
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:
        raise BadRequest("the multipart/form-data Content-Type has no valid boundary")
    return boundary


class MultipartForm:
    """Reads the form's parts in order: fields into `fields`, the part named `file_field`
    through file(), a file object that ends where the part ends."""

    def __init__(self, body: BinaryIO, boundary: bytes, max_body_bytes: int, file_field: str):
        self.fields: dict[str, str] = {}
        self.filename: str | None = None  # of the file part, as the client named it
        self._body = body
        self._file_field = file_field
        self._max_body = max_body_bytes
        self._read_bytes = 0
        self._parts = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._value = bytearray()
        self._in_file = False
        self._file_started = False
        self._file_ended = False
        self._chunks: deque[bytes] = deque()
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

    # --- reading ------------------------------------------------------------------------------

    def find_file(self) -> bool:
        """Read up to the start of the file part: True when there is one, False at the end."""
        while not self._file_started and not self._ended:
            self._pump()
        return self._file_started

    def file(self) -> BinaryIO:
        """The file part as a (buffered) file object; call after find_file() returned True."""
        return io.BufferedReader(_FilePart(self), CHUNK_BYTES)

    def read(self, size: int = -1) -> bytes:
        """The file part's next bytes (up to `size`); b"" once the part has ended."""
        while not self._chunks and not self._file_ended:
            self._pump()
        if not self._chunks:
            return b""
        chunk = self._chunks.popleft()
        if 0 <= size < len(chunk):
            self._chunks.appendleft(chunk[size:])
            chunk = chunk[:size]
        return chunk

    def finish(self) -> None:
        """Read the rest of the body (the fields after the file)."""
        while not self._ended:
            self._pump()
        self._chunks.clear()

    def _pump(self) -> None:
        chunk = self._body.read(CHUNK_BYTES)
        if not chunk:
            self._parser.finalize()
            if not self._ended:
                raise BadRequest("the multipart body ended before its closing boundary")
            return
        self._read_bytes += len(chunk)
        if self._read_bytes > self._max_body:
            raise PayloadTooLarge(f"the body is larger than the limit of {self._max_body} bytes")
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"the multipart body is malformed: {exc}") from None

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
            if self._file_started:
                raise BadRequest(f"the form has more than one `{self._file_field}` part")
            self._in_file = self._file_started = True
            raw = options.get(b"filename")
            self.filename = None if raw is None else _text(raw, "the file name")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self._chunks.append(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise BadRequest(f"form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self._file_ended = True
        elif self._name is not None:
            self.fields.setdefault(self._name, _text(bytes(self._value), f"field {self._name!r}"))

    def _end(self) -> None:
        self._ended = True
        self._file_ended = True


class _FilePart(io.RawIOBase):
    def __init__(self, form: MultipartForm) -> None:
        self._form = form

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._form.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} in the form is not UTF-8 text") from None
