"""The enricher's notices and contact preferences in PostgreSQL: a due notice is taken by one
replica only, a crash before the commit leaves it pending, payment cancels by id or number, a
cancelled notice stays cancelled, and stored commands come back as they went."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from common import db
from common.contracts import SendNotification, SourceDocument
from common.testing.infra import unique
from enricher.adapters.notices import NoticeKey, PostgresNotices, PostgresPreferences

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def key(connection: str, document=None, rule: str = "invoice-overdue-email") -> NoticeKey:  # type: ignore[no-untyped-def]
    return NoticeKey(connection, 7, "SalesInvoices", document or uuid4(), rule)


async def test_a_due_notice_is_taken_by_one_replica_and_survives_a_crash(database_url):
    async with db.pool(database_url) as pool_a, db.pool(database_url) as pool_b:
        await db.migrate(pool_a, "enricher", "enricher")
        a, b = PostgresNotices(pool_a), PostgresNotices(pool_b)
        conn = unique("conn")
        due = key(conn)
        await a.record(due, "pending", due_at=NOW - timedelta(minutes=1), number="26000001")
        await a.record(key(conn), "pending", due_at=NOW + timedelta(days=1), number="26000002")

        async def crash_while_holding() -> None:
            async with a.due(NOW) as batch:
                assert [n.key for n in batch.notices if n.key.connection_id == conn] == [due]
                async with b.due(NOW) as other:  # locked: the other replica skips it
                    assert [n for n in other.notices if n.key.connection_id == conn] == []
                raise RuntimeError("crash before the commit")

        with pytest.raises(RuntimeError):
            await crash_while_holding()
        async with b.due(NOW) as batch:
            (notice,) = [n for n in batch.notices if n.key.connection_id == conn]
            await batch.settle(notice, "sent", due_at=NOW)
        assert (await a.get(due)).state == "sent"  # type: ignore[union-attr]
        async with a.due(NOW + timedelta(days=2)) as batch:
            assert [n.key.rule for n in batch.notices if n.key.connection_id == conn] == [
                "invoice-overdue-email"
            ]


async def test_payment_cancels_pending_by_number_and_a_cancelled_notice_stays_so(database_url):
    async with db.pool(database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        notices = PostgresNotices(pool)
        conn, document = unique("conn"), uuid4()
        email, sms = key(conn, document), key(conn, document, "invoice-overdue-sms")
        await notices.record(email, "sent", due_at=NOW, number="26000009")
        await notices.record(sms, "pending", due_at=NOW, number="26000009")
        ended = await notices.cancel_invoice(
            conn, 7, entities=["SalesInvoices"], document_id=None, number="26000009",
            reason="paid",
        )  # fmt: skip
        assert ended == 1
        await notices.record(sms, "pending", due_at=NOW, number="26000009")  # a late event
        assert await notices.states(conn, "SalesInvoices", document) == {
            "invoice-overdue-email": "sent",
            "invoice-overdue-sms": "cancelled",
        }


async def test_a_stored_command_comes_back_equal_and_preferences_round_trip(database_url):
    async with db.pool(database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        notices, preferences = PostgresNotices(pool), PostgresPreferences(pool)
        conn, document = unique("conn"), uuid4()
        command = SendNotification(
            notification_id=uuid4(),
            idempotency_key="k",
            channel="email",
            recipient={"address": "a@b.example", "language": "nl"},
            template="invoice_issued",
            content="Beste Jan",
            subject="Factuur",
            source=SourceDocument(
                connection_id=conn, division=7, entity="SalesInvoices", id=document
            ),
            fact="invoice_issued",
            rule="invoice-issued",
        )
        issued = key(conn, document, "invoice-issued")
        await notices.record(issued, "sent", due_at=NOW, number=None, message=command)
        assert (await notices.get(issued)).message == command  # type: ignore[union-attr]
        contact = uuid4()
        await asyncio.gather(
            preferences.set(conn, contact, "sms"), preferences.set(unique("x"), contact, "voice")
        )
        await preferences.set(conn, contact, "email")
        assert await preferences.get_many(conn, [contact, uuid4()]) == {str(contact): "email"}
        await preferences.set(conn, contact, None)
        assert await preferences.get_many(conn, [contact]) == {}


async def test_concurrent_reads_of_decisions_and_preferences_each_get_their_own_rows(
    database_url,
):
    async with db.pool(database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        notices, preferences = PostgresNotices(pool), PostgresPreferences(pool)
        conn, documents = unique("conn"), [uuid4() for _ in range(40)]
        contacts = [uuid4() for _ in range(40)]
        for n, document in enumerate(documents):
            if n % 4 == 0:
                continue  # a document with no decision yet
            for rule in ("issued", "overdue")[: 1 + n % 2]:
                await notices.record(
                    key(conn, document, rule), "pending", due_at=NOW, number=f"F{n}"
                )
            if n % 3:
                await preferences.set(conn, contacts[n], "email" if n % 2 else "sms")

        decided, preferred = await asyncio.gather(
            asyncio.gather(*(notices.of_document(conn, 7, "SalesInvoices", d) for d in documents)),
            asyncio.gather(*(preferences.get_many(conn, [c, contacts[0]]) for c in contacts)),
        )
        for n, found in enumerate(decided):
            expected = set() if n % 4 == 0 else set(("issued", "overdue")[: 1 + n % 2])
            assert set(found) == expected, n
            assert all(notice.document_number == f"F{n}" for notice in found.values()), n
            assert all(notice.key.document_id == documents[n] for notice in found.values()), n
        for n, found in enumerate(preferred):
            expected = {} if n % 4 == 0 or n % 3 == 0 else {
                str(contacts[n]): "email" if n % 2 else "sms"
            }  # fmt: skip
            assert found == expected, n
        # another connection's rows are not read for this one
        assert await notices.of_document(unique("other"), 7, "SalesInvoices", documents[1]) == {}
        assert notices._documents.fetches < len(documents) / 2  # read together, not one by one


async def test_decisions_of_one_batch_fold_as_if_stored_one_by_one_in_order(database_url):
    """Concurrent deliveries' decisions are stored by one call of ``enricher.record_many``;
    several of them about the same notice must end as the same calls one at a time would."""
    from enricher.adapters.notices import _notice_item, _record_many

    async with db.pool(database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        notices = PostgresNotices(pool)
        conn, document = unique("conn"), uuid4()
        later = key(conn, document, "a-later-state")
        cancelled = key(conn, document, "b-cancelled-midway")
        was_cancelled = key(conn, document, "c-cancelled-before")
        keeps_number = key(conn, document, "d-keeps-its-number")
        await notices.record(was_cancelled, "cancelled", due_at=NOW, number="F0")
        await notices.record(keeps_number, "pending", due_at=NOW, number="F9")

        def decided(k: NoticeKey, state: str, number: str | None, minutes: int = 0):  # type: ignore[no-untyped-def]
            return _notice_item(k, number, state, NOW + timedelta(minutes=minutes), None, None)

        batch = [
            decided(later, "pending", "F1"),
            decided(cancelled, "pending", "F2"),
            decided(later, "sent", None, minutes=5),
            decided(cancelled, "cancelled", None),
            decided(was_cancelled, "pending", "F3"),
            decided(cancelled, "pending", "F4", minutes=9),
            decided(keeps_number, "skipped", None, minutes=7),
        ]
        async with pool.acquire() as connection, connection.transaction():
            results = await _record_many(connection, batch)
        assert results == [{}] * len(batch)  # one per item, as a merge expects

        stored = await notices.of_document(conn, 7, "SalesInvoices", document)
        view = {rule: (n.state, n.document_number, n.due_at - NOW) for rule, n in stored.items()}
        assert view == {
            "a-later-state": ("sent", "F1", timedelta(minutes=5)),
            "b-cancelled-midway": ("cancelled", "F2", timedelta(0)),
            "c-cancelled-before": ("cancelled", "F0", timedelta(0)),
            "d-keeps-its-number": ("skipped", "F9", timedelta(minutes=7)),
        }

        with pytest.raises(Exception, match="no item kind other"):
            async with pool.acquire() as connection, connection.transaction():
                await _record_many(connection, [decided(later, "sent", None), {"k": "other"}])
