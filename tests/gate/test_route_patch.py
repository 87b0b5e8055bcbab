"""`GateService.patch_route`: a merge patch on a stored route (a real SQLite store), applied under the
route lock; the API's `RoutePatch` body model."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from core.bus import EventBus
from core.errors import NotFound, ValidationFailed
from core.schema import CORE_MIGRATIONS
from core.store import Store
from gate.config import GateConfig
from gate.routes import RoutePatch, RouteSpec
from gate.service import GateService


@pytest.fixture
async def service(tmp_path):
    store = Store(tmp_path / "state.db")
    await store.open()
    await store.migrate("core", CORE_MIGRATIONS)
    bus = EventBus(store)
    await bus.start()
    svc = GateService(GateConfig(), store=store, bus=bus, listen_host="127.0.0.1", listen_port=0)
    await svc.start()
    yield svc
    await svc.stop(2.0)
    bus.close()
    await store.close()


async def test_patch_changes_only_the_given_fields(service: GateService):
    r = await service.add_route(
        RouteSpec(
            host="a.test",
            upstreams=["127.0.0.1:1"],
            tls="auto",
            max_body_bytes=1000,
            policies={"security_headers": True, "rate_limit": {"rate_per_s": 5, "burst": 9}},
        )
    )
    before, after = await service.patch_route(r.id, {"policies": {"hsts_max_age_s": 600}})
    assert before.spec == r.spec
    assert after.spec == r.spec.model_copy(
        update={"policies": r.spec.policies.model_copy(update={"hsts_max_age_s": 600})}
    )
    # null: back to the default; nested values other than policies' fields are replaced whole.
    _, after = await service.patch_route(
        r.id,
        {
            "max_body_bytes": None,
            "policies": {"hsts_max_age_s": None, "redirect_https": False, "rate_limit": {"rate_per_s": 2}},
        },
    )
    assert after.spec.max_body_bytes is None and after.spec.policies.hsts_max_age_s == 0
    assert after.spec.policies.redirect_https is False and after.spec.policies.security_headers is True
    assert after.spec.policies.rate_limit is not None and after.spec.policies.rate_limit.burst == 0
    stored = await service.store.fetchall("SELECT spec FROM gate_routes WHERE id = ?", (r.id,))
    assert RouteSpec.model_validate_json(stored[0]["spec"]) == after.spec
    # Unchanged: a no-op returning the same route.
    b, a = await service.patch_route(r.id, {"tls": "auto"})
    assert a is b


async def test_patch_errors_name_the_field_and_keep_the_route(service: GateService):
    r = await service.add_route(RouteSpec(host="a.test", upstreams=["127.0.0.1:1"]))
    with pytest.raises(NotFound, match="no route with id 999"):
        await service.patch_route(999, {"tls": "auto"})
    with pytest.raises(ValidationFailed) as e:
        await service.patch_route(r.id, {"policies": {"hsts_max_age_s": -1}})
    assert e.value.details["errors"][0]["field"] == "policies.hsts_max_age_s"
    with pytest.raises(ValidationFailed, match="either upstreams or a static_dir"):
        await service.patch_route(r.id, {"static_dir": "/srv/www/site"})
    assert service.get_route(r.id).spec == r.spec


async def test_concurrent_patches_of_different_fields_both_stick(service: GateService):
    r = await service.add_route(RouteSpec(host="a.test", upstreams=["127.0.0.1:1"], tls="auto"))
    await asyncio.gather(
        *(
            service.patch_route(r.id, change)
            for change in (
                {"policies": {"hsts_max_age_s": 60}},
                {"policies": {"security_headers": True}},
                {"balance": "least_conn"},
                {"max_body_bytes": 5},
            )
        )
    )
    spec = service.get_route(r.id).spec
    assert (spec.policies.hsts_max_age_s, spec.policies.security_headers, spec.balance, spec.max_body_bytes) == (
        60,
        True,
        "least_conn",
        5,
    )


def test_route_patch_model_is_partial_and_strict():
    p = RoutePatch.model_validate({"policies": {"redirect_https": None, "hsts_max_age_s": 5}})
    assert p.model_dump(exclude_unset=True) == {"policies": {"redirect_https": None, "hsts_max_age_s": 5}}
    with pytest.raises(ValidationError, match="Extra inputs"):
        RoutePatch.model_validate({"policies": {"hsts": 5}})
    assert set(RoutePatch.model_fields) == set(RouteSpec.model_fields)
