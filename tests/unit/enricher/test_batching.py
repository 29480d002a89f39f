"""BatchLoader and BatchingExactReader: concurrent reads by key share one request.

The window is measured by an injected ``sleep`` that the test ends by hand, so no test waits.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from urllib.parse import quote
from uuid import UUID, uuid4

import httpx
import pytest

from common.errors import PermanentError, TransientError
from enricher.adapters.exact import filter_chunks
from enricher.batching import BatchingExactReader, BatchLoader


class Window:
    """A ``sleep`` that returns only when the test closes the windows open at the time."""

    def __init__(self) -> None:
        self.opened: list[float] = []
        self._closed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.opened.append(seconds)
        await self._closed.wait()

    def close(self) -> None:
        self._closed.set()
        self._closed = asyncio.Event()


class Fetcher:
    """Records each batch; answers ``value-<key>`` except for keys in ``missing``."""

    def __init__(self, missing: set[int] | None = None, error: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.missing = missing or set()
        self.error = error

    async def __call__(self, keys: list[int]) -> Mapping[int, str]:
        self.batches.append(keys)
        if self.error is not None:
            raise self.error
        return {key: f"value-{key}" for key in keys if key not in self.missing}


async def turn() -> None:
    """Let every ready task run up to its next wait (a scheduler turn, not a timed sleep)."""
    for _ in range(10):
        await asyncio.sleep(0)


def loader(fetch: Fetcher, window: Window, *, max_batch: int = 100) -> BatchLoader[int, str]:
    return BatchLoader(fetch, window=0.5, max_batch=max_batch, sleep=window.sleep)


async def test_concurrent_loads_within_the_window_cost_one_fetch_and_each_gets_its_value():
    fetch, window = Fetcher(missing={3}), Window()
    batch = loader(fetch, window)
    loads = [asyncio.create_task(batch.load(key)) for key in range(10)]
    await turn()
    assert fetch.batches == []  # nothing is read before the window closes
    window.close()
    values = await asyncio.gather(*loads)
    assert fetch.batches == [list(range(10))]
    assert window.opened == [0.5]
    assert values == [None if key == 3 else f"value-{key}" for key in range(10)]


async def test_a_key_arriving_after_the_window_closed_goes_into_the_next_batch():
    fetch, window = Fetcher(), Window()
    batch = loader(fetch, window)
    first = [asyncio.create_task(batch.load(key)) for key in (1, 2)]
    await turn()
    window.close()
    await asyncio.gather(*first)
    late = asyncio.create_task(batch.load(3))
    await turn()
    assert fetch.batches == [[1, 2]]
    window.close()
    assert await late == "value-3"
    assert fetch.batches == [[1, 2], [3]]


async def test_a_full_batch_is_fetched_at_once_without_waiting_for_the_window():
    fetch, window = Fetcher(), Window()
    batch = loader(fetch, window, max_batch=3)
    loads = [asyncio.create_task(batch.load(key)) for key in range(4)]
    await turn()
    assert fetch.batches == [[0, 1, 2]]
    assert [load.done() for load in loads] == [True, True, True, False]
    window.close()
    await asyncio.gather(*loads)
    assert fetch.batches == [[0, 1, 2], [3]]


async def test_the_same_key_asked_twice_is_fetched_once():
    fetch, window = Fetcher(), Window()
    batch = loader(fetch, window)
    loads = [asyncio.create_task(batch.load(7)) for _ in range(3)]
    await turn()
    window.close()
    assert await asyncio.gather(*loads) == ["value-7"] * 3
    assert fetch.batches == [[7]]


@pytest.mark.parametrize(
    "error",
    [TransientError("Exact answered 503", code=503, retry_after=30.0), PermanentError("400")],
)
async def test_a_failed_fetch_fails_every_waiting_load_with_the_same_typed_error(error):
    fetch, window = Fetcher(error=error), Window()
    batch = loader(fetch, window)
    loads = [asyncio.create_task(batch.load(key)) for key in range(5)]
    await turn()
    window.close()
    outcomes = await asyncio.gather(*loads, return_exceptions=True)
    assert all(type(outcome) is type(error) for outcome in outcomes)
    assert all(
        getattr(o, "retry_after", None) == getattr(error, "retry_after", None) for o in outcomes
    )
    assert len(fetch.batches) == 1


async def test_a_load_given_up_by_one_caller_still_answers_the_others():
    fetch, window = Fetcher(), Window()
    batch = loader(fetch, window)
    impatient = asyncio.create_task(batch.load(1))
    patient = asyncio.create_task(batch.load(1))
    await turn()
    impatient.cancel()
    window.close()
    assert await patient == "value-1"
    assert impatient.cancelled()


async def test_a_window_of_zero_reads_every_key_on_its_own():
    fetch = Fetcher()
    batch = BatchLoader(fetch, window=0, max_batch=100)
    assert await asyncio.gather(*(batch.load(key) for key in range(3))) == [
        "value-0",
        "value-1",
        "value-2",
    ]
    assert sorted(fetch.batches) == [[0], [1], [2]]


class FakeBulk:
    """An ExactBulkReader over an in-memory table per resource."""

    def __init__(self, tables: dict[str, list[dict]]) -> None:
        self.tables = tables
        self.requests: list[tuple[str, str, list[UUID], list[str]]] = []

    async def get_where_in(  # type: ignore[no-untyped-def]
        self, connection_id, division, resource, field, values: Sequence[UUID], select, **kw
    ):
        self.requests.append((resource, field, list(values), select))
        wanted = {str(v) for v in values}
        return [row for row in self.tables[resource] if row[field] in wanted]


async def test_the_reader_coalesces_per_resource_and_hands_each_caller_its_own_rows():
    invoices = [{"InvoiceID": str(uuid4()), "InvoiceTo": "a"} for _ in range(20)]
    account = str(uuid4())
    contacts = [{"ID": str(uuid4()), "Account": account} for _ in range(3)]
    bulk = FakeBulk({"salesinvoice/SalesInvoices": invoices, "crm/Contacts": contacts})
    window = Window()
    reader = BatchingExactReader(bulk, window=0.5, max_batch=60, sleep=window.sleep)

    gone = uuid4()
    invoice_loads = [
        asyncio.create_task(
            reader.get_one(
                "default", 1, "salesinvoice/SalesInvoices", "InvoiceID", UUID(key), ["Status"]
            )
        )
        for key in [i["InvoiceID"] for i in invoices] + [str(gone)]
    ]
    contact_loads = [
        asyncio.create_task(
            reader.get_all("default", 1, "crm/Contacts", "Account", value, ["ID", "Mobile"])
        )
        for value in (UUID(account), uuid4())
    ]
    await turn()
    window.close()  # one window per resource, both open
    found = await asyncio.gather(*invoice_loads)
    with_contacts, without = await asyncio.gather(*contact_loads)

    assert found == [*invoices, None]
    assert with_contacts == contacts
    assert without == []
    assert [(r[0], len(r[2])) for r in bulk.requests] == [
        ("salesinvoice/SalesInvoices", 21),
        ("crm/Contacts", 2),
    ]
    # the key field is selected, so each row finds its way back to the key that asked for it
    assert bulk.requests[0][3] == ["InvoiceID", "Status"]
    assert bulk.requests[1][3] == ["Account", "ID", "Mobile"]


async def test_reads_of_different_divisions_never_share_a_request():
    bulk = FakeBulk({"crm/Accounts": []})
    window = Window()
    reader = BatchingExactReader(bulk, window=0.5, max_batch=60, sleep=window.sleep)
    loads = [
        asyncio.create_task(reader.get_one("default", division, "crm/Accounts", "ID", uuid4(), []))
        for division in (1, 2)
    ]
    await turn()
    window.close()
    assert await asyncio.gather(*loads) == [None, None]
    assert len(bulk.requests) == 2


def strict_length(base: str, filter_: str, select: str) -> int:
    """The URL's length with every reserved character percent-encoded (space as %20), the
    longest form a client or Exact's own __next link may give it."""
    return len(f"{base}?$filter={quote(filter_, safe='')}&$select={quote(select, safe='')}")


def test_filters_are_split_so_that_no_url_passes_the_limit_and_every_key_is_asked_once():
    base = "https://start.exactonline.nl/api/v1/3108123/salesinvoice/SalesInvoices"
    keys = [uuid4() for _ in range(500)]
    select = "InvoiceID,InvoiceNumber,InvoiceTo,InvoiceToContactPerson,Status,Type,AmountFC"

    chunks = list(filter_chunks(base, "InvoiceID", keys, select, max_terms=1000))

    assert len(chunks) > 1
    budget = 6000 - 200  # room for the $skiptoken of a __next link
    assert all(strict_length(base, chunk, select) <= budget for chunk in chunks)
    sent = [len(str(httpx.URL(base, params={"$filter": c, "$select": select}))) for c in chunks]
    assert max(sent) <= budget
    asked = [term.split("'")[1] for chunk in chunks for term in chunk.split(" or ")]
    assert asked == [str(key) for key in keys]
    # filled greedily: one more key would have passed the budget
    for chunk, following in itertools.pairwise(chunks):
        grown = chunk + " or " + following.split(" or ")[0]
        assert strict_length(base, grown, select) > budget


def test_no_filter_has_more_terms_than_asked_and_every_key_is_asked_once():
    keys = [uuid4() for _ in range(40)]
    chunks = list(filter_chunks("http://x/api/v1/1/crm/Accounts", "ID", keys, "ID", max_terms=15))

    assert [len(chunk.split(" or ")) for chunk in chunks] == [15, 15, 10]
    asked = [term.split("'")[1] for chunk in chunks for term in chunk.split(" or ")]
    assert asked == [str(key) for key in keys]


def test_a_small_batch_is_one_filter():
    keys = [uuid4(), uuid4()]
    (only,) = filter_chunks("http://x/api/v1/1/crm/Accounts", "ID", [*keys, keys[0]], "ID")
    assert only == f"ID eq guid'{keys[0]}' or ID eq guid'{keys[1]}'"
