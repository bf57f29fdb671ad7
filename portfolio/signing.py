"""Signing: Ed25519 keys encrypted at rest, trust root versions, and signed policy releases.

The payload is RFC 8785 canonical JSON with integers only; the envelope is DSSE. The same
canonicalisation and encoding code is used by ``steward_client`` to verify, so both sides agree
byte for byte.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audits import events as audit
from steward import kek
from steward_client.canonical import canonical_json
from steward_client.dsse import POLICY_PAYLOAD_TYPE, keyid_for, raw_public_key, sign_envelope
from steward_client.verify import ROOT_TYPE, SPEC_VERSION

from .models import (
    CostTier,
    KeyRole,
    KeyStatus,
    PolicyRelease,
    PolicySet,
    PolicyVersion,
    SigningKey,
    TrustRoot,
)
from .signals import announce_published


def rfc3339(moment: dt.datetime) -> str:
    """UTC, whole seconds, with ``Z``: the only time format the feed uses."""
    return moment.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_key(role: str) -> SigningKey:
    """A new Ed25519 key for ``role``; its private half is encrypted with the key-encryption key."""
    if role not in KeyRole.values:
        raise ValidationError({"role": [f"Unknown key role {role!r}; use root or policy."]})
    private = Ed25519PrivateKey.generate()
    public_raw = raw_public_key(private.public_key())
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    key = SigningKey.objects.create(
        role=role,
        keyid=keyid_for(public_raw),
        public_key=public_raw.hex(),
        private_key_encrypted=kek.encrypt(raw_private),
    )
    audit.record("signing_key.create", obj=key, after={"role": role, "keyid": key.keyid})
    return key


def private_key(key: SigningKey) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(kek.decrypt(key.private_key_encrypted))


def current_root() -> TrustRoot | None:
    return TrustRoot.objects.order_by("-version").first()


def root_document(root: TrustRoot) -> dict:
    return json.loads(bytes(root.document))


def _role_keyids(root: TrustRoot, role: str) -> list[str]:
    return root_document(root)["signed"]["roles"][role]["keyids"]


def publish_root(reason: str, now: dt.datetime | None = None) -> TrustRoot:
    """Publish the next trust root version from the keys that are active (and policy keys retiring).

    Root N+1 is signed by root N's root keys and by its own, so routers holding N accept it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        previous = TrustRoot.objects.select_for_update().order_by("-version").first()
        root_keys = list(SigningKey.objects.filter(role=KeyRole.ROOT, status=KeyStatus.ACTIVE))
        policy_keys = list(
            SigningKey.objects.filter(role=KeyRole.POLICY, status__in=[KeyStatus.ACTIVE, KeyStatus.RETIRING])
        )
        if not root_keys or not policy_keys:
            raise ValidationError("A trust root needs at least one active root key and one policy key.")
        version = (previous.version if previous else 0) + 1
        expires = now + dt.timedelta(days=settings.STEWARD_ROOT_LIFETIME_DAYS)
        signed = {
            "_type": ROOT_TYPE,
            "spec_version": SPEC_VERSION,
            "version": version,
            "expires": rfc3339(expires),
            "keys": {
                key.keyid: {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": key.public_key}}
                for key in [*root_keys, *policy_keys]
            },
            "roles": {
                "root": {"keyids": sorted(k.keyid for k in root_keys), "threshold": 1},
                "policy": {"keyids": sorted(k.keyid for k in policy_keys), "threshold": 1},
            },
        }
        message = canonical_json(signed)
        signer_ids = {k.keyid for k in root_keys}
        if previous is not None:
            signer_ids |= set(_role_keyids(previous, "root"))
        signers = SigningKey.objects.filter(keyid__in=signer_ids).order_by("keyid")
        signatures = [{"keyid": key.keyid, "sig": _b64(private_key(key).sign(message))} for key in signers]
        document = canonical_json({"signed": signed, "signatures": signatures})
        root = TrustRoot.objects.create(
            version=version, document=document, expires=expires, created_at=now, reason=reason
        )
        audit.record(
            "trust_root.publish",
            obj=root,
            comment=reason,
            after={
                "version": version,
                "root_keys": signed["roles"]["root"]["keyids"],
                "policy_keys": signed["roles"]["policy"]["keyids"],
                "signed_by": sorted(signer_ids),
            },
        )
        return root


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def ensure_keys() -> TrustRoot:
    """The current trust root, creating the first root and policy keys and root v1 when none exist."""
    root = current_root()
    if root is not None:
        return root
    with transaction.atomic():
        if not SigningKey.objects.filter(role=KeyRole.ROOT, status=KeyStatus.ACTIVE).exists():
            create_key(KeyRole.ROOT)
        if not SigningKey.objects.filter(role=KeyRole.POLICY, status=KeyStatus.ACTIVE).exists():
            create_key(KeyRole.POLICY)
        return publish_root("first trust root")


def rotate(role: str) -> tuple[SigningKey, TrustRoot]:
    """Rotate the ``role`` key and publish the next trust root.

    A new root key replaces the old at once (root N+1 is signed by both). A new policy key signs
    beside the old one, which keeps signing (``retiring``) until every router reports the new
    trust version; ``finish_policy_rotation`` then retires it.
    """
    ensure_keys()
    with transaction.atomic():
        old = list(SigningKey.objects.select_for_update().filter(role=role, status=KeyStatus.ACTIVE))
        new = create_key(role)
        for key in old:
            key.status = KeyStatus.RETIRED if role == KeyRole.ROOT else KeyStatus.RETIRING
            key.retired_at = timezone.now() if role == KeyRole.ROOT else None
            key.save(update_fields=["status", "retired_at"])
            audit.record("signing_key.rotate_out", obj=key, after={"status": key.status, "replaced_by": new.keyid})
        root = publish_root(f"{role} key rotated to {new.keyid[:12]}")
    return new, root


def finish_policy_rotation(force: bool = False) -> TrustRoot | None:
    """Retire retiring policy keys once every active router reports the current trust version.

    Returns the new trust root, or None when nothing was retired (no rotation under way, or
    routers still behind and ``force`` not given).
    """
    from .models import Router

    retiring = SigningKey.objects.filter(role=KeyRole.POLICY, status=KeyStatus.RETIRING)
    if not retiring.exists():
        return None
    root = current_root()
    behind = Router.objects.filter(revoked_at__isnull=True).exclude(trust_version__gte=root.version)
    if behind.exists() and not force:
        return None
    with transaction.atomic():
        retiring.update(status=KeyStatus.RETIRED, retired_at=timezone.now())
        return publish_root("policy key rotation finished")


# --- policy releases ----------------------------------------------------------------------------


def compile_payload(version: PolicyVersion, issued_at: dt.datetime, expires: dt.datetime, trust_version: int) -> bytes:
    """The signed payload for ``version``: every model, tier and classification its routes need."""
    from compliance.models import DataClassification
    from registry.models import ModelVersion

    policy = version.policy
    refs = policy.model_refs
    models_by_ref = {v.ref: v for v in ModelVersion.objects.with_related().filter(ref__in=refs)}
    missing = [ref for ref in refs if ref not in models_by_ref]
    if missing:
        raise ValidationError({"policy": [f"Models no longer in the registry: {', '.join(missing)}"]})
    slugs = sorted({route.classification for route in policy})
    classifications = {c.slug: c for c in DataClassification.objects.filter(slug__in=slugs)}
    tasks = {task.slug: task for task in _tasks({route.task for route in policy})}
    routes = []
    for route in policy:
        tier = route.tier or (tasks[route.task].tier.slug if route.task in tasks else None)
        routes.append(
            {
                "task": route.task,
                "classification": route.classification,
                "tier": tier,
                "model": route.model,
                "fallbacks": list(route.fallbacks),
                "escalation": (
                    {k: v for k, v in route.escalation.as_spec().items() if v is not None} if route.escalation else None
                ),
                "constraints": route.constraints,
            }
        )
    change_request = version.change_request
    source = version.source_version
    payload = {
        "_type": "steward.routing-policy",
        "spec_version": SPEC_VERSION,
        "policy_set": version.policy_set.slug,
        "version": version.number,
        "issued_at": rfc3339(issued_at),
        "expires": rfc3339(expires),
        "trust_version": trust_version,
        "provenance": {
            "kind": version.provenance,
            "change_request": change_request.pk if change_request else (source.change_request_id if source else None),
            "author": version.author.get_username() if version.author else None,
            "approvers": version.approvers,
            "published_by": version.published_by.get_username() if version.published_by else None,
            "source_version": source.number if source else None,
        },
        "models": {
            ref: {
                "provider": model_version.model.provider.slug,
                "model": model_version.model.slug,
                "version": model_version.version,
                "region": model_version.region,
                "endpoint": {
                    "kind": model_version.endpoint_kind,
                    "base_url": model_version.base_url,
                    "provider_model_id": model_version.provider_model_id,
                    "api_key_env": model_version.api_key_env,
                },
                "tier": model_version.cost_tier,
                "context_window": model_version.effective_context_window,
                "prices": {
                    "input_micro_usd_per_mtok": model_version.input_price_micro_usd,
                    "output_micro_usd_per_mtok": model_version.output_price_micro_usd,
                },
            }
            for ref, model_version in sorted(models_by_ref.items())
        },
        "tiers": {
            tier.slug: {"rank": tier.rank, "price_ceiling_micro_usd": tier.price_ceiling_micro_usd}
            for tier in CostTier.objects.all()
        },
        "classifications": {
            slug: {"level": c.level, "storage": c.storage} for slug, c in sorted(classifications.items())
        },
        "routes": routes,
        "default": policy.default,
    }
    return canonical_json(payload)


def _tasks(slugs: set[str]):
    from .models import Task

    return Task.objects.select_related("tier").filter(slug__in=slugs)


def sign_release(version: PolicyVersion, now: dt.datetime | None = None) -> PolicyRelease:
    """Compile, sign and store the release of ``version`` (inside the publishing transaction)."""
    now = now or timezone.now()
    root = ensure_keys()
    policy_set = version.policy_set
    expires = now + dt.timedelta(days=policy_set.policy_lifetime_days)
    payload = compile_payload(version, now, expires, root.version)
    keyids = _role_keyids(root, "policy")
    keys = [private_key(key) for key in SigningKey.objects.filter(keyid__in=keyids).order_by("keyid")]
    envelope = sign_envelope(payload, POLICY_PAYLOAD_TYPE, keys)
    release = PolicyRelease.objects.create(
        policy_version=version,
        payload=payload,
        envelope=envelope,
        sha256=hashlib.sha256(envelope).hexdigest(),
        issued_at=now.replace(microsecond=0),
        expires=expires.replace(microsecond=0),
        trust_version=root.version,
        keyids=keyids,
    )
    from .feed import forget_release

    transaction.on_commit(lambda: forget_release(policy_set.slug))
    return release


def resign(policy_set: PolicySet, now: dt.datetime | None = None) -> PolicyVersion:
    """Re-sign the set's current routes as version N+1 (provenance "re-signed") with a new expiry."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = PolicySet.objects.select_for_update().get(pk=policy_set.pk)
        current = locked.versions.order_by("-number").first()
        if current is None:
            raise ValidationError({"policy_set": [f"{locked.slug} has no published version to re-sign."]})
        version = PolicyVersion.objects.create(
            policy_set=locked,
            number=current.number + 1,
            document=current.document,
            spec=current.spec,
            provenance="re-signed",
            source_version=current.source_version or current,
            author=current.author,
            approvers=current.approvers,
            published_by=None,
            published_at=now,
        )
        release = sign_release(version, now)
        audit.record(
            "policy.re-sign",
            obj=version,
            after={
                "policy_set": locked.slug,
                "version": version.number,
                "source_version": current.number,
                "expires": release.expires,
                "sha256": release.sha256,
            },
        )
        announce_published(version)
    return version


def resign_due(now: dt.datetime | None = None) -> list[PolicyVersion]:
    """Re-sign every set whose current release has less than half of its lifetime left."""
    now = now or timezone.now()
    done = []
    for policy_set in PolicySet.objects.all():
        current = policy_set.current_version()
        release = getattr(current, "release", None) if current else None
        if release is None:
            continue
        lifetime = release.expires - release.issued_at
        if release.expires - now < lifetime / 2:
            done.append(resign(policy_set, now))
    return done


def expiring_releases(within: dt.timedelta = dt.timedelta(hours=48), now: dt.datetime | None = None) -> list:
    """Current releases of policy sets that expire within ``within`` (the dashboard warns about them)."""
    now = now or timezone.now()
    expiring = []
    for policy_set in PolicySet.objects.all():
        current = policy_set.current_version()
        release = getattr(current, "release", None) if current else None
        if release is not None and release.expires - now < within:
            expiring.append(release)
    return expiring
