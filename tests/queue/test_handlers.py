"""The handler registry: lookup, duplicate and malformed kinds refused, error types."""

from __future__ import annotations

import pytest

from storesync.queue import HandlerRegistry, RetryableError
from storesync.queue.builtin import registry as builtin


def test_registry_returns_registered_handler_and_none_for_unknown_kinds():
    reg = HandlerRegistry()

    @reg.register("sync.product_to_child")
    async def handle(ctx):
        return None

    assert reg.get("sync.product_to_child") is handle
    assert reg.get("sync.unknown") is None
    assert "queue.noop" in builtin.kinds()


def test_registry_refuses_a_second_handler_for_a_kind_and_malformed_kinds():
    reg = HandlerRegistry()
    reg.register("a.b")(lambda ctx: None)
    with pytest.raises(ValueError, match="already has a handler"):
        reg.register("a.b")(lambda ctx: None)
    with pytest.raises(ValueError, match="dotted lowercase"):
        reg.register("Bad Kind")


def test_retryable_error_carries_retry_after():
    assert RetryableError("429", retry_after=2.5).retry_after == 2.5
    assert RetryableError("boom").retry_after is None
    with pytest.raises(ValueError):
        RetryableError("x", retry_after=-1)
