"""The sync domain: plain, synchronous rules and types (no SQL, HTTP or asyncio).

Catalog precedence (`catalog.py`), copies linked later (`copies.py`), collections
(`collections.py`), conflicts and echoes (`conflicts.py`, `echoes.py`), inventory decisions
(`inventory.py`, `orders.py`), sagas (`saga.py`), linking (`linking.py`), reconcile planning
(`reconcile.py`), routing (`routing.py`), the topics handled (`topics.py`), job payloads
(`payloads.py`), and the ports the adapters implement (`ports.py`).
"""
