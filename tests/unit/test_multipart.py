"""The streaming multipart form reader: fields in memory, the file part handed on piece by piece."""

from __future__ import annotations

import pytest
from booklogr_tasks.core.errors import BadRequest, PayloadTooLarge
from booklogr_tasks.http.multipart import FormReader, boundary_of

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


def feed(reader: FormReader, data: bytes, step: int) -> list[bytes]:
    """The body in pieces of `step` bytes, as a socket delivers it; the file's pieces."""
    found: list[bytes] = []
    for start in range(0, len(data), step):
        found += reader.feed(data[start : start + step])
    reader.close()
    return found


def test_the_file_is_handed_on_as_the_body_arrives() -> None:
    content = bytes(range(256)) * 400  # 100 KiB, every byte value, CRLFs and dashes included
    data = body(
        ("type", b"goodreads", None),
        ("file", content, "library.csv"),
        ("allow_duplicates", b"true", None),
    )
    reader = FormReader(BOUNDARY, "file", len(data), len(content))
    first = reader.feed(data[:1000])
    assert reader.file_started and reader.upload.fields == {"type": "goodreads"}
    assert reader.upload.filename == "library.csv"
    # What arrived of the file so far is handed on at once: nothing waits for the whole body.
    assert 0 < len(b"".join(first)) < 1000
    pieces = first + feed(reader, data[1000:], 1000)
    assert b"".join(pieces) == content and reader.upload.size == len(content)
    assert max(len(p) for p in pieces) <= 1000
    assert reader.upload.fields == {"type": "goodreads", "allow_duplicates": "true"}


def test_a_form_without_the_file_part_is_read_to_its_end() -> None:
    data = body(("type", b"csv", None))
    reader = FormReader(BOUNDARY, "file", len(data), 100)
    assert feed(reader, data, 7) == []
    assert not reader.file_started and reader.upload.fields == {"type": "csv"}


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
    reader = FormReader(BOUNDARY, "file", len(data), len(data))
    with pytest.raises(BadRequest, match=words):
        feed(reader, data, 100)


def test_a_body_or_a_file_over_its_limit_is_refused_while_it_arrives() -> None:
    data = body(("file", b"x" * 5000, "a.csv"))
    reader = FormReader(BOUNDARY, "file", 1000, 10_000)
    with pytest.raises(PayloadTooLarge, match="body is larger than the limit of 1000"):
        feed(reader, data, 100)
    reader = FormReader(BOUNDARY, "file", 10_000, 1000)
    with pytest.raises(PayloadTooLarge, match="upload limit of 1000 bytes"):
        feed(reader, data, 100)


@pytest.mark.parametrize(
    "header",
    [None, "application/json", "multipart/form-data", "multipart/form-data; boundary="],
)
def test_content_types_without_a_multipart_boundary_are_refused(header: str | None) -> None:
    with pytest.raises(BadRequest):
        boundary_of(header)


def test_the_boundary_is_read_from_the_content_type() -> None:
    assert boundary_of('multipart/form-data; boundary="abc def"') == b"abc def"
