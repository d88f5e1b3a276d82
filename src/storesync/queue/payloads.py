"""Typed job payloads: checked when a job is enqueued and again when it is claimed.

A payload is a dataclass (or pydantic model) instance, or a plain JSON object for untyped kinds.
`encode` turns an instance into the JSON object stored in `jobs.payload`, refusing one whose
values do not match its type's annotations (`InvalidPayloadError`). `decode` turns the stored
object back into an instance of the type the handler was registered with, refusing what no longer
fits (the worker dead-letters such a job with the reason: retrying cannot fix it).

The queue adds two keys of its own to a stored payload, `parked_for` and `parked_since`
(`ops.park`); they are not part of any payload type and are removed before decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

# The queue's own key in a stored payload: the job waits for this (e.g. a paused store).
PARKED_FOR = "parked_for"
# When the job was first parked (ISO time), kept as it is parked again: how long it has waited.
PARKED_SINCE = "parked_since"
# When the job was first deferred (`handlers.Deferred`: its store's bucket was empty): queued for
# later, yet work its store is behind on (not a job scheduled for later).
DEFERRED_SINCE = "deferred_since"
QUEUE_KEYS = frozenset({PARKED_FOR, PARKED_SINCE, DEFERRED_SINCE})


class InvalidPayloadError(ValueError):
    """A payload that does not match its type; the message says which field and why."""


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def encode(payload: object) -> dict[str, Any]:
    """The JSON object stored for `payload` (a dict is taken as it is)."""
    if isinstance(payload, dict):
        return payload
    tp: Any = type(payload)
    try:
        data = _adapter(tp).dump_python(payload, mode="json", warnings="error")
    except PydanticSerializationError as err:
        raise InvalidPayloadError(f"{type(payload).__name__}: {err}") from None
    if not isinstance(data, dict):
        raise InvalidPayloadError(f"{type(payload).__name__} is not an object type")
    return data


def decode(tp: type | None, data: Mapping[str, Any]) -> Any:
    """`data` (a stored payload without the queue's own keys) as an instance of `tp`; the dict
    itself when the kind is untyped (`tp` None)."""
    if tp is None:
        return dict(data)
    try:
        return _adapter(tp).validate_python(dict(data))
    except ValidationError as err:
        raise InvalidPayloadError(f"payload is not a valid {tp.__name__}: {err}") from None
