from storesync.cli import app

app()
