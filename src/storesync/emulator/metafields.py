"""Metafield types and the validation Shopify applies to their values.

Values are always strings; each type has a format Shopify checks on write
(https://shopify.dev/docs/apps/build/custom-data/metafields/list-of-data-types). The emulator
checks the formats of the common types exactly and the reference types by their gid's shape;
a type it does not know is refused, as Shopify refuses an unknown type (`INVALID_TYPE`).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

_REFERENCE_TYPES = {
    "collection_reference": "Collection",
    "file_reference": None,  # MediaImage, GenericFile, Video...
    "metaobject_reference": "Metaobject",
    "mixed_reference": "Metaobject",
    "page_reference": "Page",
    "product_reference": "Product",
    "variant_reference": "ProductVariant",
    "customer_reference": "Customer",
    "company_reference": "Company",
    "article_reference": "Article",
    "product_taxonomy_value_reference": "TaxonomyValue",
}
_SCALAR_TYPES = {
    "boolean",
    "color",
    "date",
    "date_time",
    "dimension",
    "id",
    "json",
    "link",
    "money",
    "multi_line_text_field",
    "number_decimal",
    "number_integer",
    "rating",
    "rich_text_field",
    "single_line_text_field",
    "url",
    "volume",
    "weight",
    *_REFERENCE_TYPES,
}
# Types with a list.<type> form (every one but these).
_NO_LIST = {"boolean", "json", "money", "multi_line_text_field", "rich_text_field", "id"}
KNOWN_TYPES = frozenset(_SCALAR_TYPES | {f"list.{t}" for t in _SCALAR_TYPES - _NO_LIST})

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/\d+$")
_UNITS = {
    "weight": {"oz", "lb", "g", "kg"},
    "volume": {
        "ml",
        "cl",
        "l",
        "m3",
        "us_fl_oz",
        "us_pt",
        "us_qt",
        "us_gal",
        "imp_fl_oz",
        "imp_pt",
        "imp_qt",
        "imp_gal",
    },
    "dimension": {"in", "ft", "yd", "mm", "cm", "m"},
}


def value_error(type_name: str, value: str) -> str | None:
    """Why `value` is not a valid value of metafield type `type_name` (None: it is)."""
    if type_name not in KNOWN_TYPES:
        return f"'{type_name}' is not a valid metafield type"
    if type_name.startswith("list."):
        try:
            items = json.loads(value)
        except ValueError:
            return "a list value must be a JSON array"
        if not isinstance(items, list):
            return "a list value must be a JSON array"
        inner = type_name[5:]
        for item in items:
            why = _scalar_error(inner, item if isinstance(item, str) else json.dumps(item))
            if why:
                return why
        return None
    return _scalar_error(type_name, value)


def _scalar_error(type_name: str, value: str) -> str | None:
    if type_name == "single_line_text_field":
        return "single_line_text_field can't contain line breaks" if "\n" in value else None
    if type_name in ("multi_line_text_field", "id"):
        return None if value.strip() or type_name != "id" else "id can't be blank"
    if type_name == "boolean":
        return None if value in ("true", "false") else "boolean must be true or false"
    if type_name == "number_integer":
        return None if re.fullmatch(r"-?\d+", value) else "number_integer must be a whole number"
    if type_name == "number_decimal":
        try:
            Decimal(value)
        except InvalidOperation:
            return "number_decimal must be a decimal number"
        return None
    if type_name == "color":
        return None if _COLOR.match(value) else "color must be a hexadecimal code like #fff123"
    if type_name == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            return "date must be an ISO 8601 date"
        return None
    if type_name == "date_time":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "date_time must be an ISO 8601 date and time"
        return None
    if type_name == "url":
        return (
            None
            if re.match(r"^(https?|mailto|sms|tel):", value)
            else "url must use http, https, mailto, sms or tel"
        )
    if type_name in ("json", "rich_text_field", "money", "rating", "link", *_UNITS):
        try:
            parsed = json.loads(value)
        except ValueError:
            return f"{type_name} must be JSON"
        if type_name in _UNITS and (
            not isinstance(parsed, dict) or parsed.get("unit") not in _UNITS[type_name]
        ):
            return f"{type_name} needs a value and a unit of {sorted(_UNITS[type_name])}"
        if type_name == "money" and not (
            isinstance(parsed, dict) and "amount" in parsed and "currency_code" in parsed
        ):
            return "money needs amount and currency_code"
        return None
    if type_name in _REFERENCE_TYPES:
        m = _GID.match(value)
        wanted = _REFERENCE_TYPES[type_name]
        if m is None or (wanted is not None and m.group(1) != wanted):
            return f"{type_name} must be the gid of a {wanted or 'file'}"
        return None
    return None
