"""Persistent paper accounts: a ledger of record and the nightly run (see tradesim.paper.account)."""
