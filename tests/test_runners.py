"""Several runners on one spool and store: a service beside another and a cron run.

Each job is claimed by one runner (an owner and a lease); a runner takes back only the claims
of runners that are gone (their lock is free), never those of a runner that lives.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faxgw.app.wiring import build_worker, open_store
from faxgw.config import load_config
from faxgw.domain.jobs import JobState
from faxgw.engine.outcomes import RunSummary
from faxgw.engine.runners import Liveness, RunnerLock, liveness, runner_id
from faxgw.intake.register import register
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, MakeConfig
from .test_service import _config, _one_page, _queue, _start, _states


def test_a_runner_is_alive_while_it_holds_its_lock(tmp_path: Path) -> None:
    folder = tmp_path / "runners"
    owner = runner_id()
    lock = RunnerLock(folder, owner)
    assert liveness(folder, owner) is Liveness.ALIVE
    assert folder.stat().st_mode & 0o777 == 0o700
    assert lock.path.stat().st_mode & 0o777 == 0o600
    lock.release()
    assert liveness(folder, owner) is Liveness.GONE
    assert liveness(folder, "") is Liveness.GONE  # a claim from before runners had ids
    assert liveness(folder, "another-host.example:42:abcdef") is Liveness.ELSEWHERE


def test_a_killed_runner_is_gone_at_once(tmp_path: Path) -> None:
    """The kernel drops a SIGKILLed process's lock: no lease has to run out on this host."""
    folder = tmp_path / "runners"
    script = ("import sys, time; from pathlib import Path; "
              "from faxgw.engine.runners import RunnerLock, runner_id; "
              "lock = RunnerLock(Path(sys.argv[1]), runner_id()); "
              "print(lock.owner, flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", script, str(folder)],
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        owner = child.stdout.readline().strip()
        assert liveness(folder, owner) is Liveness.ALIVE
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert liveness(folder, owner) is Liveness.GONE


def test_start_up_leaves_a_live_runners_claims_alone(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    """A cron run starting beside a service must not take the jobs the service is sending."""
    config = make_config(smtp_server)
    service = build_worker(config)
    spool = service.spool
    job_id = spool.submit("+4930123456", [samples / "note.txt"]).id
    register(spool.recover()[0], config=config, store=service.store, documents=spool)
    [claimed] = service._claim()
    assert claimed.id == job_id
    cron = build_worker(config)
    cron.startup()
    assert cron.store.get(job_id).state is JobState.SENDING
    assert cron.store.get(job_id).owner == service.owner
    service.close()  # the service ends (its lock is free): now the claim is taken back
    cron.reap()
    job = cron.store.get(job_id)
    assert (job.state, job.owner) == (JobState.QUEUED, None)
    assert cron.store.history(job_id)[-1].event == "recovered"
    cron.close()


def test_an_outcome_after_the_claim_was_taken_back_is_kept_in_the_history(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    """A runner whose claim was taken back (it was too slow, its lease ran out) cannot
    overwrite the job; what it did is still written down."""
    config = make_config(smtp_server)
    slow = build_worker(config)
    intake = slow.spool.submit("+4930123456", [samples / "note.txt"])
    register(intake, config=config, store=slow.store, documents=slow.spool)
    [claimed] = slow._claim()
    slow.store.recover_sending(owners=[slow.owner])  # as a reaper would
    other = build_worker(config)
    [again] = other._claim()
    summary = RunSummary()
    slow.recorder.sent(claimed, "250 2.0.0 OK late", summary)
    assert summary.sent == 0
    job = other.store.get(claimed.id)
    assert (job.state, job.owner) == (JobState.SENDING, other.owner)
    assert other.store.history(job.id)[-1].event == "sent-not-recorded"
    slow.close()
    other.close()


@pytest.mark.slow
def test_two_services_and_a_cron_run_send_each_of_200_jobs_exactly_once(tmp_path: Path) -> None:
    """Jobs arrive in waves while two services run and a cron run starts among them: the
    runners share the work, and every job arrives exactly once."""
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=0.01) as server:
        config = _config(tmp_path, server)
        page = _one_page(tmp_path)
        services = [_start(config), _start(config)]
        ids: list[str] = []
        try:
            time.sleep(1.0)  # both services are up
            for _ in range(10):
                ids += _queue(config, page, 10)
                time.sleep(0.3)
            with subprocess.Popen([sys.executable, "-m", "faxgw", "--config", str(config),
                                   "run", "--once", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) as cron:
                for _ in range(10):
                    ids += _queue(config, page, 10)
                    time.sleep(0.3)
                cron_out, cron_err = cron.communicate(timeout=300)
            assert cron.returncode == 0, cron_err
            deadline = time.monotonic() + 120
            while _states(config) != {"sent": 200} and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            outputs = []
            for service in services:
                service.send_signal(signal.SIGTERM)
                outputs.append(service.communicate(timeout=60))
        sent_by = [json.loads(cron_out)["sent"]]
        for service, (_, stderr) in zip(services, outputs, strict=True):
            assert service.returncode == 0, stderr
            assert "Traceback" not in stderr and "not recorded" not in stderr
            sent_by.append(stderr.count(" sent to "))
        assert sum(sent_by) == 200, sent_by
        assert sum(1 for count in sent_by if count) >= 2, sent_by  # the work was shared
        assert _states(config) == {"sent": 200}
        received = collections.Counter(m.message["Message-ID"] for m in server.messages)
        assert sorted(received.values()) == [1] * 200
        assert set(received) == {f"<faxgw.{job_id}@contoso.com>" for job_id in ids}
        store = open_store(load_config(config))
        try:
            events = [e.event for job_id in ids for e in store.history(job_id)]
        finally:
            store.close()
        assert "recovered" not in events and "requeued" not in events


@pytest.mark.slow
def test_a_live_service_takes_over_the_jobs_of_a_killed_one(tmp_path: Path) -> None:
    """No restart needed: a runner that is killed mid-burst leaves its claims, and the other
    service takes them back within seconds (its lock is free) and sends them."""
    with FaxSMTPServer(tls="starttls", users={USER: PASSWORD}, reply_delay=0.01) as server:
        config = _config(tmp_path, server, connections=1)
        ids = _queue(config, _one_page(tmp_path), 120)
        first = _start(config)
        server.wait_until(lambda: len(server.messages) >= 10, timeout=60)
        second = _start(config)  # idle: the first holds every claim
        time.sleep(1.0)
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
        killed_at = time.monotonic()
        try:
            deadline = killed_at + 90
            while _states(config) != {"sent": 120} and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            _, stderr = second.communicate(timeout=60)
        assert second.returncode == 0, stderr
        assert _states(config) == {"sent": 120}
        assert "the runner sending it is gone" in stderr
        received = collections.Counter(m.message["Message-ID"] for m in server.messages)
        store = open_store(load_config(config))
        try:
            recovered = {job_id for job_id in ids
                         if any(e.event == "recovered" for e in store.history(job_id))}
        finally:
            store.close()
        assert recovered  # the second service took jobs over
        for job_id in ids:
            copies = received[f"<faxgw.{job_id}@contoso.com>"]
            assert copies >= 1, f"{job_id} lost"
            if copies > 1:
                assert job_id in recovered, f"{job_id} sent {copies} times without a record"


def test_the_heartbeat_renews_the_claims_while_a_run_lasts(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path,
) -> None:
    """A runner that works longer than a lease keeps its claims: the heartbeat moves their
    lease forward (here with a lease of a third of a second, so that it beats often)."""
    config = make_config(smtp_server)
    worker = build_worker(config)
    worker.lease_seconds = 0.3  # [store] lease_seconds allows 10 s at least
    intake = worker.spool.submit("+4930123456", [samples / "note.txt"])
    register(intake, config=config, store=worker.store, documents=worker.spool)
    [claimed] = worker._claim()
    assert claimed.lease_until is not None

    async def beat_a_while() -> None:
        heartbeat = asyncio.ensure_future(worker._heartbeat())
        await asyncio.sleep(0.5)
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)

    asyncio.run(beat_a_while())
    renewed = worker.store.get(claimed.id)
    assert renewed.owner == worker.owner
    assert renewed.lease_until is not None and renewed.lease_until > claimed.lease_until
    worker.close()
