"""``POST /api/v1/decisions``: routers report batches of decision records with their router token."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from portfolio.feed import router_from_request, unauthorised
from portfolio.models import Router

from .decisions import MAX_BATCH, MAX_BODY_BYTES, ForeignPolicySet, ingest


@csrf_exempt
@require_POST
def decisions(request: HttpRequest) -> HttpResponse:
    """Store a batch ``{"records": [...]}`` of up to 1,000 decision records; answer per-record errors."""
    identity = router_from_request(request)
    if identity is None:
        return unauthorised()
    length = int(request.headers.get("Content-Length") or 0)
    if length > MAX_BODY_BYTES:
        return JsonResponse({"detail": f"The body may be at most {MAX_BODY_BYTES // (1024 * 1024)} MB."}, status=413)
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return JsonResponse({"detail": f"The body may be at most {MAX_BODY_BYTES // (1024 * 1024)} MB."}, status=413)
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"records": ['The body must be JSON: {"records": [...]}.']}, status=400)
    if not isinstance(document, dict) or not isinstance(document.get("records"), list):
        return JsonResponse({"records": ["Required: a list of decision records."]}, status=400)
    records = document["records"]
    if len(records) > MAX_BATCH:
        return JsonResponse(
            {"records": [f"A batch holds at most {MAX_BATCH} records; this one has {len(records)}."]}, status=413
        )
    router = Router.objects.select_related("policy_set").get(pk=identity.router_id)
    try:
        result = ingest(router, records)
    except ForeignPolicySet as error:
        return JsonResponse(
            {"detail": f"This router reports for {router.policy_set.slug}, not for {error.args[0]!r}."}, status=403
        )
    return JsonResponse(result.as_dict(), status=200)
