"""The sync domain: plain Python rules for catalog fan-out, inventory, conflicts, sagas,
reconciliation and audit. No SQL, no HTTP here: stores and storage plug in through the
Protocols in `ports.py` (Postgres adapters in `store_pg.py`, in-memory ones in `memory.py`).
"""
