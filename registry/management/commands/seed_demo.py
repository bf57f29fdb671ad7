"""``manage.py seed_demo``: fill the registry with a realistic demo portfolio and the demo users.

The portfolio below uses real public model names and their list prices as of 2025. Every version
is proposed by bob (the engineer) and decided by alice or carol (the officers) through the
lifecycle methods, so timelines and history look exactly as if people had clicked through them.

Running the command again changes nothing: providers are found by slug, models by provider and
slug, versions by ref, and anything that already exists is left alone.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from compliance.demo import seed_compliance
from portfolio.demo import seed_portfolio_policies
from registry.evaluation.demo import run_demo_evaluations, seed_demo_models, seed_evaluations
from registry.models import Model, ModelVersion, Provider, Status
from steward.roles import AUDITORS, ENGINEERS, OFFICERS

PASSWORD_ENV = "STEWARD_DEMO_PASSWORD"

# One lifecycle step after the proposal: (action, officer's username, the officer's comment).
Step = tuple[str, str, str]


class UserSpec(TypedDict):
    username: str
    first_name: str
    last_name: str
    email: str
    role: str


class EndpointSpec(TypedDict):
    endpoint_kind: str
    base_url: str
    api_key_env: str


class VersionSpec(TypedDict):
    version: str
    region: str
    cost_tier: str
    input_price_micro_usd: int
    output_price_micro_usd: int
    provider_model_id: str
    steps: list[Step]
    notes: NotRequired[str]
    # Overrides of the provider's endpoint, for a version served elsewhere.
    endpoint_kind: NotRequired[str]
    base_url: NotRequired[str]
    api_key_env: NotRequired[str]


class ModelSpec(TypedDict):
    name: str
    slug: str
    family: str
    modality: str
    context_window: int
    capabilities: list[str]
    versions: list[VersionSpec]


class ProviderSpec(TypedDict):
    name: str
    slug: str
    website: str
    regions: list[str]
    description: str
    endpoint: EndpointSpec
    models: list[ModelSpec]


DEMO_USERS: list[UserSpec] = [
    {"username": "alice", "first_name": "Alice", "last_name": "Moreau", "email": "alice@example.org", "role": OFFICERS},
    {"username": "carol", "first_name": "Carol", "last_name": "Berg", "email": "carol@example.org", "role": OFFICERS},
    {"username": "bob", "first_name": "Bob", "last_name": "Fischer", "email": "bob@example.org", "role": ENGINEERS},
    {"username": "dave", "first_name": "Dave", "last_name": "Okafor", "email": "dave@example.org", "role": AUDITORS},
]

# Who proposes every demo version. Officers decide; the model refuses a proposer's own decision.
PROPOSER = "bob"

# Prices are integer micro-USD per million tokens ($2.50 → 2_500_000), list prices as of 2025.
# Tiers follow the input list price: small below $0.50, medium up to $5.00, large above.
# Laid out by hand as a table; the formatter would put every value on a line of its own.
# fmt: off
DEMO_PORTFOLIO: list[ProviderSpec] = [
    {
        "name": "OpenAI", "slug": "openai", "website": "https://openai.com",
        "regions": ["us-east-1", "eu-west-1"],
        "description": "GPT and o-series models. US processing by default; European data residency for "
                       "projects created with it (eu.api.openai.com).",
        "endpoint": {
            "endpoint_kind": "openai-compatible", "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
        },
        "models": [
            {
                "name": "GPT-4o", "slug": "gpt-4o", "family": "gpt-4o", "modality": "multimodal",
                "context_window": 128_000, "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "2024-05-13", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 5_000_000, "output_price_micro_usd": 15_000_000,
                        "provider_model_id": "gpt-4o-2024-05-13",
                        "notes": "First GPT-4o snapshot, for the support-assistant pilot.",
                        "steps": [
                            ("approve", "alice", "Approved for the support-assistant pilot; DPA and "
                                                 "zero-retention addendum on file."),
                            ("deprecate", "carol", "Superseded by 2024-08-06 at half the price with structured "
                                                   "outputs; move routes off this snapshot."),
                        ],
                    },
                    {
                        "version": "2024-08-06", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_500_000, "output_price_micro_usd": 10_000_000,
                        "provider_model_id": "gpt-4o-2024-08-06",
                        "notes": "Replaces 2024-05-13: same quality, half the price, structured outputs.",
                        "steps": [
                            ("approve", "alice", "Approved as the default general-purpose model for public and "
                                                 "internal data. Prices checked against openai.com/api/pricing."),
                        ],
                    },
                    {
                        "version": "2024-11-20", "region": "eu-west-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_500_000, "output_price_micro_usd": 10_000_000,
                        "provider_model_id": "gpt-4o-2024-11-20",
                        "base_url": "https://eu.api.openai.com/v1", "api_key_env": "OPENAI_EU_API_KEY",
                        "notes": "Served from the EU data-residency project so EU customer data stays in Europe.",
                        "steps": [
                            ("approve", "carol", "Approved for EU workloads: the project has European data "
                                                 "residency and zero data retention enabled."),
                        ],
                    },
                ],
            },
            {
                "name": "GPT-4o mini", "slug": "gpt-4o-mini", "family": "gpt-4o", "modality": "multimodal",
                "context_window": 128_000, "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "2024-07-18", "region": "us-east-1", "cost_tier": "small",
                        "input_price_micro_usd": 150_000, "output_price_micro_usd": 600_000,
                        "provider_model_id": "gpt-4o-mini-2024-07-18",
                        "notes": "Cheap default for ticket triage and classification.",
                        "steps": [
                            ("approve", "alice", "Approved for high-volume, low-risk tasks such as ticket "
                                                 "triage."),
                        ],
                    },
                ],
            },
            {
                "name": "o1", "slug": "o1", "family": "o-series", "modality": "multimodal",
                "context_window": 200_000, "capabilities": ["chat", "tools", "vision", "json", "reasoning"],
                "versions": [
                    {
                        "version": "2024-12-17", "region": "us-east-1", "cost_tier": "large",
                        "input_price_micro_usd": 15_000_000, "output_price_micro_usd": 60_000_000,
                        "provider_model_id": "o1-2024-12-17",
                        "notes": "Reasoning model for contract-review escalations.",
                        "steps": [
                            ("approve", "carol", "Approved for contract review, where the reasoning pays for "
                                                 "itself."),
                            ("restrict", "alice", "Restricted to contract-review escalations only: reasoning "
                                                  "tokens are billed as output and last month's spend tripled."),
                        ],
                    },
                ],
            },
            {
                "name": "o3-mini", "slug": "o3-mini", "family": "o-series", "modality": "text",
                "context_window": 200_000, "capabilities": ["chat", "tools", "json", "reasoning"],
                "versions": [
                    {
                        "version": "2025-01-31", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 1_100_000, "output_price_micro_usd": 4_400_000,
                        "provider_model_id": "o3-mini-2025-01-31",
                        "steps": [
                            ("approve", "alice", "Approved: reasoning at a fraction of o1's price; text only."),
                        ],
                    },
                ],
            },
            {
                "name": "GPT-4.1", "slug": "gpt-4.1", "family": "gpt-4.1", "modality": "multimodal",
                "context_window": 1_047_576, "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "2025-04-14", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_000_000, "output_price_micro_usd": 8_000_000,
                        "provider_model_id": "gpt-4.1-2025-04-14",
                        "notes": "1M-token context for long contracts, and cheaper than gpt-4o.",
                        "steps": [],
                    },
                ],
            },
            {
                "name": "GPT-4 Turbo", "slug": "gpt-4-turbo", "family": "gpt-4", "modality": "multimodal",
                "context_window": 128_000, "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "2024-04-09", "region": "us-east-1", "cost_tier": "large",
                        "input_price_micro_usd": 10_000_000, "output_price_micro_usd": 30_000_000,
                        "provider_model_id": "gpt-4-turbo-2024-04-09",
                        "steps": [
                            ("approve", "alice", "Approved for document summarisation."),
                            ("deprecate", "carol", "Superseded by gpt-4o at a quarter of the price; migrate the "
                                                   "summarisation routes."),
                            ("retire", "alice", "No route references it any more; retired."),
                        ],
                    },
                ],
            },
            {
                "name": "text-embedding-3-small", "slug": "text-embedding-3-small", "family": "text-embedding-3",
                "modality": "embedding", "context_window": 8_191, "capabilities": ["embeddings"],
                "versions": [
                    {
                        "version": "2024-01-25", "region": "us-east-1", "cost_tier": "small",
                        "input_price_micro_usd": 20_000, "output_price_micro_usd": 0,
                        "provider_model_id": "text-embedding-3-small",
                        "notes": "Embeddings for the knowledge-base search index.",
                        "steps": [
                            ("approve", "carol", "Approved for the search index; embeddings of public and "
                                                 "internal documents only."),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "name": "Azure OpenAI", "slug": "azure-openai",
        "website": "https://azure.microsoft.com/products/ai-services/openai-service",
        "regions": ["swedencentral", "westeurope", "eastus2"],
        "description": "OpenAI models in our own Azure tenant; Data Zone EU deployments keep processing in "
                       "the EU.",
        "endpoint": {
            "endpoint_kind": "openai-compatible", "base_url": "https://contoso-ai-swc.openai.azure.com/openai/v1",
            "api_key_env": "AZURE_OPENAI_API_KEY",
        },
        "models": [
            {
                "name": "GPT-4o", "slug": "gpt-4o", "family": "gpt-4o", "modality": "multimodal",
                "context_window": 128_000, "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        # Data Zone deployments cost 10% more than Global ones.
                        "version": "2024-11-20", "region": "swedencentral", "cost_tier": "medium",
                        "input_price_micro_usd": 2_750_000, "output_price_micro_usd": 11_000_000,
                        "provider_model_id": "gpt-4o-2024-11-20-dzeu",
                        "notes": "Data Zone EU deployment for confidential EU data.",
                        "steps": [
                            ("approve", "carol", "Approved for confidential EU data: Data Zone EU deployment, "
                                                 "abuse-monitoring exemption granted, covered by our Microsoft "
                                                 "DPA."),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "name": "Anthropic", "slug": "anthropic", "website": "https://www.anthropic.com",
        "regions": ["us-east-1"],
        "description": "Claude models through the Anthropic API (US processing).",
        "endpoint": {
            "endpoint_kind": "anthropic", "base_url": "https://api.anthropic.com",
            "api_key_env": "ANTHROPIC_API_KEY",
        },
        "models": [
            {
                "name": "Claude 3.5 Sonnet", "slug": "claude-3-5-sonnet", "family": "claude-3.5",
                "modality": "multimodal", "context_window": 200_000,
                "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "20240620", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 3_000_000, "output_price_micro_usd": 15_000_000,
                        "provider_model_id": "claude-3-5-sonnet-20240620",
                        "steps": [
                            ("approve", "carol", "Approved for coding assistance and drafting."),
                            ("deprecate", "alice", "Superseded by 20241022 at the same price; switch routes "
                                                   "before Anthropic retires this snapshot."),
                        ],
                    },
                    {
                        "version": "20241022", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 3_000_000, "output_price_micro_usd": 15_000_000,
                        "provider_model_id": "claude-3-5-sonnet-20241022",
                        "steps": [
                            ("approve", "alice", "Approved; same terms and prices as 20240620."),
                        ],
                    },
                ],
            },
            {
                "name": "Claude 3.7 Sonnet", "slug": "claude-3-7-sonnet", "family": "claude-3.7",
                "modality": "multimodal", "context_window": 200_000,
                "capabilities": ["chat", "tools", "vision", "json", "reasoning"],
                "versions": [
                    {
                        "version": "20250219", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 3_000_000, "output_price_micro_usd": 15_000_000,
                        "provider_model_id": "claude-3-7-sonnet-20250219",
                        "steps": [
                            ("approve", "carol", "Approved; extended thinking stays off by default to keep "
                                                 "output costs predictable."),
                        ],
                    },
                ],
            },
            {
                "name": "Claude Sonnet 4", "slug": "claude-sonnet-4", "family": "claude-4",
                "modality": "multimodal", "context_window": 200_000,
                "capabilities": ["chat", "tools", "vision", "json", "reasoning"],
                "versions": [
                    {
                        "version": "20250514", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 3_000_000, "output_price_micro_usd": 15_000_000,
                        "provider_model_id": "claude-sonnet-4-20250514",
                        "notes": "Successor to 3.7 Sonnet at the same price; better at code.",
                        "steps": [],
                    },
                ],
            },
            {
                "name": "Claude 3.5 Haiku", "slug": "claude-3-5-haiku", "family": "claude-3.5",
                "modality": "text", "context_window": 200_000, "capabilities": ["chat", "tools", "json"],
                "versions": [
                    {
                        "version": "20241022", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 800_000, "output_price_micro_usd": 4_000_000,
                        "provider_model_id": "claude-3-5-haiku-20241022",
                        "steps": [
                            ("approve", "alice", "Approved for fast drafting and extraction; text only."),
                        ],
                    },
                ],
            },
            {
                "name": "Claude 3 Opus", "slug": "claude-3-opus", "family": "claude-3",
                "modality": "multimodal", "context_window": 200_000,
                "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "20240229", "region": "us-east-1", "cost_tier": "large",
                        "input_price_micro_usd": 15_000_000, "output_price_micro_usd": 75_000_000,
                        "provider_model_id": "claude-3-opus-20240229",
                        "steps": [
                            ("approve", "carol", "Approved for the large tier only: escalations from contract "
                                                 "review."),
                        ],
                    },
                ],
            },
            {
                "name": "Claude Opus 4", "slug": "claude-opus-4", "family": "claude-4",
                "modality": "multimodal", "context_window": 200_000,
                "capabilities": ["chat", "tools", "vision", "json", "reasoning"],
                "versions": [
                    {
                        "version": "20250514", "region": "us-east-1", "cost_tier": "large",
                        "input_price_micro_usd": 15_000_000, "output_price_micro_usd": 75_000_000,
                        "provider_model_id": "claude-opus-4-20250514",
                        "steps": [
                            ("approve", "alice", "Approved for the large tier at Claude 3 Opus's price; routes "
                                                 "escalate to it only under the rate cap."),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "name": "Google", "slug": "google", "website": "https://ai.google.dev",
        "regions": ["global"],
        "description": "Gemini models through the Gemini API; Google does not pin processing to a region.",
        "endpoint": {
            "endpoint_kind": "gemini", "base_url": "https://generativelanguage.googleapis.com/v1beta",
            "api_key_env": "GEMINI_API_KEY",
        },
        "models": [
            {
                "name": "Gemini 2.0 Flash", "slug": "gemini-2.0-flash", "family": "gemini-2.0",
                "modality": "multimodal", "context_window": 1_048_576,
                "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "001", "region": "global", "cost_tier": "small",
                        "input_price_micro_usd": 100_000, "output_price_micro_usd": 400_000,
                        "provider_model_id": "gemini-2.0-flash-001",
                        "steps": [
                            ("approve", "alice", "Approved for public data only: the processing location is "
                                                 "global."),
                        ],
                    },
                ],
            },
            {
                "name": "Gemini 2.0 Flash-Lite", "slug": "gemini-2.0-flash-lite", "family": "gemini-2.0",
                "modality": "multimodal", "context_window": 1_048_576,
                "capabilities": ["chat", "vision", "json"],
                "versions": [
                    {
                        "version": "001", "region": "global", "cost_tier": "small",
                        "input_price_micro_usd": 75_000, "output_price_micro_usd": 300_000,
                        "provider_model_id": "gemini-2.0-flash-lite-001",
                        "steps": [
                            ("approve", "carol", "Approved for public data: the cheapest option for bulk "
                                                 "classification."),
                        ],
                    },
                ],
            },
            {
                "name": "Gemini 1.5 Pro", "slug": "gemini-1.5-pro", "family": "gemini-1.5",
                "modality": "multimodal", "context_window": 2_097_152,
                "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        # The price for prompts up to 128k tokens; longer prompts cost double.
                        "version": "002", "region": "global", "cost_tier": "medium",
                        "input_price_micro_usd": 1_250_000, "output_price_micro_usd": 5_000_000,
                        "provider_model_id": "gemini-1.5-pro-002",
                        "steps": [
                            ("approve", "alice", "Approved for long public documents (2M-token context)."),
                        ],
                    },
                ],
            },
            {
                "name": "Gemini 2.5 Pro", "slug": "gemini-2.5-pro", "family": "gemini-2.5",
                "modality": "multimodal", "context_window": 1_048_576,
                "capabilities": ["chat", "tools", "vision", "json", "reasoning"],
                "versions": [
                    {
                        # The price for prompts up to 200k tokens; longer prompts cost more.
                        "version": "preview-05-06", "region": "global", "cost_tier": "medium",
                        "input_price_micro_usd": 1_250_000, "output_price_micro_usd": 10_000_000,
                        "provider_model_id": "gemini-2.5-pro-preview-05-06",
                        "notes": "Preview; the strongest long-context results in our spot checks.",
                        "steps": [],
                    },
                ],
            },
        ],
    },
    {
        "name": "Mistral AI", "slug": "mistral", "website": "https://mistral.ai",
        "regions": ["eu-west-1"],
        "description": "French provider; La Plateforme is hosted in the EU.",
        "endpoint": {
            "endpoint_kind": "openai-compatible", "base_url": "https://api.mistral.ai/v1",
            "api_key_env": "MISTRAL_API_KEY",
        },
        "models": [
            {
                "name": "Mistral Large", "slug": "mistral-large", "family": "mistral", "modality": "text",
                "context_window": 131_072, "capabilities": ["chat", "tools", "json"],
                "versions": [
                    {
                        "version": "2411", "region": "eu-west-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_000_000, "output_price_micro_usd": 6_000_000,
                        "provider_model_id": "mistral-large-2411",
                        "notes": "EU-hosted flagship for confidential data.",
                        "steps": [
                            ("approve", "carol", "Approved for confidential and PII workloads: EU hosting, no "
                                                 "training on API data, DPA signed."),
                        ],
                    },
                ],
            },
            {
                "name": "Mistral Small", "slug": "mistral-small", "family": "mistral", "modality": "text",
                "context_window": 32_768, "capabilities": ["chat", "tools", "json"],
                "versions": [
                    {
                        "version": "2501", "region": "eu-west-1", "cost_tier": "small",
                        "input_price_micro_usd": 100_000, "output_price_micro_usd": 300_000,
                        "provider_model_id": "mistral-small-2501",
                        "steps": [
                            ("approve", "alice", "Approved as the small EU option for triage of personal "
                                                 "data."),
                        ],
                    },
                ],
            },
            {
                "name": "Codestral", "slug": "codestral", "family": "codestral", "modality": "text",
                "context_window": 262_144, "capabilities": ["chat", "code", "fim"],
                "versions": [
                    {
                        "version": "2501", "region": "eu-west-1", "cost_tier": "small",
                        "input_price_micro_usd": 300_000, "output_price_micro_usd": 900_000,
                        "provider_model_id": "codestral-2501",
                        "notes": "Code completion in the IDE plugin.",
                        "steps": [
                            ("approve", "carol", "Approved for code completion on internal repositories."),
                        ],
                    },
                ],
            },
            {
                "name": "Pixtral Large", "slug": "pixtral-large", "family": "pixtral", "modality": "multimodal",
                "context_window": 131_072, "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "2411", "region": "eu-west-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_000_000, "output_price_micro_usd": 6_000_000,
                        "provider_model_id": "pixtral-large-2411",
                        "notes": "Reading scanned invoices and claim forms.",
                        "steps": [
                            ("approve", "alice", "Approved for document images containing personal data: EU "
                                                 "hosting, same terms as Mistral Large."),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "name": "Cohere", "slug": "cohere", "website": "https://cohere.com",
        "regions": ["us-east-1"],
        "description": "Command models for retrieval-augmented generation, through Cohere's "
                       "OpenAI-compatible API.",
        "endpoint": {
            "endpoint_kind": "openai-compatible", "base_url": "https://api.cohere.com/compatibility/v1",
            "api_key_env": "CO_API_KEY",
        },
        "models": [
            {
                "name": "Command R+", "slug": "command-r-plus", "family": "command-r", "modality": "text",
                "context_window": 128_000, "capabilities": ["chat", "tools", "json", "rag"],
                "versions": [
                    {
                        "version": "08-2024", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_500_000, "output_price_micro_usd": 10_000_000,
                        "provider_model_id": "command-r-plus-08-2024",
                        "steps": [
                            ("approve", "alice", "Approved for grounded answers over the knowledge base."),
                        ],
                    },
                ],
            },
            {
                "name": "Command R", "slug": "command-r", "family": "command-r", "modality": "text",
                "context_window": 128_000, "capabilities": ["chat", "tools", "json", "rag"],
                "versions": [
                    {
                        "version": "08-2024", "region": "us-east-1", "cost_tier": "small",
                        "input_price_micro_usd": 150_000, "output_price_micro_usd": 600_000,
                        "provider_model_id": "command-r-08-2024",
                        "steps": [
                            ("approve", "carol", "Approved as the small retrieval model."),
                        ],
                    },
                ],
            },
            {
                "name": "Command A", "slug": "command-a", "family": "command-a", "modality": "text",
                "context_window": 256_000, "capabilities": ["chat", "tools", "json", "rag"],
                "versions": [
                    {
                        "version": "03-2025", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 2_500_000, "output_price_micro_usd": 10_000_000,
                        "provider_model_id": "command-a-03-2025",
                        "steps": [
                            ("approve", "alice", "Approved; the price of Command R+ with twice the context."),
                        ],
                    },
                ],
            },
        ],
    },
    {
        "name": "AWS Bedrock", "slug": "aws-bedrock", "website": "https://aws.amazon.com/bedrock/",
        "regions": ["us-east-1", "us-west-2", "eu-central-1"],
        "description": "Open-weight and third-party models in our own AWS accounts, billed through AWS.",
        "endpoint": {
            "endpoint_kind": "bedrock", "base_url": "https://bedrock-runtime.us-west-2.amazonaws.com",
            "api_key_env": "AWS_BEARER_TOKEN_BEDROCK",
        },
        "models": [
            {
                "name": "Llama 3.1 405B Instruct", "slug": "llama-3.1-405b-instruct", "family": "llama-3.1",
                "modality": "text", "context_window": 128_000, "capabilities": ["chat", "tools"],
                "versions": [
                    {
                        "version": "v1", "region": "us-west-2", "cost_tier": "medium",
                        "input_price_micro_usd": 2_400_000, "output_price_micro_usd": 2_400_000,
                        "provider_model_id": "meta.llama3-1-405b-instruct-v1:0",
                        "steps": [
                            ("approve", "carol", "Approved: open weights, served inside our AWS account."),
                        ],
                    },
                ],
            },
            {
                "name": "Llama 3.1 70B Instruct", "slug": "llama-3.1-70b-instruct", "family": "llama-3.1",
                "modality": "text", "context_window": 128_000, "capabilities": ["chat", "tools"],
                "versions": [
                    {
                        "version": "v1", "region": "us-west-2", "cost_tier": "medium",
                        "input_price_micro_usd": 720_000, "output_price_micro_usd": 720_000,
                        "provider_model_id": "meta.llama3-1-70b-instruct-v1:0",
                        "steps": [
                            ("approve", "alice", "Approved for summarisation of internal documents."),
                        ],
                    },
                ],
            },
            {
                "name": "Llama 3.1 8B Instruct", "slug": "llama-3.1-8b-instruct", "family": "llama-3.1",
                "modality": "text", "context_window": 128_000, "capabilities": ["chat", "tools"],
                "versions": [
                    {
                        "version": "v1", "region": "us-west-2", "cost_tier": "small",
                        "input_price_micro_usd": 220_000, "output_price_micro_usd": 220_000,
                        "provider_model_id": "meta.llama3-1-8b-instruct-v1:0",
                        "steps": [
                            ("approve", "carol", "Approved for classification and routing hints."),
                        ],
                    },
                ],
            },
            {
                "name": "Amazon Nova Pro", "slug": "nova-pro", "family": "nova", "modality": "multimodal",
                "context_window": 300_000, "capabilities": ["chat", "tools", "vision"],
                "versions": [
                    {
                        "version": "v1", "region": "us-east-1", "cost_tier": "medium",
                        "input_price_micro_usd": 800_000, "output_price_micro_usd": 3_200_000,
                        "provider_model_id": "amazon.nova-pro-v1:0",
                        "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com",
                        "steps": [
                            ("approve", "alice", "Approved; covered by our AWS enterprise agreement."),
                        ],
                    },
                ],
            },
            {
                "name": "Amazon Nova Lite", "slug": "nova-lite", "family": "nova", "modality": "multimodal",
                "context_window": 300_000, "capabilities": ["chat", "tools", "vision"],
                "versions": [
                    {
                        "version": "v1", "region": "us-east-1", "cost_tier": "small",
                        "input_price_micro_usd": 60_000, "output_price_micro_usd": 240_000,
                        "provider_model_id": "amazon.nova-lite-v1:0",
                        "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com",
                        "steps": [
                            ("approve", "carol", "Approved for captioning product photos."),
                        ],
                    },
                ],
            },
            {
                "name": "Claude 3.5 Sonnet", "slug": "claude-3-5-sonnet", "family": "claude-3.5",
                "modality": "multimodal", "context_window": 200_000,
                "capabilities": ["chat", "tools", "vision", "json"],
                "versions": [
                    {
                        "version": "20240620-v1", "region": "eu-central-1", "cost_tier": "medium",
                        "input_price_micro_usd": 3_000_000, "output_price_micro_usd": 15_000_000,
                        "provider_model_id": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                        "base_url": "https://bedrock-runtime.eu-central-1.amazonaws.com",
                        "notes": "Claude in Frankfurt, for EU data that must not leave the EU.",
                        "steps": [
                            ("approve", "alice", "Approved for confidential EU data: served from eu-central-1 "
                                                 "in our own AWS account."),
                        ],
                    },
                ],
            },
            {
                "name": "DeepSeek-R1", "slug": "deepseek-r1", "family": "deepseek-r1", "modality": "text",
                "context_window": 128_000, "capabilities": ["chat", "reasoning"],
                "versions": [
                    {
                        "version": "v1", "region": "us-west-2", "cost_tier": "medium",
                        "input_price_micro_usd": 1_350_000, "output_price_micro_usd": 5_400_000,
                        "provider_model_id": "us.deepseek.r1-v1:0",
                        "notes": "DeepSeek's reasoning model hosted by AWS in the US, since DeepSeek's own API "
                                 "was rejected.",
                        "steps": [],
                    },
                ],
            },
        ],
    },
    {
        "name": "DeepSeek", "slug": "deepseek", "website": "https://www.deepseek.com",
        "regions": ["cn"],
        "description": "DeepSeek's own API; data is processed and stored in the People's Republic of China.",
        "endpoint": {
            "endpoint_kind": "openai-compatible", "base_url": "https://api.deepseek.com/v1",
            "api_key_env": "DEEPSEEK_API_KEY",
        },
        "models": [
            {
                "name": "DeepSeek-V3", "slug": "deepseek-v3", "family": "deepseek-v3", "modality": "text",
                "context_window": 65_536, "capabilities": ["chat", "tools", "json"],
                "versions": [
                    {
                        "version": "0324", "region": "cn", "cost_tier": "small",
                        "input_price_micro_usd": 270_000, "output_price_micro_usd": 1_100_000,
                        "provider_model_id": "deepseek-chat",
                        "notes": "Very cheap and strong at code.",
                        "steps": [
                            ("reject", "carol", "Rejected: prompts are processed and stored in the PRC, which "
                                                "fails our residency rules for anything above public data, "
                                                "and there is no DPA. Propose it through a US or EU host."),
                        ],
                    },
                ],
            },
        ],
    },
]
# fmt: on


@dataclass
class SeedResult:
    """What a run found and created, for the summary."""

    providers: int = 0
    new_providers: int = 0
    models: int = 0
    new_models: int = 0
    versions: int = 0
    new_versions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    logins: list[tuple[str, str, str, str]] = field(default_factory=list)  # username, password, name, role


def demo_password(username: str) -> str:
    """The demo user's password: ``STEWARD_DEMO_PASSWORD`` if set, else ``steward-demo-<username>``."""
    return os.environ.get(PASSWORD_ENV) or f"steward-demo-{username}"


def ensure_demo_users(result: SeedResult) -> dict[str, AbstractUser]:
    """Create the demo users, or bring existing ones back to their role and demo password.

    An existing user keeps the names and email they have; only blank ones are filled in. Nothing is
    saved when nothing differs, so a second run writes nothing.
    """
    User = get_user_model()
    users: dict[str, AbstractUser] = {}
    for spec in DEMO_USERS:
        try:
            group = Group.objects.get(name=spec["role"])
        except Group.DoesNotExist as error:
            raise CommandError(f"The group {spec['role']!r} is missing; run `manage.py migrate` first.") from error
        password = demo_password(spec["username"])
        user = User.objects.filter(username=spec["username"]).first()
        try:
            validate_password(password, user or User(**{k: v for k, v in spec.items() if k != "role"}))
        except ValidationError as error:
            raise CommandError(f"{PASSWORD_ENV}: {' '.join(error.messages)}", returncode=2) from error
        if user is None:
            user = User.objects.create_user(
                spec["username"],
                spec["email"],
                password,
                first_name=spec["first_name"],
                last_name=spec["last_name"],
            )
        else:
            changed = [name for name in ("first_name", "last_name", "email") if not getattr(user, name)]
            for name in changed:
                setattr(user, name, spec[name])
            if not user.check_password(password):
                user.set_password(password)
                changed.append("password")
            if changed:
                user.save(update_fields=changed)
        user.groups.add(group)
        # A fresh instance: permissions are cached per instance and the group may be new.
        users[spec["username"]] = User.objects.get(pk=user.pk)
        result.logins.append((spec["username"], password, user.get_full_name(), spec["role"]))
    return users


@contextmanager
def _refused_as(what: str) -> Iterator[None]:
    """Turn the domain's refusal of a demo item into a command error that names the item.

    Raised inside the transaction, so nothing of the run is kept.
    """
    try:
        yield
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in error.message_dict.items())
        else:
            detail = " ".join(error.messages)
        raise CommandError(f"{what}: {detail} Nothing was written.") from error
    except PermissionDenied as error:
        raise CommandError(f"{what}: {error} Nothing was written.") from error


def _create(instance: Provider | Model, by: AbstractUser) -> None:
    """Validate and save a new provider or model, attributed to ``by`` in its history."""
    with _refused_as(f"{type(instance).__name__.lower()} {instance.slug}"):
        instance.full_clean()
    instance._history_user = by
    instance.save()


def seed_portfolio(users: dict[str, AbstractUser], result: SeedResult) -> None:
    """Create whatever part of ``DEMO_PORTFOLIO`` is missing; versions go through their lifecycle."""
    proposer = users[PROPOSER]
    refs = []
    for provider_spec in DEMO_PORTFOLIO:
        provider = Provider.objects.filter(slug=provider_spec["slug"]).first()
        if provider is None:
            provider = Provider(**{k: v for k, v in provider_spec.items() if k not in ("endpoint", "models")})
            _create(provider, proposer)
            result.new_providers += 1
        result.providers += 1
        for model_spec in provider_spec["models"]:
            model = Model.objects.filter(provider=provider, slug=model_spec["slug"]).first()
            if model is None:
                model = Model(provider=provider, **{k: v for k, v in model_spec.items() if k != "versions"})
                _create(model, proposer)
                result.new_models += 1
            result.models += 1
            for version_spec in model_spec["versions"]:
                fields = {**provider_spec["endpoint"], **version_spec}
                steps = fields.pop("steps")
                ref = ModelVersion.make_ref(provider.slug, model.slug, fields["version"])
                refs.append(ref)
                result.versions += 1
                if ModelVersion.objects.filter(ref=ref).exists():
                    continue
                with _refused_as(ref):
                    version = ModelVersion.propose(proposer, model=model, **fields)
                    for action, officer, comment in steps:
                        version.transition(action, users[officer], comment)
                result.new_versions += 1
    result.statuses.update(ModelVersion.objects.filter(ref__in=refs).values_list("status", flat=True))


class Command(BaseCommand):
    help = (
        "Fill the registry with a realistic demo portfolio (providers, models, versions in every lifecycle "
        f"status) and the demo users alice, carol, bob and dave. Safe to run again. Passwords come from "
        f"{PASSWORD_ENV} if set, else steward-demo-<username>."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--no-evaluations", action="store_true", help="create the demo suites but do not run them now"
        )

    def handle(self, *args, **options) -> None:
        result = SeedResult()
        with transaction.atomic():
            users = ensure_demo_users(result)
            seed_portfolio(users, result)
            demo_models = seed_demo_models(users)
            compliance = seed_compliance(users)
            routing = seed_portfolio_policies(users)
            new_suites = seed_evaluations(users)
        run_evaluations = settings.STEWARD_SEED_EVALUATION_RUNS and not options["no_evaluations"]
        demo_runs = run_demo_evaluations(users) if run_evaluations else 0
        self.stdout.write(self.style.SUCCESS(self.summary(result)))
        self.stdout.write(
            f"Compliance: {compliance.classifications} new classifications, {compliance.holdings} new "
            f"certification holdings, {compliance.cells} new matrix cells."
        )
        self.stdout.write(
            f"Routing: {routing['tiers']} new cost tiers, {routing['tasks']} new tasks, {routing['policy_sets']} new "
            f"policy sets, {routing['versions']} new published policy versions."
        )
        self.stdout.write(
            f"Evaluations: {demo_models} new demo model versions, {new_suites} new suites, {demo_runs} demo runs."
        )
        for note in routing["notes"]:
            self.stderr.write(f"Note: {note}")
        self.stdout.write(self.logins(result))

    @staticmethod
    def summary(result: SeedResult) -> str:
        statuses = ", ".join(f"{result.statuses[status]} {status}" for status in Status if result.statuses[status])
        return (
            f"Demo portfolio: {result.providers} providers ({result.new_providers} new), "
            f"{result.models} models ({result.new_models} new), "
            f"{result.versions} model versions ({result.new_versions} new): {statuses}."
        )

    @staticmethod
    def logins(result: SeedResult) -> str:
        source = f"from {PASSWORD_ENV}" if os.environ.get(PASSWORD_ENV) else "fixed demo passwords"
        rows = [("username", "password", "name", "role"), *result.logins]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines = [f"Demo logins ({source}):"]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines)
