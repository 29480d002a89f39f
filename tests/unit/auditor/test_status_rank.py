"""Forward-only ranks: a late 'sent' never overwrites 'delivered'."""

from auditor.status import rank


def test_statuses_rank_in_delivery_order():
    order = ["queued", "sending", "sent", "delivered", "read"]
    assert [rank(s) for s in order] == sorted(rank(s) for s in order)
    assert rank("sent") < rank("undelivered") == rank("failed") == rank("delivered")


def test_unknown_statuses_never_overwrite_known_ones():
    assert rank("something-new") < rank("accepted")
