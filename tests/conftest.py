"""Root conftest: fixtures come from the ``common.testing.plugin`` pytest plugin."""
