"""The sync engine, in layers (`docs/architecture.md`):

- `domain/`: plain, synchronous rules and types (no SQL, HTTP or asyncio), and the ports;
- `adapters/`: Postgres (`postgres.py`, all of the part's SQL), Shopify (`shopify.py`), and the
  job queue (`jobqueue.py`);
- `services/`: the use cases both the jobs and the CLI call (sales, catalog, collections,
  copies, backfill, reconcile, stores);
- `jobs/`: the job handlers, one module per family, their registry and the one mapping of
  errors to retry / park / dead letter;
- `runtime.py`: the composition root that builds adapters and services for a process.
"""
