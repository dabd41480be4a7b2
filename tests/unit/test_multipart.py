"""The streaming multipart form reader: fields in memory, the file part pulled chunk by chunk."""

from __future__ import annotations

import io

import pytest
from booklogr_tasks.core.errors import BadRequest, PayloadTooLarge
from booklogr_tasks.http import multipart
from booklogr_tasks.http.multipart import MultipartForm, boundary_of

BOUNDARY = b"xYzZY"


def body(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += b"--" + BOUNDARY + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += value + b"\r\n"
    return out + b"--" + BOUNDARY + b"--\r\n"


class Trickle(io.RawIOBase):
    """A request body that arrives a few bytes at a time, and says how much was read."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.position = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self.data[self.position : self.position + self.step]
        self.position += len(chunk)
        return chunk


def test_the_file_is_pulled_through_the_parser_as_it_is_read() -> None:
    content = bytes(range(256)) * 400  # 100 KiB, every byte value, CRLFs and dashes included
    data = body(
        ("type", b"goodreads", None),
        ("file", content, "library.csv"),
        ("allow_duplicates", b"true", None),
    )
    source = Trickle(data, 1000)
    form = MultipartForm(source, BOUNDARY, len(data), "file")

    assert form.find_file()
    assert form.fields == {"type": "goodreads"} and form.filename == "library.csv"
    file = form.file()
    first = file.read(10)
    # Only what the parser needed so far has been read: the body streams.
    assert source.position < len(data) // 2
    assert first + file.read() == content
    form.finish()
    assert form.fields == {"type": "goodreads", "allow_duplicates": "true"}
    assert source.position == len(data)


def test_a_form_without_the_file_part_is_read_to_its_end() -> None:
    data = body(("type", b"csv", None))
    form = MultipartForm(io.BytesIO(data), BOUNDARY, len(data), "file")
    assert not form.find_file()
    form.finish()
    assert form.fields == {"type": "csv"}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (body(("file", b"abc", "a.csv"))[:-10], "closing boundary"),
        (b"not multipart at all", "malformed"),
        (body(("file", b"a", "a.csv"), ("file", b"b", "b.csv")), "more than one"),
        (body(("type", b"x" * 2000, None)), "longer than"),
        (body(("type", b"\xff\xfe", None)), "not UTF-8"),
        (body(*[(f"f{i}", b"v", None) for i in range(20)]), "more than 16 parts"),
    ],
)
def test_malformed_forms_are_bad_requests(data: bytes, words: str) -> None:
    form = MultipartForm(io.BytesIO(data), BOUNDARY, len(data), "file")
    with pytest.raises(BadRequest, match=words):
        if form.find_file():
            form.file().read()
        form.finish()


def test_a_body_longer_than_its_limit_is_refused_while_reading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(multipart, "CHUNK_BYTES", 100)
    data = body(("file", b"x" * 5000, "a.csv"))
    form = MultipartForm(Trickle(data, 100), BOUNDARY, 1000, "file")
    assert form.find_file()
    with pytest.raises(PayloadTooLarge):
        form.file().read()


@pytest.mark.parametrize(
    "header",
    [None, "application/json", "multipart/form-data", "multipart/form-data; boundary="],
)
def test_content_types_without_a_multipart_boundary_are_refused(header: str | None) -> None:
    with pytest.raises(BadRequest):
        boundary_of(header)


def test_the_boundary_is_read_from_the_content_type() -> None:
    assert boundary_of('multipart/form-data; boundary="abc def"') == b"abc def"
