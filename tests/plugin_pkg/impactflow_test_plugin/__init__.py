"""A tiny impactflow plugin (tests only): a family, a loader and an audit from entry points."""
