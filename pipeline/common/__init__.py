"""Plumbing every stage shares: params, the record contract, errors, JSON Lines IO, provenance hashes."""
