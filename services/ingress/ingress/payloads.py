"""Vendor payloads as they arrive (``extra="ignore"``): parsed here, never put on the wire."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ExactContent", "ExactEnvelope"]


class ExactContent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    # Bounded so that a signed but absurd webhook is a 422, not a routing key over AMQP's 255
    # bytes or a Division Exact would answer with an error (spending its error budget).
    Topic: str = Field(pattern=r"^[A-Za-z]{1,64}$")
    ClientId: str = Field(max_length=64)
    Division: int = Field(ge=1, le=2**31 - 1)
    Action: str = Field(pattern=r"^[A-Za-z]{1,16}$")
    Key: UUID
    ExactOnlineEndpoint: str = Field(max_length=2048)
    EventCreatedOn: str = Field(max_length=64)


class ExactEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Content: ExactContent
    HashCode: str
