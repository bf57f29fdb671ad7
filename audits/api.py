"""``POST /api/v1/decisions``: routers report batches of decision records with their router token.
``GET /api/v1/audit/checkpoints``: the signed checkpoints of the audit trail, for keeping copies."""

from __future__ import annotations

import base64
import json
import re

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from portfolio.feed import router_from_request, unauthorised
from portfolio.models import Router
from steward.api import requires
from steward.paging import WHOLE_NUMBER
from steward.parsers import JSONBodyError, parse_json_batch

from .chain import chain_json
from .checkpoints import CHECKPOINT_PAYLOAD_TYPE, statement_time
from .decisions import MAX_BATCH, MAX_BODY_BYTES, ForeignPolicySet, ingest
from .models import AuditCheckpoint, AuditKey, DecisionRecord
from .records import MAX_RECORD_DEPTH, check_body

CHECKPOINT_PAGE = 1000
# How a NUL or a lone surrogate gets into a parsed JSON string: a \u escape, or (json decodes bytes
# with "surrogatepass") a surrogate's UTF-8 bytes; a raw control character is refused, and a body in
# UTF-16 or UTF-32 holds NUL bytes.
UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
SURROGATE_BYTES = re.compile(rb"\xed[\xa0-\xbf]")


def storable_text_only(body: bytes) -> bool:
    """True when no string parsed from ``body`` can hold a NUL or a lone surrogate (a few substring
    searches, each skipped when its first byte is absent)."""
    if b"\x00" in body:
        return False
    if b"\\u" in body and UNSTORABLE_ESCAPE.search(body):
        return False
    return not (b"\xed" in body and SURROGATE_BYTES.search(body))


# What the views below answer, for the schema (nothing is read or written through these).


class AuditKeyOut(serializers.Serializer):
    keyid = serializers.CharField(help_text="Hex SHA-256 of the raw 32-byte public key.")
    keytype = serializers.ChoiceField(choices=["ed25519"])
    public_key = serializers.CharField()


class CheckpointOut(serializers.Serializer):
    number = serializers.IntegerField(min_value=1)
    count = serializers.IntegerField(help_text="Events in the chain: the seq of its newest event.")
    head = serializers.CharField(help_text="The hash of event #count.")
    time = serializers.DateTimeField()
    reason = serializers.CharField(allow_blank=True)
    keyid = serializers.CharField()
    statement = serializers.CharField(help_text="The exact signed bytes, as text.")
    signature = serializers.CharField(help_text="Base64 Ed25519 signature over DSSE's PAE of the statement.")
    envelope = serializers.DictField(help_text="The DSSE envelope as the checkpoint log holds it.")


class CheckpointsOut(serializers.Serializer):
    payload_type = serializers.CharField()
    keys = AuditKeyOut(many=True)
    checkpoints = CheckpointOut(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null on the last.")


class ChainDecisionOut(serializers.Serializer):
    id = serializers.IntegerField()
    request_id = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    judged_at = serializers.DateTimeField(
        help_text="The moment it is judged at: occurred_at, or its policy version's publication when dated "
        "within the clock slack before it."
    )
    policy_set = serializers.CharField()
    policy_version = serializers.IntegerField()
    task = serializers.CharField()
    classification = serializers.CharField()
    model = serializers.CharField()


class ChainModelVersionOut(serializers.Serializer):
    ref = serializers.CharField()
    status = serializers.CharField()
    status_at_decision = serializers.CharField(
        allow_null=True, help_text="Its lifecycle status at the decision's moment; null when not in the registry yet."
    )
    approved_by = serializers.CharField(allow_null=True)
    approved_at = serializers.DateTimeField(allow_null=True)
    approval_comment = serializers.CharField(allow_null=True, allow_blank=True)
    priced_micro_usd = serializers.IntegerField(help_text="The decision's tokens at the version's prices.")


class ChainPolicyVersionOut(serializers.Serializer):
    policy_set = serializers.CharField()
    number = serializers.IntegerField()
    provenance = serializers.CharField()
    published_at = serializers.DateTimeField()
    source_version = serializers.IntegerField(allow_null=True, help_text="The version a re-signing copied.")
    expires = serializers.DateTimeField(allow_null=True)
    published_at_decision = serializers.BooleanField(help_text="Published by the decision's moment.")
    expired_at_decision = serializers.BooleanField()
    superseded_by = serializers.IntegerField(
        allow_null=True,
        help_text="The version in force instead, when other routes had replaced its own beyond the grace window.",
    )
    superseded_at = serializers.DateTimeField(allow_null=True, help_text="Since when its routes had been replaced.")


class ChainApproverOut(serializers.Serializer):
    reviewer = serializers.CharField()
    at = serializers.DateTimeField()
    comment = serializers.CharField(allow_blank=True)


class ChainChangeRequestOut(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    author = serializers.CharField()
    approvers = ChainApproverOut(many=True)


class ChainComplianceOut(serializers.Serializer):
    usable = serializers.BooleanField()
    state = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())
    cell_decision_then = serializers.CharField(allow_null=True)
    cell_decision_now = serializers.CharField(allow_null=True)
    cell_changed_since = serializers.BooleanField()


class ChainViolationOut(serializers.Serializer):
    kind = serializers.CharField()
    detail = serializers.CharField()


class ChainOut(serializers.Serializer):
    decision = ChainDecisionOut()
    model_version = ChainModelVersionOut(allow_null=True, help_text="Null when the model is not in the registry.")
    policy_version = ChainPolicyVersionOut(allow_null=True, help_text="Null when the version was never published.")
    change_request = ChainChangeRequestOut(allow_null=True)
    route = serializers.DictField(allow_null=True, help_text="The route as the policy spells it.")
    place = serializers.CharField(allow_blank=True, help_text="The model's place in the route.")
    compliance = ChainComplianceOut(allow_null=True)
    violations = ChainViolationOut(many=True)


@csrf_exempt
@require_POST
def decisions(request: HttpRequest) -> HttpResponse:
    """Store a batch ``{"records": [...]}`` of up to 1,000 decision records; answer per-record errors."""
    identity = router_from_request(request)
    if identity is None:
        return unauthorised()
    too_large = JsonResponse({"detail": f"The body may be at most {MAX_BODY_BYTES // (1024 * 1024)} MB."}, status=413)
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        return too_large
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return too_large
    text_checked = storable_text_only(body)
    # A well-formed batch is read and checked in one call; any other body the long way, for its answers.
    records = check_body(body) if text_checked else None
    checked = records is not None
    if records is None:
        try:
            # Depth and text are checked record by record (audits.records), so one bad record loses no others.
            document = parse_json_batch(body, "records", MAX_RECORD_DEPTH)
        except JSONBodyError as error:
            messages = ['The body must be JSON: {"records": [...]}.', *error.errors["detail"]]
            return JsonResponse({"records": messages}, status=400)
        if not isinstance(document, dict) or not isinstance(document.get("records"), list):
            return JsonResponse({"records": ["Required: a list of decision records."]}, status=400)
        records = document["records"]
    if len(records) > MAX_BATCH:
        return JsonResponse(
            {"records": [f"A batch holds at most {MAX_BATCH} records; this one has {len(records)}."]}, status=413
        )
    router = Router.objects.select_related("policy_set").get(pk=identity.router_id)
    try:
        result = ingest(router, records, text_checked=text_checked, checked=checked)
    except ForeignPolicySet as error:
        return JsonResponse(
            {"detail": f"This router reports for {router.policy_set.slug}, not for {error.args[0]!r}."}, status=403
        )
    return JsonResponse(result.as_dict(), status=200)


@extend_schema(
    parameters=[OpenApiParameter("after", int, description="Only checkpoints numbered above this one.")],
    responses=CheckpointsOut,
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def checkpoints(request) -> Response:
    """The audit trail's signed checkpoints, oldest first, ``?after=<number>`` for those after one.

    Each carries its statement (the exact signed bytes, as text), the signature (Ed25519 over DSSE's
    pre-authentication encoding of ``payload_type`` and the statement), the keyid, and the DSSE
    envelope exactly as the checkpoint log holds it; ``keys`` has the audit public keys. Anyone who
    keeps copies (another machine, on a schedule) can verify them without Steward and later hold
    Steward's trail against them.

    Readable with the ``audits.view_auditcheckpoint`` permission, which every role has (officers,
    engineers, auditors, by session or API token): a checkpoint reveals only how many events the
    trail held and when, never their content. Anonymous reading is not offered: copy keepers run
    with a token of their own (an auditor's), so who fetches is known; someone without a role gets 403.
    """
    if not request.user.has_perm("audits.view_auditcheckpoint"):
        return Response({"detail": "You do not have permission to read the audit checkpoints."}, status=403)
    after = request.query_params.get("after") or "0"
    if not WHOLE_NUMBER.fullmatch(after):
        return Response({"after": ["Must be a checkpoint number: a whole number, 0 or more."]}, status=400)
    rows = list(AuditCheckpoint.objects.filter(number__gt=int(after)).order_by("number")[: CHECKPOINT_PAGE + 1])
    more = len(rows) > CHECKPOINT_PAGE
    rows = rows[:CHECKPOINT_PAGE]
    items = []
    for row in rows:
        envelope = json.loads(bytes(row.envelope))
        [signature] = envelope["signatures"]
        items.append(
            {
                "number": row.number,
                "count": row.count,
                "head": row.head,
                "time": statement_time(row.made_at),
                "reason": row.reason,
                "keyid": signature["keyid"],
                "statement": base64.b64decode(envelope["payload"]).decode("utf-8"),
                "signature": signature["sig"],
                "envelope": envelope,
            }
        )
    next_url = None
    if more:
        next_url = request.build_absolute_uri(f"{reverse('audit-checkpoints')}?after={rows[-1].number}")
    return Response(
        {
            "payload_type": CHECKPOINT_PAYLOAD_TYPE,
            "keys": [
                {"keyid": key.keyid, "keytype": "ed25519", "public_key": key.public_key}
                for key in AuditKey.objects.order_by("created_at", "pk")
            ],
            "checkpoints": items,
            "next": next_url,
        }
    )


@extend_schema(responses=ChainOut)
@api_view(["GET"])
@permission_classes([requires("audits.view_decisionrecord", "You do not have permission to read decision records.")])
def decision_chain(request, pk: int) -> Response:
    """What stands behind one decision record: the model version and the approval in force, the policy
    version with its change request and approvers, the route and the model's place in it, the matrix
    cell's decision then and now, the compliance verdict at the decision's time, and its violations."""
    found = DecisionRecord.objects.filter(pk=pk).first()
    if found is None:
        return Response({"detail": f"No decision record {pk}."}, status=404)
    return Response(chain_json(found))
