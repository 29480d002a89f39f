"""Vendor payloads as they arrive (``extra="ignore"``): parsed here, never put on the wire."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict

__all__ = ["ExactContent", "ExactEnvelope"]


class ExactContent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    Topic: str
    ClientId: str
    Division: int
    Action: str
    Key: UUID
    ExactOnlineEndpoint: str
    EventCreatedOn: str


class ExactEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Content: ExactContent
    HashCode: str
