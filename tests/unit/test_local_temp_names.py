"""A pending export's temporary name: unique without a system call, also across a fork."""

from __future__ import annotations

import os
from pathlib import Path

from booklogr_tasks.storage import local


def test_two_pending_files_for_one_key_never_share_a_temporary_name(tmp_path: Path) -> None:
    first = local._LocalPending(tmp_path, "export_csv-1-1-aaaa.csv")
    second = local._LocalPending(tmp_path, "export_csv-1-1-aaaa.csv")
    try:
        assert first.temp != second.temp
        assert first.temp.exists() and second.temp.exists()
    finally:
        first.discard()
        second.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_forked_child_gets_a_tag_of_its_own() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its tag and leaves at once
        os.write(write_end, local._PROCESS_TAG.encode())
        os._exit(0)
    os.close(write_end)
    child_tag = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child_tag and child_tag != local._PROCESS_TAG


def test_a_missing_folder_is_made_when_the_first_file_goes_in(tmp_path: Path) -> None:
    pending = local._LocalPending(tmp_path / "store", "uploads/7/abc")
    pending.write(b"title\n")
    pending.complete()
    pending.publish()
    assert (tmp_path / "store" / "uploads" / "7" / "abc").read_bytes() == b"title\n"
