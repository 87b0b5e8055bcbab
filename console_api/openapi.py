"""The OpenAPI 3.1 document of the console API: paths from the route registry, request schemas from
each route's body model, response schemas from `console_api.schemas` (or a route's own `returns`)."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from console_api import schemas

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


class _Schemas(GenerateJsonSchema):
    """A response always carries every field of its model (defaults included), so the typed client
    need not treat them as optional; requests keep fields with defaults optional."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def response_of(op: Any) -> Any:
    """What the operation returns: its own `returns`, else the table's entry; `...` when undocumented."""
    own = getattr(op, "returns", ...)
    if own is not ...:
        return own
    return schemas.RESPONSES.get((op.method, op.path), ...)


def _model_of(spec: Any) -> tuple[type[BaseModel] | None, bool]:
    """(model, is_list) for `Model` or `list[Model]`; (None, False) for anything else."""
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return spec, False
    if typing.get_origin(spec) is list:
        (item,) = typing.get_args(spec)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
    return None, False


def _union_of(spec: Any) -> tuple[list[type[BaseModel]], str | None]:
    """(models, discriminator) for `A | B` or `Annotated[A | B, Field(discriminator=...)]` of models;
    ([], None) for anything else."""
    discriminator = None
    if typing.get_origin(spec) is typing.Annotated:
        spec, *extra = typing.get_args(spec)
        discriminator = next(
            (getattr(e, "discriminator", None) for e in extra if isinstance(getattr(e, "discriminator", None), str)),
            None,
        )
    if typing.get_origin(spec) not in (typing.Union, types.UnionType):
        return [], None
    models = list(typing.get_args(spec))
    if not all(isinstance(m, type) and issubclass(m, BaseModel) for m in models):
        return [], None
    return models, discriminator


def _plain_schema(spec: Any) -> dict[str, Any]:
    if isinstance(spec, dict):
        return spec
    if typing.get_origin(spec) is list and typing.get_args(spec) == (str,):
        return {"type": "array", "items": {"type": "string"}}
    if typing.get_origin(spec) is dict or spec is dict:
        return {"type": "object"}
    raise TypeError(f"cannot describe {spec!r} in the OpenAPI document; use a pydantic model")


def build_document(api: Any, *, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every registered operation of `api` (a `console_api.Api`)."""
    # One pass over every model in the mode it is used in: pydantic names the two variants of a model
    # used both ways (`X-Input`/`X-Output`), so a request's defaults stay optional and a response's
    # always-present fields are required.
    wanted: list[tuple[type[BaseModel], Any]] = []
    for op in api.operations:
        if op.body is not None:
            wanted.append((op.body, "validation"))
        model, _ = _model_of(response_of(op))
        if model is not None:
            wanted.append((model, "serialization"))
        wanted += [(m, "serialization") for m in _union_of(response_of(op))[0]]
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=_REF, schema_generator=_Schemas)
    components: dict[str, Any] = {"Error": _ERROR, **defs.get("$defs", {})}
    error_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    paths: dict[str, dict[str, Any]] = {}
    for op in api.operations:
        path = _PARAM.sub(r"{\1}", op.path)
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(op.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}, "description": desc}
            for name, desc in op.query.items()
        ]
        spec = response_of(op)
        if spec is None:
            ok: dict[str, Any] = {"204": {"description": "done, no content"}}
        elif spec is ...:
            ok = {"200": {"description": "success (undocumented shape)", "content": {op.response: {}}}}
        else:
            model, is_list = _model_of(spec)
            members, discriminator = _union_of(spec)
            if model is not None:
                schema = refs[(model, "serialization")]
                schema = {"type": "array", "items": schema} if is_list else schema
            elif members:
                schema = {"oneOf": [refs[(m, "serialization")] for m in members]}
                if discriminator:
                    schema["discriminator"] = {
                        "propertyName": discriminator,
                        "mapping": {
                            value: refs[(m, "serialization")]["$ref"]
                            for m in members
                            for value in typing.get_args(m.model_fields[discriminator].annotation)
                        },
                    }
            else:
                schema = _plain_schema(spec)
            ok = {"200": {"description": "success", "content": {op.response: {"schema": schema}}}}
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
            "tags": [op.tag],
            "responses": {
                **ok,
                "400": {"description": "bad request", **error_ref},
                "default": {"description": "error", **error_ref},
            },
        }
        if params:
            entry["parameters"] = params
        if op.role is not None:
            entry["security"] = [{"bearer": []}, {"session": []}]
            entry["x-required-role"] = op.role
            if op.clients is not None:
                entry["x-client-tokens"] = op.clients  # CI client tokens accepted, for their own services
            entry["responses"]["401"] = {"description": "not authenticated", **error_ref}
            entry["responses"]["403"] = {"description": "role not allowed, or a failed CSRF check", **error_ref}
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        elif (op.method, op.path) in schemas.REQUESTS:
            entry["requestBody"] = {"required": True, "content": schemas.REQUESTS[(op.method, op.path)]}
        paths.setdefault(path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Infra-Core console API", "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "ic_session",
                    "description": "browser session; mutating calls also need the X-CSRF-Token header",
                },
            },
        },
    }
