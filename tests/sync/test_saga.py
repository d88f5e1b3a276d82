import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storesync.commerce.errors import UserInputError
from storesync.sync.domain.catalog import SyncPolicy
from storesync.sync.domain.catalog_rules import CatalogRules, OnCopyStepFailure, OnHandleConflict
from storesync.sync.domain.model import Link, LinkKind, MatchedBy
from storesync.sync.domain.saga import (
    PermanentStepError,
    SagaState,
    SagaStuck,
    StepSpec,
    StepStatus,
    copy_product_steps,
)
from storesync.sync.services.copies import copy_product_actions
from storesync.sync.services.sagas import SagaExecutor
from tests.fakes import MemoryArchivedCopies, MemoryAttention, MemoryAudit, MemoryStepLog
from tests.sync.builders import CHILD_A, PARENT
from tests.sync.sagas import A_LOC1, A_LOC2, FailingLevels, copy_world, link_collection, link_copy_variants


class Recorder:
    """A toy step that logs what happens to it; fails or crashes on demand."""

    def __init__(self, journal, log, fail_run=0, crash_run=0, crash_undo=0, fail_undo=False):
        self.journal, self.log = journal, log
        self.fail_run, self.crash_run, self.crash_undo, self.fail_undo = (
            fail_run,
            crash_run,
            crash_undo,
            fail_undo,
        )

    async def prepare(self, params, ctx):
        return {"undo": params["n"]}

    async def run(self, params, ctx):
        saga = self.log.sagas[ctx.saga_id]
        # the undo must already be durable when the step runs
        assert saga.steps[params["n"]].undo == {"undo": params["n"]}
        self.journal.append(("run", params["n"]))
        if params.get("fail") and self.fail_run:
            raise PermanentStepError("rejected")
        if params.get("crash") and self.crash_run:
            self.crash_run -= 1
            raise ConnectionError("worker died")
        return {"n": params["n"], "seen": sorted(ctx.results)}

    async def undo(self, undo, ctx):
        if self.crash_undo:
            self.crash_undo -= 1
            raise ConnectionError("worker died while compensating")
        if self.fail_undo:
            raise PermanentStepError("cannot undo")
        self.journal.append(("undo", undo["undo"]))


def steps(n, **flags_at):
    out = []
    for i in range(n):
        params = {"n": i}
        for flag, idx in flags_at.items():
            if idx == i:
                params[flag] = True
        out.append(StepSpec(f"s{i}", "rec", params))
    return out


def test_a_saga_runs_every_step_in_order_and_passes_results_forward():
    log, journal, audit = MemoryStepLog(), [], MemoryAudit()
    ex = SagaExecutor(log, {"rec": Recorder(journal, log)}, audit)
    saga = asyncio.run(ex.start("g1", "demo", CHILD_A, "job:1", steps(3)))
    assert saga.state is SagaState.COMPLETED
    assert journal == [("run", 0), ("run", 1), ("run", 2)]
    assert saga.steps[2].result == {"n": 2, "seen": ["s0", "s1"]}
    assert [r.action for r in audit.records] == ["saga_completed"]


def test_a_permanent_failure_compensates_the_steps_that_ran_in_reverse():
    log, journal, audit = MemoryStepLog(), [], MemoryAudit()
    ex = SagaExecutor(log, {"rec": Recorder(journal, log, fail_run=1)}, audit)
    saga = asyncio.run(ex.start("g1", "demo", CHILD_A, "job:1", steps(4, fail=2)))
    assert saga.state is SagaState.COMPENSATED and "step 2 s2" in saga.error
    # the failed step itself had started: its undo runs too (undo tolerates "never happened")
    assert journal == [("run", 0), ("run", 1), ("run", 2), ("undo", 2), ("undo", 1), ("undo", 0)]
    assert [s.status for s in saga.steps] == [StepStatus.COMPENSATED] * 3 + [StepStatus.PENDING]
    assert [r.action for r in audit.records] == ["saga_compensated"]


def test_a_crash_mid_saga_is_resumed_forward_by_a_new_executor():
    log, journal = MemoryStepLog(), []
    first = SagaExecutor(log, {"rec": Recorder(journal, log, crash_run=1)})
    with pytest.raises(ConnectionError):
        asyncio.run(first.start("g1", "demo", CHILD_A, "job:1", steps(3, crash=1)))
    assert log.sagas["g1"].state is SagaState.RUNNING
    assert asyncio.run(log.unfinished()) == ["g1"]
    second = SagaExecutor(log, {"rec": Recorder(journal, log)})
    done, failed = asyncio.run(second.resume_all())
    assert failed == [] and done[0].state is SagaState.COMPLETED
    assert journal == [("run", 0), ("run", 1), ("run", 1), ("run", 2)]  # the started step runs again


def test_a_crash_while_compensating_is_resumed_backward():
    log, journal = MemoryStepLog(), []
    first = SagaExecutor(log, {"rec": Recorder(journal, log, fail_run=1, crash_undo=1)})
    with pytest.raises(ConnectionError):
        asyncio.run(first.start("g1", "demo", CHILD_A, "job:1", steps(3, fail=2)))
    assert log.sagas["g1"].state is SagaState.COMPENSATING
    saga = asyncio.run(SagaExecutor(log, {"rec": Recorder(journal, log)}).run("g1"))
    assert saga.state is SagaState.COMPENSATED
    assert [j for j in journal if j[0] == "undo"] == [("undo", 2), ("undo", 1), ("undo", 0)]


def test_a_failed_compensation_leaves_the_saga_stuck_for_an_operator():
    log, journal, audit = MemoryStepLog(), [], MemoryAudit()
    ex = SagaExecutor(log, {"rec": Recorder(journal, log, fail_run=1, fail_undo=True)}, audit)
    with pytest.raises(SagaStuck, match="cannot undo"):
        asyncio.run(ex.start("g1", "demo", CHILD_A, "job:1", steps(2, fail=1)))
    assert log.sagas["g1"].state is SagaState.STUCK
    assert audit.records[-1].action == "saga_stuck"


def test_starting_the_same_saga_twice_does_not_run_it_twice():
    log, journal = MemoryStepLog(), []
    ex = SagaExecutor(log, {"rec": Recorder(journal, log)})
    asyncio.run(ex.start("g1", "demo", CHILD_A, "job:1", steps(2)))
    asyncio.run(ex.start("g1", "demo", CHILD_A, "job:1", steps(2)))
    assert journal == [("run", 0), ("run", 1)]


def test_bad_saga_definitions_are_rejected_before_anything_runs():
    ex = SagaExecutor(MemoryStepLog(), {"rec": Recorder([], None)})
    with pytest.raises(ValueError, match="no action registered"):
        asyncio.run(ex.start("g", "demo", CHILD_A, "job:1", [StepSpec("a", "nope")]))
    with pytest.raises(ValueError, match="unique"):
        asyncio.run(ex.start("g", "demo", CHILD_A, "job:1", [StepSpec("a", "rec"), StepSpec("a", "rec")]))


# --------------------------------------------------------------------------- copy-product saga


def test_copying_a_product_creates_it_adds_its_collections_and_sets_its_levels():
    deps, pp = copy_world()
    asyncio.run(link_collection(deps))
    ex = SagaExecutor(MemoryStepLog(), copy_product_actions(deps), deps.audit)
    saga = asyncio.run(
        ex.start("copy-1", "copy_product", CHILD_A, "job:1", copy_product_steps(pp.id, CHILD_A))
    )
    assert saga.state is SagaState.COMPLETED
    child = deps.stores[CHILD_A]
    (cp,) = child.products.values()
    assert cp.collections == ("gid://shopify/Collection/501",)
    links = asyncio.run(deps.links.link_map(CHILD_A))
    for i, pv in enumerate(pp.variants):
        item = links.child_item(pv.inventory_item_id)
        assert child.levels[(item, A_LOC1)] == 5 + i and child.levels[(item, A_LOC2)] == 1


def test_a_failure_in_the_third_step_leaves_every_store_as_before():
    deps, pp = copy_world(child_cls=FailingLevels)
    asyncio.run(link_collection(deps))
    before = {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()}
    ex = SagaExecutor(MemoryStepLog(), copy_product_actions(deps), deps.audit)
    saga = asyncio.run(
        ex.start("copy-1", "copy_product", CHILD_A, "job:1", copy_product_steps(pp.id, CHILD_A))
    )
    assert saga.state is SagaState.COMPENSATED and "location is not active" in saga.error
    assert any(c[0] == "inventorySetQuantities" for c in deps.stores[CHILD_A].calls[:-1])  # one level was set
    assert {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()} == before
    links = asyncio.run(deps.links.link_map(CHILD_A))
    assert [lk for lk in links.links if lk.kind is not LinkKind.COLLECTION] == []
    assert {"product_create", "product_delete", "saga_compensated"} <= {r.action for r in deps.audit.records}


def test_a_create_never_adopts_a_product_the_child_already_has():
    deps, pp = copy_world()
    deps.stores[CHILD_A].add_product(pp.__class__(id=None, handle=pp.handle, title="Theirs"))
    ex = SagaExecutor(MemoryStepLog(), copy_product_actions(deps), deps.audit)
    saga = asyncio.run(
        ex.start("copy-1", "copy_product", CHILD_A, "job:1", copy_product_steps(pp.id, CHILD_A))
    )
    assert saga.state is SagaState.COMPENSATED and "storesync link" in saga.error
    assert [p.title for p in deps.stores[CHILD_A].products.values()] == ["Theirs"]


def test_a_second_executor_on_the_same_saga_stops_instead_of_running_a_step_twice():
    from storesync.sync.domain.saga import SagaConflict

    log, journal = MemoryStepLog(), []

    class Interleaved(Recorder):
        async def prepare(self, params, ctx):
            if params["n"] == 1 and not journal.count(("other", 1)):
                journal.append(("other", 1))
                await log.step_started(ctx.saga_id, 1, {"undo": 1})  # a duplicate job got there first
            return await super().prepare(params, ctx)

    ex = SagaExecutor(log, {"rec": Interleaved(journal, log)})
    with pytest.raises(SagaConflict):
        asyncio.run(ex.start("g1", "demo", CHILD_A, "job:1", steps(3)))
    assert journal == [("run", 0), ("other", 1)]


@settings(max_examples=30, deadline=None)
@given(fail_at=st.integers(0, 3), crash_at=st.integers(0, 3))
def test_copy_saga_ends_all_done_or_as_before_whatever_fails_or_crashes(fail_at, crash_at):
    """fail_at: index of the write that is rejected for good (3 = none); crash_at: index of the
    step the first worker dies in (3 = none). A new executor then finishes the saga."""
    from storesync.sync.services.copies import copy_product_actions
    from tests.fakes import MemoryStore
    from tests.sync.sagas import copy_world, link_collection

    deps, pp = copy_world()
    asyncio.run(link_collection(deps))
    before = {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()}
    child = deps.stores[CHILD_A]
    step_names = ["create_child_product", "set_child_collections", "set_child_levels"]
    state = {"crashed": False}

    def wrap(name, action):
        class Faulty:
            async def prepare(self, params, ctx):
                return await action.prepare(params, ctx)

            async def run(self, params, ctx):
                i = step_names.index(name)
                if i == fail_at:
                    raise PermanentStepError(f"rejected at {name}")
                out = await action.run(params, ctx)
                if i == crash_at and not state["crashed"]:
                    state["crashed"] = True
                    raise ConnectionError("worker died after the store call")
                return out

            async def undo(self, undo, ctx):
                return await action.undo(undo, ctx)

        return Faulty()

    actions = copy_product_actions(deps)
    log = MemoryStepLog()
    faulty = {k: wrap(k, a) for k, a in actions.items()}
    try:
        saga = asyncio.run(
            SagaExecutor(log, faulty, deps.audit).start(
                "c", "copy", CHILD_A, "job:1", copy_product_steps(pp.id, CHILD_A)
            )
        )
    except ConnectionError:
        saga = asyncio.run(SagaExecutor(log, faulty, deps.audit).run("c"))
    if fail_at < 3:
        assert saga.state is SagaState.COMPENSATED
        assert {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()} == before
    else:
        assert saga.state is SagaState.COMPLETED
        assert len(child.products) == 1 and isinstance(child, MemoryStore)
        assert len(child.levels) == 4  # 2 variants x 2 mapped locations


def test_an_older_copy_saga_never_adopts_a_product_the_child_made_under_the_handle_meanwhile():
    """A three-step saga (logged by an earlier version): its create looked (handle free), then
    the child made a product of its own under that handle before the create ran. The create is
    refused and compensated; the child's product is left exactly as it was."""
    deps, pp = copy_world()
    child = deps.stores[CHILD_A]
    real = copy_product_actions(deps)
    theirs = []

    class ChildActsBetween:
        async def prepare(self, params, ctx):
            undo = await real["create_child_product"].prepare(params, ctx)
            theirs.append(child.add_product(replace(pp, id=None, title="The child's own", variants=())))
            return undo

        async def run(self, params, ctx):
            return await real["create_child_product"].run(params, ctx)

        async def undo(self, undo, ctx):
            return await real["create_child_product"].undo(undo, ctx)

    saga = asyncio.run(
        SagaExecutor(MemoryStepLog(), {**real, "create_child_product": ChildActsBetween()}, deps.audit).start(
            "c", "copy", CHILD_A, "job:1", copy_product_steps(pp.id, CHILD_A)
        )
    )
    assert saga.state is SagaState.COMPENSATED and "storesync link" in (saga.error or "")
    assert list(child.products.values()) == theirs
    assert [c[0] for c in child.calls] == []  # nothing written, nothing deleted


# --------------------------------------------------------------------------- copy saga, stock in the create


def _stocked_copy(deps, pp, saga_id="copy-1", actions=None, log=None):
    ex = SagaExecutor(log or MemoryStepLog(), actions or copy_product_actions(deps), deps.audit)
    return asyncio.run(
        ex.start(
            saga_id,
            "copy_product",
            CHILD_A,
            "job:1",
            copy_product_steps(pp.id, CHILD_A, stock_in_create=True),
        )
    )


def test_a_copy_with_stock_in_the_create_makes_one_product_set_and_reads_no_child_level():
    deps, pp = copy_world()
    asyncio.run(link_collection(deps))
    child = deps.stores[CHILD_A]
    reads = []
    real_read = child.read_level

    async def counted_read(*args, **kw):
        reads.append(args)
        return await real_read(*args, **kw)

    child.read_level = counted_read
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPLETED and [s.name for s in saga.steps] == [
        "create",
        "media",
        "publish",
    ]
    (cp,) = child.products.values()
    assert cp.collections == ("gid://shopify/Collection/501",)
    # no inventorySetQuantities, no second write: no media to copy, no channel the parent's is on
    assert [c[0] for c in child.calls] == ["productSet"]
    assert saga.steps[1].result == {"media": 0} and saga.steps[2].result == {"channels": []}
    assert reads == []
    (sent,) = [c[1] for c in child.calls]
    assert all(len(v["inventoryQuantities"]) == 2 for v in sent["variants"])
    links = asyncio.run(deps.links.link_map(CHILD_A))
    # The answer named the product only: its variants wait for their ids (the create webhook).
    assert (
        links.child_id(LinkKind.PRODUCT, pp.id) == cp.id and links.link_down(LinkKind.PRODUCT, pp.id).pending
    )
    assert all(links.child_item(pv.inventory_item_id) is None for pv in pp.variants)
    resolution = asyncio.run(link_copy_variants(deps, CHILD_A, pp.id))
    assert resolution is not None and resolution.unmatched == []
    assert asyncio.run(link_copy_variants_again(deps, pp.id)) is None  # linked once only
    links = asyncio.run(deps.links.link_map(CHILD_A))
    assert links.link_down(LinkKind.PRODUCT, pp.id).pending is None
    for i, pv in enumerate(pp.variants):
        item = links.child_item(pv.inventory_item_id)
        assert child.levels[(item, A_LOC1)] == 5 + i and child.levels[(item, A_LOC2)] == 1
    skus = {links.child_item(pv.inventory_item_id): pv.sku for pv in pp.variants}
    assert sorted(map(tuple, saga.steps[0].result["levels"])) == sorted(
        (skus[k[0]], k[1], q) for k, q in child.levels.items()
    )


async def link_copy_variants_again(deps, parent_product_id):
    from storesync.sync.services.copies import link_pending_copy

    link = (await deps.links.link_map(CHILD_A)).link_down(LinkKind.PRODUCT, parent_product_id)
    child = await deps.stores[CHILD_A].read_product(link.child_id)
    return await link_pending_copy(deps.links, link, child.variants)


def test_the_echo_of_a_create_that_wrote_stock_is_recognised_and_causes_no_write():
    from datetime import UTC, datetime

    from storesync.sync.domain.conflicts import LevelDecision, Version
    from storesync.sync.services.sales import judge_level_delivery
    from tests.fakes import MemoryAppliedVersions

    deps, pp = copy_world()
    asyncio.run(link_collection(deps))
    saga = _stocked_copy(deps, pp)
    child = deps.stores[CHILD_A]
    versions = MemoryAppliedVersions()
    assert len(saga.steps[0].result["levels"]) == 4
    resolution = asyncio.run(link_copy_variants(deps, CHILD_A, pp.id))
    levels = [(w.inventory_item_id, w.location_id, w.quantity) for w in resolution.writes]
    assert sorted(levels) == sorted((k[0], k[1], q) for k, q in child.levels.items())
    for item, loc, quantity in levels:
        (record,) = asyncio.run(
            deps.writes.recent_writes(CHILD_A, item, loc, datetime(2000, 1, 1, tzinfo=UTC))
        )
        assert record.quantity == quantity == child.levels[(item, loc)] and record.cause == "job:1"
        decision = asyncio.run(
            judge_level_delivery(
                shop=CHILD_A,
                role="child",
                inventory_item_id=item,
                location_id=loc,
                available=quantity,
                version=Version(datetime.now(UTC), "delivery-1"),
                versions=versions,
                writes=deps.writes,
            )
        )
        assert decision is LevelDecision.ECHO
    # A level the child moved itself afterwards is not mistaken for our write.
    item, loc, quantity = levels[0]
    moved = asyncio.run(
        judge_level_delivery(
            shop=CHILD_A,
            role="child",
            inventory_item_id=item,
            location_id=loc,
            available=quantity + 3,
            version=Version(datetime.now(UTC), "delivery-2"),
            versions=versions,
            writes=deps.writes,
        )
    )
    assert moved is LevelDecision.REASSERT


def test_a_stocked_create_never_adopts_a_product_the_child_already_has():
    deps, pp = copy_world()
    deps.stores[CHILD_A].add_product(pp.__class__(id=None, handle=pp.handle, title="Theirs"))
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPENSATED and "storesync link" in saga.error
    assert [p.title for p in deps.stores[CHILD_A].products.values()] == ["Theirs"]
    assert deps.stores[CHILD_A].calls == []


@settings(max_examples=20, deadline=None)
@given(fail=st.booleans(), crash=st.booleans())
def test_a_stocked_copy_ends_all_done_or_as_before_whatever_fails_or_crashes(fail, crash):
    """fail: the store rejects the create for good after making it (undo must delete it);
    crash: the worker dies after the store call, before the log says done (a new executor
    resumes: the create runs again and updates the product it made, no second one)."""
    deps, pp = copy_world()
    asyncio.run(link_collection(deps))
    child = deps.stores[CHILD_A]
    before = {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()}
    create = copy_product_actions(deps)["create_child_product"]
    state = {"crashed": False}

    class Faulty:
        async def prepare(self, params, ctx):
            return await create.prepare(params, ctx)

        async def run(self, params, ctx):
            out = await create.run(params, ctx)
            if fail:
                raise PermanentStepError("rejected after the write")
            if crash and not state["crashed"]:
                state["crashed"] = True
                raise ConnectionError("worker died after the store call")
            return out

        async def undo(self, undo, ctx):
            return await create.undo(undo, ctx)

    log = MemoryStepLog()
    try:
        saga = _stocked_copy(
            deps, pp, actions={**copy_product_actions(deps), "create_child_product": Faulty()}, log=log
        )
    except ConnectionError:
        actions = {**copy_product_actions(deps), "create_child_product": Faulty()}
        saga = asyncio.run(SagaExecutor(log, actions, deps.audit).run("copy-1"))
    if fail:
        assert saga.state is SagaState.COMPENSATED
        assert {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()} == before
        assert [
            lk for lk in asyncio.run(deps.links.link_map(CHILD_A)).links if lk.kind is not LinkKind.COLLECTION
        ] == []
    else:
        assert saga.state is SagaState.COMPLETED
        assert len(child.products) == 1
        asyncio.run(link_copy_variants(deps, CHILD_A, pp.id))
        links = asyncio.run(deps.links.link_map(CHILD_A))
        items = {links.child_item(pv.inventory_item_id) for pv in pp.variants}
        assert {k for k in child.levels if k[0] in items} == {
            (i, loc) for i in items for loc in (A_LOC1, A_LOC2)
        }


def test_a_copy_whose_handle_the_child_took_is_refused_and_leaves_the_childs_product_alone():
    deps, pp = copy_world()
    child = deps.stores[CHILD_A]
    own = child.add_product(replace(pp, id=None, title="The child's own", variants=()))
    log = MemoryStepLog()
    saga = _stocked_copy(deps, pp, log=log)
    assert saga.state is SagaState.COMPENSATED and "already has a product of its own with handle" in (
        saga.error or ""
    )
    assert list(child.products) == [own.id] and child.products[own.id].title == "The child's own"
    assert [c[0] for c in child.calls] == []  # the refused create wrote nothing; nothing was deleted
    step = log.sagas["copy-1"].steps[0]
    assert step.status is StepStatus.PENDING and step.undo is None  # refused: nothing to undo
    assert asyncio.run(deps.links.link_map(CHILD_A)).links == []


@settings(max_examples=30, deadline=None)
@given(at=st.sampled_from(["create", "media", "publish"]), fail=st.booleans(), crash=st.booleans())
def test_a_copy_with_media_and_channels_ends_all_done_or_as_before_whatever_step_fails_or_crashes(
    at, fail, crash
):
    """The copy's three steps (create -> media -> publish), one of them (`at`) failing for good
    after its store call (the saga compensates: the product, its media and channels are gone,
    as are its links), or the worker dying after it (a new executor resumes forward: the step
    runs again, uploading no media twice)."""
    from storesync.sync.domain.model import Media

    deps, pp = copy_world()
    _rules(deps)
    parent, child = deps.stores[PARENT], deps.stores[CHILD_A]
    media = tuple(
        Media(f"gid://shopify/MediaImage/{i}", f"https://cdn.example/{i}.jpg", f"alt {i}") for i in (1, 2)
    )
    parent.products[pp.id] = replace(parent.products[pp.id], media=media)
    asyncio.run(parent.publish(pp.id, [parent.channels["Point of Sale"]]))
    before = {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()}
    crashed = []

    def actions():
        real = copy_product_actions(deps)
        name = {
            "create": "create_child_product",
            "media": "copy_child_media",
            "publish": "publish_child_product",
        }[at]

        class Faulty:
            async def prepare(self, params, ctx):
                return await real[name].prepare(params, ctx)

            async def run(self, params, ctx):
                out = await real[name].run(params, ctx)
                if fail:
                    raise PermanentStepError("rejected after the write")
                if crash and not crashed:
                    crashed.append(at)
                    raise ConnectionError("worker died after the store call")
                return out

            async def undo(self, undo, ctx):
                return await real[name].undo(undo, ctx)

        return {**real, name: Faulty()}

    log = MemoryStepLog()
    try:
        saga = _stocked_copy(deps, pp, actions=actions(), log=log)
    except ConnectionError:
        saga = asyncio.run(SagaExecutor(log, actions(), deps.audit).run("copy-1"))
    if fail:
        assert saga.state is SagaState.COMPENSATED
        assert {shop: (dict(s.products), dict(s.levels)) for shop, s in deps.stores.items()} == before
        assert asyncio.run(deps.links.link_map(CHILD_A)).links == []
        return
    assert saga.state is SagaState.COMPLETED
    (cp,) = child.products.values()
    assert [(m.source, m.alt) for m in cp.media] == [(m.source, m.alt) for m in media]
    uploads = [
        f
        for op, (_, files) in (c for c in child.calls if c[0] == "productSetMedia")
        for f in files
        if "originalSource" in f
    ]
    assert len(uploads) == len(media)  # a resumed media step uploads nothing again
    assert asyncio.run(child.channels_of(cp.id)) == ["Point of Sale"]


def test_a_resumed_create_upserts_what_the_first_run_made():
    deps, pp = copy_world()
    child = deps.stores[CHILD_A]
    create = copy_product_actions(deps)["create_child_product"]
    runs = []

    class DiesAfterTheStoreCall:
        async def prepare(self, params, ctx):
            return await create.prepare(params, ctx)

        async def run(self, params, ctx):
            runs.append(ctx.resumed)
            out = await create.run(params, ctx)
            if len(runs) == 1:
                raise ConnectionError("worker died after the store call")
            return out

        async def undo(self, undo, ctx):
            return await create.undo(undo, ctx)

    log = MemoryStepLog()
    actions = {**copy_product_actions(deps), "create_child_product": DiesAfterTheStoreCall()}
    with pytest.raises(ConnectionError):
        _stocked_copy(deps, pp, actions=actions, log=log)
    first = {v.option_key: v.id for p in child.products.values() for v in p.variants}
    saga = asyncio.run(SagaExecutor(log, actions, deps.audit).run("copy-1"))
    assert saga.state is SagaState.COMPLETED and runs == [False, True]
    assert len(child.products) == 1  # the resend updated the first run's product
    # ... keeping its variants (the child may have sold them meanwhile: their orders name them)
    assert {v.option_key: v.id for p in child.products.values() for v in p.variants} == first
    # ... and the first send's create webhook still does not link them (linked from the update)
    from storesync.sync.domain.copies import created_webhook_describes_it

    pending = asyncio.run(deps.links.link_map(CHILD_A)).link_down(LinkKind.PRODUCT, pp.id).pending
    assert pending is not None and not created_webhook_describes_it(pending)


# --------------------------------------------------------------------------- copy saga: handles, media, channels


def _rules(deps, **rules):
    deps.policy = SyncPolicy(child_catalog={CHILD_A: CatalogRules(**rules)})
    deps.attention = MemoryAttention()
    deps.archived = MemoryArchivedCopies()
    return deps


def test_a_taken_handle_is_copied_under_a_suffix_and_a_later_failure_deletes_only_the_copy():
    deps, pp = copy_world()
    _rules(
        deps,
        on_handle_conflict=OnHandleConflict.COPY_WITH_SUFFIX,
        handle_suffix="acme",
        on_copy_step_failure=OnCopyStepFailure.COMPENSATE,
    )
    child = deps.stores[CHILD_A]
    long_ago = datetime.now(UTC) - timedelta(days=30)
    own = child.add_product(replace(pp, id=None, title="The child's own", variants=(), created_at=long_ago))
    child.refuse_publish = True
    deps.stores[PARENT].published[pp.id] = {deps.stores[PARENT].channels["Online Store"]}
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPENSATED and "publishing" in (saga.error or "")
    assert list(child.products) == [own.id] and child.products[own.id] == own  # ours undone, theirs kept
    assert [c for c in child.calls if c[0] == "productDelete"] != []
    child.refuse_publish = False
    saga = _stocked_copy(deps, pp, saga_id="copy-2")
    assert saga.state is SagaState.COMPLETED and saga.steps[0].result["handle"] == "tee-acme"
    copy = next(p for p in child.products.values() if p.id != own.id)
    assert copy.handle == "tee-acme" and child.published[copy.id] == {child.channels["Online Store"]}


def test_a_refused_publish_is_kept_and_reported_when_the_merchant_says_so():
    deps, pp = copy_world()
    _rules(
        deps, on_copy_step_failure=OnCopyStepFailure.KEEP_AND_REPORT, channels=("Point of Sale", "Wholesale")
    )
    child = deps.stores[CHILD_A]
    child.refuse_publish = True
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPLETED and "failed" in saga.steps[2].result
    assert len(child.products) == 1
    kinds = {a.kind for a in asyncio.run(deps.attention.open_items())}
    assert kinds == {"copy_step_failed", "channel_missing"}  # and the child has no "Wholesale"


def test_a_media_failure_is_reported_never_the_sagas_and_media_are_linked_in_order():
    from storesync.sync.domain.model import Media

    deps, pp = copy_world()
    _rules(deps)
    parent = deps.stores[PARENT]
    media = tuple(
        Media(f"gid://shopify/MediaImage/{i}", f"https://cdn.example/{i}.jpg", f"alt {i}") for i in (1, 2)
    )
    parent.products[pp.id] = replace(parent.products[pp.id], media=media)
    child = deps.stores[CHILD_A]
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPLETED and saga.steps[1].result == {"media": 2}
    (cp,) = child.products.values()
    assert [(m.source, m.alt) for m in cp.media] == [(m.source, m.alt) for m in media]
    links = asyncio.run(deps.links.link_map(CHILD_A))
    assert [links.child_id(LinkKind.MEDIA, m.id) for m in media] == [m.id for m in cp.media]

    deps2, pp2 = copy_world()
    _rules(deps2)
    deps2.stores[PARENT].products[pp2.id] = replace(deps2.stores[PARENT].products[pp2.id], media=media)

    async def refused(product_id, files):
        raise UserInputError("files refused")

    deps2.stores[CHILD_A].set_media = refused
    saga = _stocked_copy(deps2, pp2)
    assert saga.state is SagaState.COMPLETED and "failed" in saga.steps[1].result
    assert len(deps2.stores[CHILD_A].products) == 1
    assert [a.kind for a in asyncio.run(deps2.attention.open_items())] == ["media_failed"]


def test_an_archived_copy_of_ours_gives_its_handle_to_a_new_parent_product():
    deps, pp = copy_world()
    _rules(deps)
    child = deps.stores[CHILD_A]
    old = child.add_product(replace(pp, id=None, status="ARCHIVED", variants=()))
    asyncio.run(deps.archived.add(CHILD_A, old.id, pp.handle, "gid://shopify/Product/999"))
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPLETED
    assert child.products[old.id].handle == f"tee-archived-{old.id.rsplit('/', 1)[-1]}"
    assert sorted(p.handle for p in child.products.values())[0] == "tee"


def test_a_handle_held_by_the_copy_of_a_deleted_parent_product_waits_for_that_delete():
    """Webhooks of two products come in any order: a new parent product under a deleted one's
    handle may be copied before the delete is synced. The old copy holds the handle; it is not
    the child's own, so the create is retried (no conflict reported) and goes ahead once the
    delete has archived the old copy."""
    from storesync.sync.domain.saga import HandleNotYetFree
    from storesync.sync.services.catalog import parent_product_deleted

    deps, pp = copy_world()
    _rules(deps)
    deps.final_attempt = False
    child = deps.stores[CHILD_A]
    deleted_parent = "gid://shopify/Product/999"
    old = child.add_product(
        replace(pp, id=None, variants=(), created_at=datetime.now(UTC) - timedelta(days=3))
    )
    asyncio.run(
        deps.links.save_links([Link(LinkKind.PRODUCT, CHILD_A, deleted_parent, old.id, MatchedBy.CREATED)])
    )
    log, actions = MemoryStepLog(), copy_product_actions(deps)
    with pytest.raises(HandleNotYetFree, match="whose delete or rename is not synced yet"):
        _stocked_copy(deps, pp, actions=actions, log=log)
    assert asyncio.run(deps.attention.open_items()) == []  # not reported as a conflict
    assert log.sagas["copy-1"].state is SagaState.RUNNING  # resumable

    asyncio.run(
        parent_product_deleted(
            child,
            deleted_parent,
            asyncio.run(deps.links.link_map(CHILD_A)),
            deps.links,
            deps.policy,
            deps.audit,
            "job:2",
            deps.attention,
            deps.archived,
        )
    )
    saga = asyncio.run(SagaExecutor(log, actions, deps.audit).run("copy-1"))
    assert saga.state is SagaState.COMPLETED
    assert child.products[old.id].status == "ARCHIVED"
    assert child.products[old.id].handle == f"tee-archived-{old.id.rsplit('/', 1)[-1]}"
    assert sorted(p.handle for p in child.products.values())[0] == "tee"


def test_on_the_last_attempt_a_handle_held_by_another_copy_is_a_conflict():
    deps, pp = copy_world()
    _rules(deps)  # final_attempt: True
    child = deps.stores[CHILD_A]
    old = child.add_product(
        replace(pp, id=None, variants=(), created_at=datetime.now(UTC) - timedelta(days=3))
    )
    asyncio.run(
        deps.links.save_links(
            [Link(LinkKind.PRODUCT, CHILD_A, "gid://shopify/Product/999", old.id, MatchedBy.CREATED)]
        )
    )
    saga = _stocked_copy(deps, pp)
    assert saga.state is SagaState.COMPENSATED and "HandleConflict" in (saga.error or "")
    assert [a.kind for a in asyncio.run(deps.attention.open_items())] == ["handle_conflict"]
