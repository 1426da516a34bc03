"""Consensus notes: templates, the CRDT document per case, finalize and sign, amendments."""
