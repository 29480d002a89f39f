"""Which business fact an Exact update represents, and its idempotency key.

Exact fires ``Update`` on every edit, and on creation. A sales invoice becomes a fact once it
is issued: ``Status`` 50 (processed: printed or sent, no longer editable). Edits of a draft
(10) or open (20) invoice are no fact at all, so they send nothing; once issued, every later
update maps to the same fact and key, so it sends once.
"""

from __future__ import annotations

import hashlib

from common.contracts import Channel, SourceDocument
from enricher.ports import Record

__all__ = ["INVOICE_ISSUED", "idempotency_key", "invoice_fact"]

INVOICE_ISSUED = "invoice_issued"
#: SalesInvoices.Status: 50 = processed (issued).
_PROCESSED = 50
#: SalesInvoices.Type: 8020 sales invoice, 8023 direct sales invoice (8021/8024: credit notes).
_INVOICE_TYPES = {8020, 8023}


def invoice_fact(invoice: Record) -> str | None:
    """``invoice_issued`` for an issued sales invoice, else None (a draft or a credit note)."""
    if invoice.get("Status") != _PROCESSED:
        return None
    if invoice.get("Type") not in _INVOICE_TYPES:
        return None
    return INVOICE_ISSUED


def idempotency_key(source: SourceDocument, fact: str, recipient: str, channel: Channel) -> str:
    """hash(connection, division, entity, id, fact, recipient, channel): one send per fact."""
    parts = (
        source.connection_id,
        str(source.division),
        source.entity,
        str(source.id),
        fact,
        recipient,
        channel,
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
