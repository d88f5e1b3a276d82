"""The use cases the sync jobs and the CLI both call."""
