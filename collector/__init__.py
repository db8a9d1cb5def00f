"""Collector: validate, de-duplicate and store readings, spooling while the database is away."""
