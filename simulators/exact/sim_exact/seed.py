"""The data the simulator starts with: one division, one demo customer with two contacts, a user.

Ids are fixed so the demo, the tests and the docs can name them. Phone numbers and addresses are
fictional (``.example`` domains, a Dutch mobile number in the +31 6 range).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sim_exact.documents import Documents
from sim_exact.entities import ACCOUNTS, CONTACTS
from sim_exact.store import Store

__all__ = [
    "DEMO_ACCOUNT_ID",
    "DEMO_CONTACT_ID",
    "DEMO_SECOND_CONTACT_ID",
    "DEMO_USER",
    "Seed",
    "seed",
]

#: The demo customer, "Bakkerij De Vries B.V.".
DEMO_ACCOUNT_ID = "6f0b8c3e-2d14-4a57-9b68-0c1d2e3f4a51"
#: Its main contact, with a mobile number and an email address.
DEMO_CONTACT_ID = "6f0b8c3e-2d14-4a57-9b68-0c1d2e3f4a52"
#: A second contact without a mobile number.
DEMO_SECOND_CONTACT_ID = "6f0b8c3e-2d14-4a57-9b68-0c1d2e3f4a53"

#: The user the access tokens belong to, as ``current/Me`` shows it.
DEMO_USER: dict[str, Any] = {
    "UserID": "6f0b8c3e-2d14-4a57-9b68-0c1d2e3f4a50",
    "UserName": "demo.user@ml-connector.example",
    "FullName": "Demo User",
    "Email": "demo.user@ml-connector.example",
    "LanguageCode": "nl-NL",
}


@dataclass(frozen=True)
class Seed:
    """The seeded ids, served by ``GET /_sim/seed``."""

    division: int
    account_id: str
    contact_id: str
    second_contact_id: str
    user_id: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed(store: Store, documents: Documents, division: int) -> Seed:
    """Create the demo division and records (without firing webhooks: nobody subscribed yet)."""
    store.add_division(
        division,
        Description="ML Connector Demo B.V.",
        HID=1,
        Country="NL",
        Currency="EUR",
        Status=1,
        Main=True,
    )
    documents.create(
        division,
        ACCOUNTS,
        {
            "ID": DEMO_ACCOUNT_ID,
            "Name": "Bakkerij De Vries B.V.",
            "Code": "100",
            "Email": "administratie@bakkerij-devries.example",
            "Phone": "+31201234567",
            "Country": "NL",
            "Language": "NL",
            "IsSales": True,
            "Status": "C",
        },
    )
    documents.create(
        division,
        CONTACTS,
        {
            "ID": DEMO_CONTACT_ID,
            "Account": DEMO_ACCOUNT_ID,
            "FirstName": "Jan",
            "LastName": "de Vries",
            "Email": "jan.devries@bakkerij-devries.example",
            "BusinessEmail": "jan.devries@bakkerij-devries.example",
            "Mobile": "+31612345678",
            "IsMainContact": True,
            "Language": "NL",
            "Country": "NL",
        },
    )
    documents.create(
        division,
        CONTACTS,
        {
            "ID": DEMO_SECOND_CONTACT_ID,
            "Account": DEMO_ACCOUNT_ID,
            "FirstName": "Sanne",
            "LastName": "Bakker",
            "Email": "sanne.bakker@bakkerij-devries.example",
            "BusinessPhone": "+31201234568",
            "IsMainContact": False,
            "Language": "NL",
            "Country": "NL",
        },
    )
    return Seed(
        division, DEMO_ACCOUNT_ID, DEMO_CONTACT_ID, DEMO_SECOND_CONTACT_ID, DEMO_USER["UserID"]
    )
