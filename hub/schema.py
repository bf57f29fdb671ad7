"""The OpenAPI schema's parts that drf-spectacular cannot see by itself.

The routers' protocol (the signed bundle, status reports, trust roots and decision records) is
served by plain Django views, kept off DRF so the poll path stays cheap; they are described here,
with the router-token security scheme, from the same columns and limits the views enforce. Every
operation also lists the error answers it can give: ``{"detail": "..."}`` or ``{"field": ["..."]}``.
"""

from __future__ import annotations

from typing import Any

from audits.decisions import MAX_BATCH
from audits.records import DecisionRecordIn
from portfolio.feed import MAX_STATUS_BYTES, ROUTER_TOKEN_PREFIX, SPOOL_FIELDS
from portfolio.models import Router, RouterReport
from steward.columns import integer_range

ROUTER_TOKEN = "routerToken"
SLUG = {"type": "string", "pattern": r"^[-a-zA-Z0-9_]+$"}
TIME = {"type": "string", "format": "date-time"}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}

ERROR = {
    "type": "object",
    "description": 'An error: `{"detail": "..."}` for the request as a whole, or `{"field": ["message"]}`.',
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}


def openapi_schema(json_schema: Any) -> Any:
    """A pydantic model's JSON Schema as OpenAPI 3.0 writes it: ``nullable`` instead of a ``null``
    alternative, without pydantic's generated titles."""
    if isinstance(json_schema, list):
        return [openapi_schema(item) for item in json_schema]
    if not isinstance(json_schema, dict):
        return json_schema
    schema = {
        key: (
            {name: openapi_schema(value) for name, value in item.items()}
            if key == "properties"
            else openapi_schema(item)
        )
        for key, item in json_schema.items()
        if key != "title"
    }
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del schema["anyOf"]
        schema = {**rest[0], **schema} if len(rest) == 1 else {**schema, "anyOf": rest}
        schema["nullable"] = True
    return schema


def _count(model, field: str, least: int = 0, **more: Any) -> dict:
    """An integer bounded by what the column holds."""
    _, most = integer_range(model, field)
    return {"type": "integer", "minimum": least, "maximum": most, **more}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


def _json(schema: dict, description: str, **extra: Any) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def components() -> dict[str, dict]:
    """The router protocol's bodies; the decision record with the limits of its columns."""
    record = openapi_schema(DecisionRecordIn.model_json_schema(mode="validation"))
    record["description"] = (
        "One decision a router made. Content is stored only where the classification's storage rule says "
        "`content`; otherwise only its SHA-256 is kept (a router may send only the digests). Members not "
        "listed are ignored."
    )
    status_report = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ack", "nack"], "description": "Case-insensitive."},
            "version": _count(
                RouterReport,
                "version",
                nullable=True,
                description="The version applied (required with an ACK) or refused.",
            ),
            "trust_version": _count(RouterReport, "trust_version", nullable=True),
            "error": {"type": "string", "nullable": True, "description": "Why a bundle was refused (NACK)."},
            # The spool's age is kept as the time of its oldest record, bounded like its count.
            **{
                field: _count(Router, "spool_records" if field == "spool_age_seconds" else field)
                for field in SPOOL_FIELDS
            },
        },
    }
    signatures = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["keyid", "sig"],
            "properties": {
                "keyid": {**SHA256, "description": "Hex SHA-256 of the raw 32-byte Ed25519 public key."},
                "sig": {"type": "string", "format": "byte"},
            },
        },
    }
    return {
        "Error": ERROR,
        "DecisionRecord": record,
        "DecisionBatch": {
            "type": "object",
            "required": ["records"],
            "properties": {"records": {"type": "array", "maxItems": MAX_BATCH, "items": record}},
        },
        "DecisionResult": {
            "type": "object",
            "required": ["accepted", "duplicates", "rejected", "violations", "errors"],
            "properties": {
                "accepted": {"type": "integer", "description": "Records stored now."},
                "duplicates": {"type": "integer", "description": "Records already stored (same request_id)."},
                "rejected": {"type": "integer", "description": "Records refused: see errors."},
                "violations": {"type": "integer", "description": "Violations found in the stored records."},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "request_id", "errors"],
                        "properties": {
                            "index": {"type": "integer", "description": "The record's place in the batch."},
                            "request_id": {"nullable": True, "description": "As sent, when it was sent."},
                            "errors": {
                                "type": "object",
                                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
        "StatusReport": status_report,
        "StatusReceived": {
            "type": "object",
            "required": ["received", "router"],
            "properties": {"received": {"type": "string", "enum": ["ack", "nack"]}, "router": {"type": "string"}},
        },
        "PolicyEnvelope": {
            "type": "object",
            "description": (
                "DSSE: Ed25519 over the pre-authentication encoding of payloadType and the payload's bytes "
                "(RFC 8785 JSON of the policy; docs/policy-feed.md)."
            ),
            "required": ["payloadType", "payload", "signatures"],
            "properties": {
                "payloadType": {"type": "string"},
                "payload": {"type": "string", "format": "byte"},
                "signatures": signatures,
            },
        },
        "TrustRoot": {
            "type": "object",
            "required": ["signed", "signatures"],
            "properties": {
                "signed": {
                    "type": "object",
                    "required": ["_type", "spec_version", "version", "expires", "keys", "roles"],
                    "properties": {
                        "_type": {"type": "string", "enum": ["steward.root"]},
                        "spec_version": {"type": "string"},
                        "version": {"type": "integer", "minimum": 1},
                        "expires": TIME,
                        "keys": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "keytype": {"type": "string"},
                                    "scheme": {"type": "string"},
                                    "keyval": {"type": "object", "properties": {"public": {"type": "string"}}},
                                },
                            },
                        },
                        "roles": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {
                                    "keyids": {"type": "array", "items": {"type": "string"}},
                                    "threshold": {"type": "integer", "minimum": 1},
                                },
                            },
                        },
                    },
                },
                "signatures": signatures,
            },
        },
    }


def _conditional_get(summary: str, description: str, body: dict, media_type: str, headers: dict) -> dict:
    etag = {"schema": {"type": "string"}, "description": "Strong: the quoted SHA-256 of the body."}
    return {
        "summary": summary,
        "description": description,
        "parameters": [
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The ETag you hold: 304 when it is still current.",
            }
        ],
        "responses": {
            "200": {
                "description": "The current document.",
                "headers": {"ETag": etag, **headers},
                "content": {media_type: {"schema": body}},
            },
            "304": {"description": "Unchanged since the ETag given.", "headers": {"ETag": etag}},
            "404": _error("Nothing published yet."),
        },
    }


def paths() -> dict[str, dict]:
    """The routers' endpoints (docs/policy-feed.md)."""
    router = [{ROUTER_TOKEN: []}]
    refused = {"401": _error("Missing, unknown or revoked router token."), "403": _error("Another policy set's.")}
    slug = {"name": "slug", "in": "path", "required": True, "schema": SLUG, "description": "The policy set."}
    bundle = _conditional_get(
        "The policy set's current signed bundle",
        "Poll this as often as you like: answer `If-None-Match` with the ETag you hold and get 304 while it is "
        "current. Verify the envelope with the trust root before applying it.",
        _ref("PolicyEnvelope"),
        "application/vnd.dsse.envelope+json",
        {"X-Policy-Version": {"schema": {"type": "integer"}, "description": "The version inside."}},
    )
    bundle.update(operationId="feed_bundle", tags=["feed"], security=router, parameters=[slug, *bundle["parameters"]])
    bundle["responses"].update(refused)
    bundle["responses"]["404"] = _error("Nothing published yet, or no such URL (a slug of other characters).")
    status = {
        "operationId": "feed_status",
        "tags": ["feed"],
        "summary": "Report the version a router applied (ACK) or refused (NACK)",
        "description": "With what the router's decision spool holds, when it has one.",
        "security": router,
        "parameters": [slug],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("StatusReport")}}},
        "responses": {
            "200": _json(_ref("StatusReceived"), "Recorded."),
            "400": _error("Not a status report: the fields at fault are named."),
            **refused,
            "404": _error("No such URL (a slug of other characters)."),
            "413": _error(f"Larger than {MAX_STATUS_BYTES} bytes."),
        },
    }
    decisions = {
        "operationId": "decisions_create",
        "tags": ["decisions"],
        "summary": "Report a batch of decision records",
        "description": (
            f"Up to {MAX_BATCH} records. Each bad record is answered with its errors and the good ones are "
            "stored: the answer is 200 either way. A repeated `request_id` from the same router is stored once, "
            "so a router may resend a batch safely."
        ),
        "security": router,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("DecisionBatch")}}},
        "responses": {
            "200": _json(_ref("DecisionResult"), "Stored what was good; the errors of the rest."),
            "400": _error("Not JSON, or no list of records."),
            "401": refused["401"],
            "403": _error("A record names another policy set than the router's."),
            "413": _error(f"More than {MAX_BATCH} records, or a body over the size limit."),
        },
    }
    latest_root = _conditional_get(
        "The latest trust root",
        "Public: it holds only public keys. Routers start from a root they were given and walk N → N+1.",
        _ref("TrustRoot"),
        "application/json",
        {"X-Trust-Version": {"schema": {"type": "integer"}}},
    )
    latest_root.update(operationId="trust_root", tags=["feed"], security=[{}])
    root_version = _conditional_get(
        "Trust root version N",
        "Every version stays published.",
        _ref("TrustRoot"),
        "application/json",
        {"X-Trust-Version": {"schema": {"type": "integer"}}},
    )
    number = {"name": "version", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
    root_version.update(
        operationId="trust_root_version",
        tags=["feed"],
        security=[{}],
        parameters=[number, *root_version["parameters"]],
    )
    return {
        "/api/v1/policy-sets/{slug}/bundle": {"get": bundle},
        "/api/v1/policy-sets/{slug}/status": {"post": status},
        "/api/v1/decisions": {"post": decisions},
        "/api/v1/trust/root.json": {"get": latest_root},
        "/api/v1/trust/{version}.root.json": {"get": root_version},
    }


ERRORS = {
    "400": "Bad input: the fields or parameters at fault are named.",
    "401": "Not signed in: no token, or an unknown, revoked or expired one.",
    "403": "Signed in, without the role this needs.",
    "404": "No such object.",
    "413": "The body is too large.",
    "503": "A service Steward needs is down (PostgreSQL, the task queue): Retry-After says when to ask again.",
}


def _document_errors(operation: dict, path: str) -> None:
    """The error answers every API operation can give, where the operation does not list its own;
    and the router's rule for path parameters (``[^/.]+``) where the schema has none."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        free = "pattern" not in schema and "enum" not in schema
        if parameter["in"] == "path" and schema.get("type") == "string" and free:
            schema["pattern"] = "^[^/.]+$"
    responses = operation.setdefault("responses", {})
    codes = ["401", "403", "503"]
    if operation.get("parameters") or "requestBody" in operation:
        codes.append("400")
    if "{" in path:
        codes.append("404")
    if "requestBody" in operation:
        codes.append("413")
    for code in codes:
        responses.setdefault(code, _error(ERRORS[code]))


def complete_schema(result: dict, generator, request, public) -> dict:
    """drf-spectacular's post-processing hook: add the router protocol and the error answers."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components())
    schemes = result["components"].setdefault("securitySchemes", {})
    schemes[ROUTER_TOKEN] = {
        "type": "http",
        "scheme": "bearer",
        "description": (
            f"A router's token (`{ROUTER_TOKEN_PREFIX}…`), issued once when an officer registers the router: "
            "`Authorization: Bearer <token>`. It reads and reports for its own policy set only."
        ),
    }
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            _document_errors(operation, path)
    router_paths = paths()
    for operations in router_paths.values():  # the router protocol lists its own errors; a service can be down
        for operation in operations.values():
            operation["responses"].setdefault("503", _error(ERRORS["503"]))
    result["paths"] = {**result.get("paths", {}), **router_paths}
    result["paths"] = dict(sorted(result["paths"].items()))
    return result
