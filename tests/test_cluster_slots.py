"""A mailbox's connection slots across hosts: a session never outlives its slot.

The slot is a row in the database, held for a while and renewed: a host that cannot reach the
database any more keeps its slot only until that time ends, and closes its session first, so
that the mail server never sees the host's session and another host's in the same slot at once.
The runner here uses a database user of its own (``test_cluster``), which is then refused and
its connections ended: the database is out of its reach while it is for everyone else.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from faxgw.app.wiring import make_credentials, make_transport
from faxgw.engine.limits import SlotSession, release_slot
from faxgw.store.postgres import migrate_schema
from faxgw.store.postgres.cluster import PostgresCoordination
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import PASSWORD, USER, MakeConfig
from .test_cluster import database  # noqa: F401 - fixture
from .test_store_postgres import (  # noqa: F401 - fixtures
    _admin,
    _with_schema,
    migrated,
    schema,
)

MAILBOX = USER.lower()


def test_a_slot_whose_lease_ended_goes_to_another_runner(migrated: str) -> None:  # noqa: F811
    """A runner that could not renew its slot (killed, or the database out of reach) loses
    it when its lease ends, by the database's clock; it then learns that it lost it, and
    does not take the number again before its session gave it back."""
    first, second = (PostgresCoordination(migrated, owner=f"host-{n}", window_seconds=2.0,
                                          slot_lease_seconds=1.0) for n in (1, 2))
    try:
        assert first.take_slot(MAILBOX, 1) == 0
        assert 0.5 < first.keep_slot(MAILBOX, 0) <= 1.0
        assert second.take_slot(MAILBOX, 1) is None
        time.sleep(1.2)  # the first renews nothing meanwhile
        assert second.take_slot(MAILBOX, 1) == 0
        assert first.keep_slot(MAILBOX, 0) == 0 and first.take_slot(MAILBOX, 1) is None
        first.release_slot(MAILBOX, 0)  # the session closed: the row is the second's
        assert second.keep_slot(MAILBOX, 0) > 0.5
        assert first.take_slot(MAILBOX, 1) is None
    finally:
        first.close()
        second.close()


def test_a_session_never_outlives_its_slot_when_the_database_is_out_of_reach(
        database: tuple[str, str], make_config: MakeConfig, tmp_path: Path) -> None:  # noqa: F811
    role, url = database
    migrate_schema(url)
    here = PostgresCoordination(url, owner="here", window_seconds=60.0,
                                slot_lease_seconds=6.0)
    elsewhere = PostgresCoordination(_with_schema(role), owner="elsewhere", window_seconds=60.0)
    with FaxSMTPServer(users={USER: PASSWORD}) as server:
        config = make_config(server)
        credentials = make_credentials(config)
        transport = make_transport(config, credentials)

        async def main() -> float:
            slot = here.take_slot(MAILBOX, 1)
            assert slot == 0
            session = SlotSession(transport.session(USER),
                                  lambda: release_slot(here, MAILBOX, slot),
                                  keep=lambda: here.keep_slot(MAILBOX, slot), margin=3.0)
            await session.open()
            assert session.usable and server.active_sessions == 1
            with _admin() as admin:
                admin.execute(f"ALTER ROLE {role} NOLOGIN")
                admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                              " WHERE usename = %s", (role,))
            cut_off = time.monotonic()
            # A dropped connection alone does not end the session: its slot is still its own.
            await asyncio.sleep(0.5)
            assert session.usable and elsewhere.take_slot(MAILBOX, 1) is None
            # The other host asks until the slot is free for it; by then the session is gone.
            while (taken := elsewhere.take_slot(MAILBOX, 1)) is None:
                await asyncio.sleep(0.05)
            assert taken == 0
            assert server.active_sessions == 0, "two sessions in one slot"
            assert not session.usable
            await session.close()
            return time.monotonic() - cut_off

        try:
            waited = asyncio.run(main())
        finally:
            here.close()
            elsewhere.close()
            credentials.close()
    # The slot was free once its lease ended (6 s after its last renewal), not before.
    assert 4.0 < waited < 9.0
