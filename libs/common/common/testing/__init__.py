"""Test support for every suite: a pytest plugin (broker and database fixtures), polling."""

from common.testing.polling import eventually

__all__ = ["eventually"]
