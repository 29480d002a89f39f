"""Test support shared by every suite: a pytest plugin (broker and database fixtures) and polling."""

from common.testing.polling import eventually

__all__ = ["eventually"]
