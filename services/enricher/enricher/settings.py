"""enricher settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8081
    enricher_exact_timeout: float = 20.0
    #: The connections' rules: a YAML file used for every connection, or a directory of
    #: ``<connection id>.yaml`` files; unset: the default rule set shipped with the enricher.
    #: Read at start and again on SIGHUP. The company's name in texts comes from each
    #: connection's rules (``settings.company_name``) or the division's name in Exact.
    enricher_rules_path: Path | None = None
    #: Seconds between passes over scheduled notices (reminders, messages held for quiet
    #: hours); 0 turns the scheduler off.
    enricher_schedule_seconds: float = 30.0
    #: Notices taken per scheduler pass.
    enricher_schedule_batch: int = 50
    #: Deliveries handled at once. High on purpose: the reads of concurrent deliveries are
    #: coalesced, so the more wait together, the fewer Exact calls they cost; and a delivery
    #: waits about a second or more for its sync read, so throughput is about prefetch / wait.
    enricher_prefetch: int = 1000
    #: How long a read by key waits for others to share its request; 0 reads every key alone.
    enricher_batch_window_seconds: float = 0.5
    #: Keys per coalesced read. Exact's standard endpoints answer 60 rows a page; a batch is
    #: read in filters of ``enricher_exact_filter_terms`` keys each.
    enricher_batch_max_keys: int = 60
    #: ``Key eq guid'..'`` terms per ``or`` filter. Exact documents no limit on a filter's
    #: size; OData stacks refuse large expression trees (ASP.NET Web API OData past 100 nodes,
    #: about 20 such terms), so the default stays below that. A filter Exact refuses with 400
    #: is split in halves and read again, and its halves become the ceiling.
    enricher_exact_filter_terms: int = Field(15, ge=1)
    #: Read accounts, contacts and sales invoices through Exact's sync APIs (``enricher.sync``):
    #: a burst costs a call per 1,000 changed rows instead of one per filter of keys.
    enricher_exact_sync: bool = True
    #: How far back a sales invoice table starts (``SyncTimestamp``); older keys go by key.
    enricher_exact_sync_lookback_seconds: float = 3600.0
    #: Rows a sync table may read without a new catch-up for this long, unless a webhook
    #: says the record changed since.
    enricher_exact_sync_max_age_seconds: float = 300.0
    #: Accounts or contacts of a division past which they are not mirrored (memory).
    enricher_exact_sync_max_rows: int = 100_000
    #: How long a cached account and its contacts are used without asking Exact; 0 disables
    #: the cache. Accounts/Contacts webhooks drop entries sooner.
    enricher_cache_ttl_seconds: float = 3600.0
    #: Calls left in Exact's minute at which the enricher waits for the next minute instead.
    enricher_exact_minutely_reserve: int = 2
    #: Calls of a division's minute made as fast as they come; past them the rest of the minute
    #: is spread evenly up to its reset (with Exact's 60 and the reserve, one every 1.25 s), so
    #: that reads keep coming until the minute resets.
    enricher_exact_minutely_burst: int = 10
    #: Error responses (4xx other than 429) per endpoint and hour after which the enricher stops
    #: calling that endpoint until the hour ends; Exact blocks the key past 10.
    enricher_exact_error_budget: int = 8
    #: 429s waited out within one read before it is handed back as a retry.
    enricher_exact_rate_limit_retries: int = 3
    #: Longest wait within one read for a rate-limit reset; longer resets become a retry.
    enricher_exact_max_wait_seconds: float = 65.0
    #: Seconds between reconciliation passes (catch-up of missed webhooks, payment
    #: detection) over every connection token-keeper has working, each with its divisions;
    #: 0 turns them off.
    enricher_reconcile_seconds: float = 300.0
    #: How far back the first pass of a division reads (a synced stream: from the
    #: ``SyncTimestamp`` of that time).
    enricher_reconcile_lookback_seconds: float = 24 * 3600
    #: Each pass of a stream read by Modified rereads this much before its watermark: Modified
    #: is stamped by Exact's clock (a synced stream's row-version cursor needs none).
    enricher_reconcile_overlap_seconds: float = 300.0
    #: Reads and notices of up to ``enricher_prefetch`` deliveries share these connections.
    db_pool_max: int = 6

    def needed_credentials(self) -> tuple[str, ...]:
        """The app's client id, which the events it publishes carry as Exact's would."""
        return ("exact_client_id",)
