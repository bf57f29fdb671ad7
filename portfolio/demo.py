"""Demo routing data for ``manage.py seed_demo``: cost tiers, tasks, policy sets and first policies.

The first production and staging policies go through the real workflow: bob writes the change
request, officers approve it (two for production), alice publishes it. Running it again changes
nothing.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser

from compliance.models import DataClassification

from .models import CostTier, PolicySet, Task
from .publishing import publish, start_change
from .validation import validate_document

TIERS = [
    # slug, name, rank, ceiling (micro-USD per million input tokens), description
    ("small", "Small", 1, 500_000, "High-volume classification, extraction and short answers."),
    ("medium", "Medium", 2, 5_000_000, "Reasoning, drafting and multi-step answers."),
    ("large", "Large", 3, 20_000_000, "Complex generation and long-document analysis."),
]

TASKS = [
    # slug, name, classification, tier, typical input tokens, typical output tokens, description
    ("ticket-triage", "Ticket triage", "internal", "small", 800, 50, "Label and route incoming support tickets."),
    ("support-reply", "Support reply", "pii", "medium", 1500, 400, "Draft replies to customers' messages."),
    (
        "contract-review",
        "Contract review",
        "confidential",
        "medium",
        20000,
        1500,
        "Find risky clauses in supplier contracts.",
    ),
    ("claims-summary", "Claims summary", "phi", "medium", 3000, 500, "Summarise health insurance claims."),
    ("fraud-screening", "Fraud screening", "pci", "small", 600, 20, "Score card transactions for fraud."),
    ("eu-customer-chat", "EU customer chat", "pii-eu", "medium", 1200, 300, "Chat with EU customers."),
    ("code-review", "Code review", "confidential", "medium", 6000, 800, "Review internal pull requests."),
    ("marketing-copy", "Marketing copy", "public", "medium", 500, 600, "Draft public marketing text."),
]

POLICY_SETS = [
    # slug, name, required approvals, provider diversity, description
    ("production", "Production", 2, True, "What the production routers enforce."),
    ("staging", "Staging", 1, False, "Where routing changes are tried first."),
    ("sandbox", "Sandbox", 1, False, "Demo models behind Steward's demo endpoint, for trying evaluations."),
]

PRODUCTION_POLICY = """\
# Production routing. Every route keeps a fallback at another provider.
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: openai/gpt-4o-mini@2024-07-18
    fallbacks:
      - mistral/mistral-small@2501
      - google/gemini-2.0-flash@001
    escalation:
      to: openai/gpt-4o@2024-08-06
      when: [low_confidence, context_overflow]
      confidence_threshold_bp: 7000
      max_rate_bp: 500
  - task: support-reply
    classification: pii
    model: anthropic/claude-3-5-sonnet@20241022
    fallbacks:
      - openai/gpt-4o@2024-08-06
    escalation:
      to: anthropic/claude-opus-4@20250514
      when: [error, low_confidence]
      confidence_threshold_bp: 6000
      max_rate_bp: 300
    constraints:
      max_latency_ms: 8000
  - task: contract-review
    classification: confidential
    model: openai/gpt-4o@2024-08-06
    fallbacks:
      - mistral/mistral-large@2411
      - anthropic/claude-3-7-sonnet@20250219
    escalation:
      to: anthropic/claude-opus-4@20250514
      when: [context_overflow, low_confidence]
      confidence_threshold_bp: 8000
      max_rate_bp: 1000
    constraints:
      max_latency_ms: 30000
  - task: claims-summary
    classification: phi
    model: aws-bedrock/claude-3-5-sonnet@20240620-v1
    fallbacks:
      - openai/gpt-4o@2024-08-06
  - task: eu-customer-chat
    classification: pii-eu
    model: mistral/mistral-large@2411
    fallbacks:
      - openai/gpt-4o@2024-11-20
      - aws-bedrock/claude-3-5-sonnet@20240620-v1
  - task: code-review
    classification: confidential
    model: openai/o3-mini@2025-01-31
    fallbacks:
      - anthropic/claude-3-5-haiku@20241022
  - task: marketing-copy
    classification: public
    model: google/gemini-1.5-pro@002
    fallbacks:
      - openai/gpt-4o@2024-08-06
"""

STAGING_POLICY = """\
# Staging: production's routes plus fraud screening, which waits for a second PCI provider.
default: deny
routes:
  - task: ticket-triage
    classification: internal
    model: mistral/mistral-small@2501
    fallbacks:
      - openai/gpt-4o-mini@2024-07-18
    escalation:
      to: mistral/mistral-large@2411
      when: [low_confidence]
      confidence_threshold_bp: 7000
      max_rate_bp: 800
  - task: support-reply
    classification: pii
    model: anthropic/claude-3-7-sonnet@20250219
    fallbacks:
      - openai/gpt-4o@2024-08-06
  - task: fraud-screening
    classification: pci
    model: aws-bedrock/nova-lite@v1
    escalation:
      to: aws-bedrock/nova-pro@v1
      when: [low_confidence, error]
      confidence_threshold_bp: 9000
      max_rate_bp: 200
  - task: eu-customer-chat
    classification: pii-eu
    model: mistral/mistral-large@2411
"""

SANDBOX_POLICY = """\
# The sandbox routes to Steward's demo models, which the demo evaluations measure.
default: deny
routes:
  - task: ticket-triage
    classification: public
    model: demo/oracle@1
    fallbacks:
      - demo/careful@1
"""

FIRST_POLICIES = {"production": PRODUCTION_POLICY, "staging": STAGING_POLICY, "sandbox": SANDBOX_POLICY}


def seed_portfolio_policies(users: dict[str, AbstractUser]) -> dict:
    """Create the missing tiers, tasks, policy sets and first policy versions. Call inside a transaction."""
    created: dict = {"tiers": 0, "tasks": 0, "policy_sets": 0, "versions": 0, "notes": []}
    notes = created["notes"]
    for slug, name, rank, ceiling, description in TIERS:
        _, new = CostTier.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "rank": rank, "price_ceiling_micro_usd": ceiling, "description": description},
        )
        created["tiers"] += new
    tiers = {t.slug: t for t in CostTier.objects.all()}
    classifications = {c.slug: c for c in DataClassification.objects.all()}
    for slug, name, classification, tier, tokens_in, tokens_out, description in TASKS:
        _, new = Task.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "default_classification": classifications[classification],
                "tier": tiers[tier],
                "typical_input_tokens": tokens_in,
                "typical_output_tokens": tokens_out,
                "description": description,
            },
        )
        created["tasks"] += new
    for slug, name, approvals, diversity, description in POLICY_SETS:
        policy_set, new = PolicySet.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "required_approvals": approvals,
                "require_provider_diversity": diversity,
                "description": description,
            },
        )
        created["policy_sets"] += new
        if policy_set.versions.exists():
            continue
        check = validate_document(FIRST_POLICIES[slug], policy_set)
        if not check.ok:
            # The registry differs from the demo's (an existing installation): leave the set empty.
            problems = "; ".join(str(error) for error in check.errors[:3])
            notes.append(f"{slug}: demo policy not published, the registry differs ({problems} …)")
            continue
        change = start_change(
            policy_set,
            users["bob"],
            f"First {slug} routing policy",
            "Routes for the tasks we run today.",
            FIRST_POLICIES[slug],
        )
        change.submit(users["bob"])
        officers = [users["alice"], users["carol"]][: policy_set.required_approvals]
        for officer in officers:
            change.review(officer, "approve", "Checked every route against the matrix and the tiers.")
        publish(change, users["alice"])
        created["versions"] += 1
    return created
