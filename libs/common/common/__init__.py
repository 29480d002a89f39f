"""ml-connector shared contracts and plumbing. See docs/architecture.md for what belongs here."""
