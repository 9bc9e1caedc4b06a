"""What a writer killed on the way leaves beside its target is removed, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

from faxgw.fsutil import remove_temporaries


def test_only_temporary_dot_names_are_removed_and_links_are_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    (folder / "docs").mkdir(parents=True)
    outside = tmp_path / "outside.tmp"
    outside.write_text("not the job's")
    for name in (".fax-1.tif.abcd1234.tmp", ".fax-1.tif.ef56.part", "fax-1.pdf",
                 "job.json", "report.tmp", ".notes"):
        (folder / name).write_text(name)
    (folder / "docs" / ".order.pdf.0a1b.tmp").write_text("below: not this call's")
    (folder / ".link.tmp").symlink_to(outside)
    (folder / ".folder.tmp").mkdir()

    removed = remove_temporaries(folder)

    assert sorted(removed) == [".fax-1.tif.abcd1234.tmp", ".fax-1.tif.ef56.part", ".link.tmp"]
    assert sorted(os.listdir(folder)) == [".folder.tmp", ".notes", "docs", "fax-1.pdf",
                                          "job.json", "report.tmp"]
    assert outside.read_text() == "not the job's"
    assert (folder / "docs" / ".order.pdf.0a1b.tmp").exists()
    assert remove_temporaries(tmp_path / "missing") == []
