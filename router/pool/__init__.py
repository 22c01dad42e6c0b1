"""The inventory pool: durable balances, ledger, reservations, feeds, routing of one order."""

from router.pool.service import Pool

__all__ = ["Pool"]
