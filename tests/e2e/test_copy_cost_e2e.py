"""What a copy costs the stores, counted by the emulator (the calls each store answered, by
operation): a backfill of a product (or a collection) into 5 children reads the parent's
channels once for all of them, and a copy's step with nothing to do (no media, no synced metafields of its own to
set) makes no call. No worker runs, so every call counted is the backfill's own.
"""

from __future__ import annotations

import pytest

from storesync.demo.harness import running_system
from storesync.demo.seeding import DEMO_NAMESPACE as NS
from tests.e2e.helpers import requests_by_operation

pytestmark = pytest.mark.timeout(240)

BOTH = ["Online Store", "Point of Sale"]


def test_a_five_child_backfill_reads_the_parents_channels_once_and_skips_steps_with_nothing_to_do(
    module_db,
) -> None:
    with running_system(
        module_db.dsn,
        children=5,
        products=3,  # demo-product-3 has media and `specs` metafields; 1 and 2 have neither
        workers=0,
        collections=1,
        plan="plus",
        catalog_extras=True,
        merchant_sync={"metafield_namespaces": [NS]},
    ) as system:
        before = requests_by_operation(system)
        done = system.cli("backfill", check=True)
        assert "15 products copied, 0 rolled back" in " ".join(done.stdout.split()), done.stdout
        after = requests_by_operation(system)
        spent = {
            shop: {op: n - before[shop].get(op, 0) for op, n in ops.items() if n > before[shop].get(op, 0)}
            for shop, ops in after.items()
        }
        # The parent: one channels read per product, and per collection the backfill made, for
        # the 5 children (3 + 1, not 5 x 4); its products come from the scan.
        assert spent[system.parent].get("PublishableChannels") == 4, spent[system.parent]
        assert "ProductById" not in spent[system.parent], spent[system.parent]
        for child in system.children:
            mine = spent[child]
            # Per copy: the create (stock, memberships and synced metafields in it) and the
            # publish; media only for the product that has some; nothing read back, no
            # metafield call, no channels of the child's read.
            assert mine.get("ProductCreateId") == 3, (child, mine)
            assert mine.get("PublishablePublish") == 3 + 1, (child, mine)  # and the collection made
            assert mine.get("ProductSetMedia") == 1, (child, mine)
            unexpected = {
                "ProductById",
                "ProductSetIds",
                "MetafieldsSet",
                "MetafieldsDelete",
                "PublishableChannels",
            }
            assert not unexpected & set(mine), (child, mine)
            # ... and the copies are what the parent has.
            snapshot = system.snapshot(child)
            for handle in ("demo-product-1", "demo-product-2", "demo-product-3"):
                copy = system.product_by_handle(child, handle, snapshot)
                assert copy["channels"] == BOTH, (child, handle)
                extras = handle == "demo-product-3"
                assert bool(copy["media"]) is extras, (child, handle)
                assert [m["namespace"] for m in copy["metafields"]] == ([NS] if extras else []), (
                    child,
                    handle,
                )
