"""Documents that travel with the job: two hosts (two spools) on one PostgreSQL schema.

A job taken at one host is sent by the other from the files kept in the database; the
files are stored before the job can be claimed, brought to the other host as the spool
writes (private, whole), kept within limits for failed jobs, and purged everywhere.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import psycopg
import pytest

from faxgw.app import cluster_spool
from faxgw.app.cluster_spool import ClusterSpool
from faxgw.app.console import attachment
from faxgw.app.submit import submit
from faxgw.app.wiring import build_worker, open_spool, open_store
from faxgw.config import Config
from faxgw.domain.errors import StoreError
from faxgw.domain.jobs import JobState
from faxgw.intake.register import register
from faxgw.store.postgres.doc_cache import bring
from faxgw.store.postgres.documents import CHUNK_BYTES, DocumentTable
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import FakeClock, MakeConfig
from .test_store_postgres import (  # noqa: F401
    _admin,
    _raw,
    migrated,
    pooled_backends,
    schema,
    terminate_pool,
)

NUMBER = "+4930123456"


def _host(make_config: MakeConfig, tmp_path: Path, name: str, url: str,
          server: FaxSMTPServer | None = None) -> Config:
    """One gateway host: its own spool, the shared database."""
    return make_config(server, spool={"dir": str(tmp_path / name / "spool"),
                                      "settle_seconds": 0},
                       store={"url": url})


def _cluster_spool(config: Config) -> ClusterSpool:
    spool = open_spool(config)
    assert isinstance(spool, ClusterSpool)
    spool.ensure()
    return spool


def _stored(url: str, job_id: str) -> dict[str, int]:
    with _raw(url) as db:
        return {str(path): int(str(size)) for path, size in db.execute(
            "SELECT path, size FROM job_files WHERE job_id = %s", (job_id,)).fetchall()}


def _attached(server: FaxSMTPServer) -> bytes:
    [received] = server.messages
    [part] = list(received.message.iter_attachments())
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def _send_all(config: Config, clock: FakeClock | None = None, *,
              render_processes: int = 0) -> None:
    worker = build_worker(config, render_processes=render_processes,
                          **({} if clock is None else {"clock": clock}))
    try:
        asyncio.run(worker.run_once())
    finally:
        worker.close()


def _assert_private(folder: Path) -> None:
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.rglob("*"):
        wanted = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.lstat().st_mode) == wanted, path


def test_a_job_taken_at_host_a_is_sent_by_host_b(
    migrated: str, tmp_path: Path, make_config: MakeConfig,  # noqa: F811
    smtp_server: FaxSMTPServer, samples: Path,
) -> None:
    """Host A takes and renders the job; host B, whose spool never saw it, sends the very
    attachment A rendered, without rendering it again."""
    host_a = _host(make_config, tmp_path, "a", migrated, smtp_server)
    host_b = _host(make_config, tmp_path, "b", migrated, smtp_server)
    job = submit(host_a, NUMBER, [samples / "letter.pdf"])
    assert job.state is JobState.QUEUED
    rendered_at_a = (tmp_path / "a" / "spool" / "jobs" / job.id / f"fax-{job.id}.pdf")
    assert _stored(migrated, job.id) == {
        "job.json": (tmp_path / "a/spool/jobs" / job.id / "job.json").stat().st_size,
        "docs/letter.pdf": (samples / "letter.pdf").stat().st_size,
        f"fax-{job.id}.pdf": rendered_at_a.stat().st_size,
    }

    _send_all(host_b)

    assert _attached(smtp_server) == rendered_at_a.read_bytes()
    store = open_store(host_b)
    try:
        assert store.get(job.id).state is JobState.SENT
        events = [event.event for event in store.history(job.id)]
    finally:
        store.close()
    assert events.count("rendered") == 1  # at A only
    assert not (tmp_path / "b" / "spool" / "jobs" / job.id).exists()
    copy = tmp_path / "b" / "spool" / "state" / "documents" / job.id
    assert (copy / f"fax-{job.id}.pdf").read_bytes() == rendered_at_a.read_bytes()
    _assert_private(copy)


@pytest.mark.parametrize("render_processes", [0, 1])
def test_a_job_not_rendered_yet_is_rendered_at_host_b_from_the_originals(
    migrated: str, tmp_path: Path, make_config: MakeConfig,  # noqa: F811
    smtp_server: FaxSMTPServer, samples: Path, render_processes: int,
) -> None:
    """A took the job and stopped before rendering it: B brings the originals, renders
    (in a thread, or in a render process, which finds them where B brought them), sends,
    and keeps its attachment in the database, where a third host shows it."""
    host_a = _host(make_config, tmp_path, "a", migrated, smtp_server)
    spool_a = _cluster_spool(host_a)
    store = open_store(host_a)
    try:
        intake = spool_a.submit(NUMBER, [samples / "letter.pdf", samples / "note.txt"])
        job = register(intake, config=host_a, store=store, documents=spool_a)
    finally:
        store.close()
    assert set(_stored(migrated, job.id)) == {"job.json", "docs/letter.pdf", "docs/note.txt"}

    _send_all(_host(make_config, tmp_path, "b", migrated, smtp_server),
              render_processes=render_processes)

    sent = _attached(smtp_server)
    assert sent.startswith(b"%PDF")
    assert f"fax-{job.id}.pdf" in _stored(migrated, job.id)
    shown_job, path = attachment(_host(make_config, tmp_path, "c", migrated), job.id)
    assert shown_job.state is JobState.SENT
    assert path is not None and path.read_bytes() == sent
    assert path.is_relative_to(tmp_path / "c" / "spool" / "state" / "documents")


def test_files_are_stored_before_the_job_is_handed_on_and_held_while_they_cannot_be(
    migrated: str, tmp_path: Path, make_config: MakeConfig, samples: Path,  # noqa: F811
) -> None:
    """A drop's files are in the database when the scan hands the job on to be registered;
    with the database out of reach the job is held (its folder kept), and handed on by the
    first scan that can store it."""
    config = _host(make_config, tmp_path, "a", migrated)
    good = _cluster_spool(config)
    drop = config.spool.dir / "outgoing" / NUMBER
    drop.mkdir(parents=True)
    (drop / "note.txt").write_bytes((samples / "note.txt").read_bytes())
    [intake] = list(good.scan_iter())
    assert set(_stored(migrated, intake.id)) == {"job.json", "docs/note.txt"}

    unreachable = ClusterSpool(config.spool.dir, max_input_bytes=10**9, settle_seconds=0,
                               table=DocumentTable("postgresql://nobody@127.0.0.1:1/none"))
    (drop / "second.txt").write_bytes(b"second page\n")
    assert list(unreachable.scan_iter()) == []
    [held] = list(unreachable._held.values())
    assert (config.spool.dir / "jobs" / held.id / "docs" / "second.txt").exists()
    assert _stored(migrated, held.id) == {}
    # faxgw submit answers at once: an error, and nothing kept to be sent later.
    with pytest.raises(StoreError, match="cannot be stored"):
        unreachable.submit(NUMBER, [samples / "note.txt"])
    assert sorted(path.name for path in (config.spool.dir / "jobs").iterdir()) == sorted(
        [intake.id, held.id])
    unreachable.table = good.table  # the database is back
    assert [intake.id for intake in unreachable.scan_iter()] == [held.id]
    assert set(_stored(migrated, held.id)) == {"job.json", "docs/second.txt"}


def test_a_batch_of_drops_is_stored_in_one_go_all_or_nothing(
    migrated: str, tmp_path: Path, make_config: MakeConfig, samples: Path,  # noqa: F811
) -> None:
    config = _host(make_config, tmp_path, "a", migrated)
    spool = _cluster_spool(config)
    for n in range(5):
        drop = config.spool.dir / "outgoing" / f"+49301234{n:04d}"
        drop.mkdir(parents=True)
        (drop / "note.txt").write_bytes((samples / "note.txt").read_bytes())
    [batch] = list(spool.scan_batches())
    assert len(batch) == 5
    for intake in batch:
        assert set(_stored(migrated, intake.id)) == {"job.json", "docs/note.txt"}

    # A job whose file cannot be read spoils the transaction: the other job keeps nothing.
    folder = config.spool.dir / "jobs" / batch[0].id
    with pytest.raises(OSError):
        spool.table.put_all([("job-a", [("docs/note.txt", folder / "docs" / "note.txt")]),
                             ("job-b", [("docs/gone.txt", folder / "docs" / "gone.txt")])])
    assert _stored(migrated, "job-a") == {} and _stored(migrated, "job-b") == {}


def test_a_large_file_travels_in_chunks_whole_and_private(
    migrated: str, tmp_path: Path,  # noqa: F811
) -> None:
    """A file of several chunks comes back byte for byte; a changed file is brought again,
    one that did not change is left as it is."""
    data = os.urandom(3 * CHUNK_BYTES + 12345)
    source = tmp_path / "big.pdf"
    source.write_bytes(data)
    table = DocumentTable(migrated)
    try:
        table.put("job1", [("fax-job1.pdf", source), ("job.json", source)])
        with _raw(migrated) as db:
            assert db.execute("SELECT count(*) FROM job_file_chunks WHERE path = "
                              "'fax-job1.pdf'").fetchone() == (4,)
        folder = tmp_path / "copy" / "job1"
        assert bring(table, "job1", folder)
        assert (folder / "fax-job1.pdf").read_bytes() == data
        _assert_private(folder)
        before = (folder / "job.json").stat().st_ino
        source.write_bytes(b"smaller now")
        table.put("job1", [("fax-job1.pdf", source)], replace="fax-")
        assert bring(table, "job1", folder)
        assert (folder / "fax-job1.pdf").read_bytes() == b"smaller now"
        assert (folder / "job.json").stat().st_ino == before  # unchanged: not written again
        assert not bring(table, "no-such-job", tmp_path / "copy" / "none")
        assert not (tmp_path / "copy" / "none").exists()
    finally:
        table.close()


def test_a_stored_name_that_leads_out_of_the_folder_is_refused(
    migrated: str, tmp_path: Path,  # noqa: F811
) -> None:
    with _raw(migrated) as db:
        db.execute("INSERT INTO job_files (job_id, path, size) VALUES ('j', '../escape', 1)")
        db.execute("INSERT INTO job_file_chunks VALUES ('j', '../escape', 0, 'x')")
    table = DocumentTable(migrated)
    try:
        with pytest.raises(StoreError, match="not allowed"):
            bring(table, "j", tmp_path / "copy" / "j")
    finally:
        table.close()
    assert not (tmp_path / "copy" / "escape").exists()


def test_the_table_connects_again_after_the_server_dropped_it(
    migrated: str, tmp_path: Path,  # noqa: F811
) -> None:
    source = tmp_path / "a.txt"
    source.write_bytes(b"a")
    table = DocumentTable(migrated)
    try:
        table.put("j", [("job.json", source)])
        ended = terminate_pool(table._db())
        assert [item.path for item in table.listing("j")] == ["job.json"]
        assert not set(pooled_backends(table._db())) & set(ended)
    finally:
        table.close()


def test_a_failed_job_keeps_its_originals_in_the_database_up_to_the_limit(
    migrated: str, tmp_path: Path, make_config: MakeConfig, samples: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Within the limit, any host can restore a failed job (``faxgw retry``); beyond it the
    originals stay in the ``failed/`` folder of the host that took it."""
    monkeypatch.setattr(cluster_spool, "FAILED_ORIGINALS_MAX_BYTES", 1000)
    config_a = _host(make_config, tmp_path, "a", migrated)
    spool_a = _cluster_spool(config_a)
    spool_b = _cluster_spool(_host(make_config, tmp_path, "b", migrated))
    small = spool_a.submit(NUMBER, [samples / "note.txt"])
    large = spool_a.submit(NUMBER, [samples / "letter.pdf"])
    assert (samples / "note.txt").stat().st_size < 1000 < (samples / "letter.pdf").stat().st_size
    for intake in (small, large):
        kept = spool_a.keep_failed(intake.id)
        assert kept == config_a.spool.dir / "failed" / intake.id
    assert set(_stored(migrated, small.id)) == {"job.json", "docs/note.txt"}
    assert set(_stored(migrated, large.id)) == {"job.json"}
    assert spool_b.restore_failed(small.id)
    assert [path.name for path in spool_b.documents(small.id)] == ["note.txt"]
    assert not spool_b.restore_failed(large.id)
    # A job whose attachment was made failed at the mail server: it is sent as it is.
    rendered = spool_a.submit(NUMBER, [samples / "note.txt"])
    made = tmp_path / f"fax-{rendered.id}.pdf"
    made.write_bytes((samples / "letter.pdf").read_bytes())
    spool_a.keep_rendered(rendered.id, made)
    assert not spool_b.restore_failed(rendered.id)
    assert spool_a.restore_failed(large.id)  # where it was taken: and stored again, whole
    assert set(_stored(migrated, large.id)) == {"job.json", "docs/letter.pdf"}


def test_the_purge_deletes_the_files_everywhere_and_a_host_never_registers_them_again(
    migrated: str, tmp_path: Path, make_config: MakeConfig,  # noqa: F811
    smtp_server: FaxSMTPServer, samples: Path, clock: FakeClock,
) -> None:
    host_a = _host(make_config, tmp_path, "a", migrated, smtp_server)
    host_b = _host(make_config, tmp_path, "b", migrated, smtp_server)
    first = submit(host_a, NUMBER, [samples / "note.txt"])
    second = submit(host_a, NUMBER, [samples / "note.txt"])
    _send_all(host_b, clock)
    clock.advance(host_b.limits.retention + 60)
    worker = build_worker(host_b, clock=clock)
    try:
        assert sorted(worker.purge()) == sorted([first.id, second.id])
    finally:
        worker.close()
    assert _stored(migrated, first.id) == {} and _stored(migrated, second.id) == {}
    assert not (tmp_path / "b" / "spool" / "state" / "documents" / first.id).exists()
    # Host A still has both folders; at its start neither is registered again, and its
    # sweep deletes what a start does not meet.
    spool_a = _cluster_spool(host_a)
    store = open_store(host_a)
    try:
        folder = tmp_path / "a" / "spool" / "jobs"
        (folder / second.id).rename(tmp_path / "aside")
        assert spool_a.recover(store.unknown) == []
        assert not (folder / first.id).exists()
        (tmp_path / "aside").rename(folder / second.id)
        spool_a.sweep(force=True)
        assert not (folder / second.id).exists()
        assert store.list_jobs() == []
    finally:
        store.close()
        spool_a.close()
    with psycopg.connect(migrated) as db:
        assert db.execute("SELECT count(*) FROM purged_jobs").fetchone() == (2,)
