"""Which WAL segment a backup ends in, and which segments a restore finds missing (localstack/backup.py)."""

from __future__ import annotations

import json

from localstack.backup import _last_segment, missing_segments


def _manifest(tmp_path, *ranges: tuple[int, str]):
    path = tmp_path / "backup_manifest"
    path.write_text(json.dumps({"WAL-Ranges": [{"Timeline": t, "Start-LSN": "0/0", "End-LSN": end} for t, end in ranges]}))
    return path


def test_the_last_segment_is_where_the_backup_ends(tmp_path):
    assert _last_segment(_manifest(tmp_path, (1, "0/2000120"))) == "000000010000000000000002"
    assert _last_segment(_manifest(tmp_path, (1, "1/FF000028"))) == "0000000100000001000000FF"
    # A later timeline (after a failover) is the one that counts.
    assert _last_segment(_manifest(tmp_path, (1, "0/5000000"), (2, "0/7000060"))) == "000000020000000000000007"


def test_an_end_on_a_segment_boundary_needs_only_the_segment_before(tmp_path):
    assert _last_segment(_manifest(tmp_path, (1, "0/3000000"))) == "000000010000000000000002"
    assert _last_segment(_manifest(tmp_path, (1, "2/0"))) == "0000000100000001000000FF"


def test_missing_segments_span_timelines_and_log_files():
    first = "0000000100000000000000FE"
    assert missing_segments(["0000000100000000000000FE", "000000020000000100000000"], first) == [
        "0000000100000000000000FF"]
    assert missing_segments([], first) == [first]
    assert missing_segments(["0000000100000000000000FE", "0000000100000000000000FF"], first) == []
