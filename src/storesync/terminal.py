"""Printing store data with rich: what the stores and the database hold (titles, SKUs, shop
domains, error text) is shown as it is, never read as markup (a product titled `[/x]` would
otherwise crash the command that prints it)."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

__all__ = ["cells", "escape"]


def cells(*values: object) -> list[Text]:
    """Table cells shown exactly as they are (a `Text` passes through with its style)."""
    return [v if isinstance(v, Text) else Text(str(v)) for v in values]
