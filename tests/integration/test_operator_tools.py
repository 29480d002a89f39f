"""The operator's tools on the real broker and database: ``mlc retry`` releases a failed
claim and the notification is sent exactly once; ``mlc dlq replay`` of a sent notification
sends nothing; the admin API wants its token, masks recipients and reveals only texts."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import httpx
import pytest

from auditor import cli as audit_cli
from common import topology
from common.contracts import ExactWebhookReceived, SendNotification
from common.testing import eventually
from token_keeper.cli import dlq

pytestmark = pytest.mark.integration

Stack = Any  # conftest.Stack


async def play_enricher(stack: Stack, commands: dict[str, SendNotification]) -> list[str]:
    """Stand in for the enricher: an Exact event about a document becomes that document's
    command again (the enricher would re-read Exact and the rules). Returns what it saw."""
    seen: list[str] = []
    channel = await stack.broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(topology.EVENTS, routing_key="exact.#")

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            event = ExactWebhookReceived.model_validate_json(message.body)
            seen.append(event.source)
            command = commands.get(str(event.key_id))
            if command is not None:
                await stack.send(command)

    await queue.consume(on_message)
    return seen


async def test_a_failed_claim_released_by_mlc_retry_is_sent_exactly_once(
    stack: Stack, private_amqp_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLC_AUDITOR_ADMIN_TOKEN", stack.admin_token)
    to = "+31622220001"
    # the destination's country not enabled in the account's geo permissions, once
    await stack.sim.reject(to=to, code=21408, status=400, count=1)
    command = stack.command(to, number="F900")
    rereads = await play_enricher(stack, {str(command.source.id): command})
    await stack.send(command)
    await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "failed",
        what="failed",
    )
    await eventually(lambda: stack.depth("dispatcher.sends.dlq"), until=lambda n: n == 1)
    failed = await asyncio.to_thread(
        audit_cli.main, ["failed", "--reason", "provider_error", "--url", stack.auditor_url]
    )
    assert failed == 0
    # A replay from the DLQ does not reopen the failed claim
    assert await dlq.replay(private_amqp_url, "dispatcher.sends") == [str(command.notification_id)]
    await eventually(lambda: stack.depth("dispatcher.sends"), until=lambda n: n == 0)
    assert len(await stack.posts(to)) == 1
    assert (await stack.claim_state(command.idempotency_key))["state"] == "failed"

    args = ["retry", str(command.notification_id), "--url", stack.auditor_url]
    args += ["--requested-by", "ops-jane"]
    code = await asyncio.to_thread(audit_cli.main, args)
    assert code == 0
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        timeout=30,
        what="sent after the retry",
    )
    assert rereads == ["operator-retry"]
    assert [(a["outcome"], a["attempt"]) for a in entry["attempts"]] == [
        ("failed", 1),
        ("released", 1),
        ("sent", 2),
    ]
    assert entry["attempts"][1]["requested_by"] == "ops-jane"
    assert len(await stack.posts(to)) == 2  # the refused one, and the one sent
    # the same command again (a late copy, another replay) sends nothing
    await stack.send(command)
    await eventually(lambda: stack.depth("dispatcher.sends"), until=lambda n: n == 0)
    assert len(await stack.posts(to)) == 2


async def test_mlc_audit_failed_groups_by_reason(stack: Stack, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLC_AUDITOR_ADMIN_TOKEN", stack.admin_token)
    invalid, opted_out = "+31622220002", "+31622220003"
    await stack.sim.reject(to=invalid, code=21211)
    await stack.sim.reject(to=opted_out, code=21610)
    first, second = stack.command(invalid), stack.command(opted_out)
    for command in (first, second):
        await stack.send(command)
    for command in (first, second):
        await eventually(
            lambda c=command: stack.notification(c.notification_id),
            until=lambda n: n["state"] == "failed",
        )
    said: list[str] = []
    args = audit_cli.CliSettings(auditor_url=stack.auditor_url)
    parser = audit_cli.argparse.ArgumentParser()
    audit_cli.add_audit_arguments(parser)
    code = await asyncio.to_thread(
        audit_cli.run_audit, parser.parse_args(["failed"]), said.append, args
    )
    assert code == 0
    text = "\n".join(said)
    assert "invalid_number: 1" in text
    assert "opted_out: 1" in text
    assert invalid not in text  # masked
    assert invalid[-2:] in text


async def test_dlq_replay_of_a_successful_send_sends_nothing_twice(
    stack: Stack, private_amqp_url: str
):
    to = "+31622220004"
    command = stack.command(to)
    await stack.send(command)
    await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
    )
    # a copy that had been parked (e.g. a racing duplicate that ran out of tiers)
    channel = await stack.broker.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            command.model_dump_json().encode(),
            message_id=str(command.notification_id),
            type=command.key(),
            headers={"x-error-class": "transient", "x-error": "TransientError: 500"},
        ),
        routing_key=topology.dlq_name("dispatcher.sends"),
    )
    listed = await dlq.parked(private_amqp_url, "dispatcher.sends")
    assert [m["message_id"] for m in listed] == [str(command.notification_id)]
    assert await stack.depth("dispatcher.sends.dlq") == 1  # listing leaves it parked
    moved = await dlq.replay(
        private_amqp_url, "dispatcher.sends", message_id=str(command.notification_id)
    )
    assert moved == [str(command.notification_id)]
    await eventually(lambda: stack.depth("dispatcher.sends"), until=lambda n: n == 0)
    assert await stack.depth("dispatcher.sends.dlq") == 0
    assert len(await stack.posts(to)) == 1
    entry = await stack.notification(command.notification_id)
    assert [a["outcome"] for a in entry["attempts"]] == ["sent"]


async def test_the_admin_api_wants_its_token_masks_recipients_and_reveals_only_the_text(
    stack: Stack,
):
    to = "+31622220005"
    command = stack.command(to, number="F777")
    await stack.send(command)
    await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
    )
    token = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.auditor_url) as http:
        assert (await http.get("/admin/failed")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await http.get("/admin/trail?number=F777", headers=wrong)).status_code == 403
        answer = await http.get("/trail?number=F777", headers=token)
        (masked,) = answer.json()["notifications"]
        assert masked["recipient"] != to
        assert masked["recipient"].endswith(to[-2:])
        assert "content" not in masked
        plain = await http.get("/admin/trail?number=F777&reveal=1", headers=token)
        (revealed,) = plain.json()["notifications"]
        assert revealed["content"] == command.content  # the text is opened for the admin
        assert revealed["recipient"] == masked["recipient"]  # no clear address to reveal
        by_notification = await http.get(
            f"/trail?document_id={command.notification_id}", headers=token
        )
        (found,) = by_notification.json()["notifications"]
        assert found["document_number"] == "F777"


async def test_a_retry_after_the_number_was_corrected_sends_to_the_new_number_linked_to_the_old(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLC_AUDITOR_ADMIN_TOKEN", stack.admin_token)
    wrong, corrected = "+31622220006", "+31622220007"
    await stack.sim.reject(to=wrong, code=21211)
    failed = stack.command(wrong, number="F901")
    # what the enricher makes of the document once the contact's number is corrected in Exact
    fixed = stack.command(corrected, number="F901").model_copy(update={"source": failed.source})
    await play_enricher(stack, {str(failed.source.id): fixed})
    await stack.send(failed)
    await eventually(
        lambda: stack.notification(failed.notification_id),
        until=lambda n: n["state"] == "failed",
    )
    code = await asyncio.to_thread(
        audit_cli.main, ["retry", "--document", "F901", "--url", stack.auditor_url]
    )
    assert code == 0
    new = await eventually(
        lambda: stack.notification(fixed.notification_id),
        until=lambda n: n["state"] == "sent",
        timeout=30,
        what="sent to the corrected number",
    )
    assert new["retry_of"] == str(failed.notification_id)
    old = await stack.notification(failed.notification_id)
    assert old["state"] == "replaced"
    assert [a["outcome"] for a in old["attempts"]] == ["failed", "released"]
    assert len(await stack.posts(wrong)) == 1
    assert len(await stack.posts(corrected)) == 1


async def test_mlc_retry_by_reason_releases_every_failure_of_that_reason_only(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, private_amqp_url: str
):
    monkeypatch.setenv("MLC_AUDITOR_ADMIN_TOKEN", stack.admin_token)
    invalid_a, invalid_b, opted_out = "+31622220008", "+31622220009", "+31622220010"
    for to, code in ((invalid_a, 21211), (invalid_b, 21614), (opted_out, 21610)):
        await stack.sim.reject(to=to, code=code)
    commands = [stack.command(to) for to in (invalid_a, invalid_b, opted_out)]
    for command in commands:
        await stack.send(command)
    for command in commands:
        await eventually(
            lambda c=command: stack.notification(c.notification_id),
            until=lambda n: n["state"] == "failed",
        )
    await eventually(lambda: stack.depth("dispatcher.sends.dlq"), until=lambda n: n == 3)
    said: list[str] = []
    settings = audit_cli.CliSettings(auditor_url=stack.auditor_url)
    parser = audit_cli.argparse.ArgumentParser()
    audit_cli.add_retry_arguments(parser)
    args = parser.parse_args(["--reason", "invalid_number", "--since", "2000-01-01"])
    assert await asyncio.to_thread(audit_cli.run_retry, args, said.append, settings) == 0
    assert sorted(said) == sorted(f"{c.notification_id}: release_requested" for c in commands[:2])
    for command in commands[:2]:
        await eventually(
            lambda c=command: stack.claim_state(c.idempotency_key),
            until=lambda r: r["state"] == "released",
            what="released",
        )
    assert (await stack.claim_state(commands[2].idempotency_key))["state"] == "failed"
    shown = await dlq.parked(private_amqp_url, "dispatcher.sends")
    assert {m["error_code"] for m in shown} == {"21211", "21614", "21610"}
    assert all(invalid_a not in m["body"] for m in shown)  # bodies are masked


async def test_a_skipped_notification_retried_after_the_contact_got_a_mobile_is_sent_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    from common.contracts import NotificationSkipped
    from common.contracts.base import stable_id

    monkeypatch.setenv("MLC_AUDITOR_ADMIN_TOKEN", stack.admin_token)
    to = "+31622220011"
    now_sendable = stack.command(to, number="F902")
    skipped = NotificationSkipped(
        notification_id=stable_id(now_sendable.source, "invoice_issued", "sms"),
        source=now_sendable.source,
        fact="invoice_issued",
        reason="no_contact_with_mobile",
    )
    rereads = await play_enricher(stack, {str(now_sendable.source.id): now_sendable})
    await stack.publisher.publish(skipped)
    await eventually(
        lambda: stack.trail.failures(reason="no_contact"),
        until=lambda f: [n["notification_id"] for n in f] == [str(skipped.notification_id)],
        what="listed under no_contact",
    )
    code = await asyncio.to_thread(
        audit_cli.main, ["retry", "--reason", "no_contact", "--url", stack.auditor_url]
    )
    assert code == 0
    sent = await eventually(
        lambda: stack.notification(now_sendable.notification_id),
        until=lambda n: n["state"] == "sent",
        timeout=30,
        what="sent once the contact has a mobile",
    )
    assert rereads == ["operator-retry"]
    assert sent["retry_of"] == str(skipped.notification_id)
    assert (await stack.notification(skipped.notification_id))["state"] == "replaced"
    assert len(await stack.posts(to)) == 1
    assert await stack.trail.failures(reason="no_contact") == []
