"""The sync job handlers (one module per family), their registry and error mapping."""
