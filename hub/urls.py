"""Steward's URL map: every app's pages and API, the router feed first."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from audits import api as audits_api
from compliance import api as compliance_api
from portfolio import api as portfolio_api
from portfolio import feed
from portfolio.views import recommendations
from registry import api as registry_api
from steward import views as steward_views
from steward.api import ApiDocsView

from . import views

RECOMMENDATIONS = [
    path("", recommendations.recommendations, name="list"),
    path("apply/", recommendations.recommendation_apply, name="apply"),
]

# Trailing slashes are optional: /api/v1/model-versions/7/approve and .../approve/ both work.
router = DefaultRouter()
router.trailing_slash = "/?"
router.register("providers", registry_api.ProviderViewSet, basename="provider")
router.register("models", registry_api.ModelViewSet, basename="model")
router.register("model-versions", registry_api.ModelVersionViewSet, basename="modelversion")
router.register("endpoint-credentials", registry_api.EndpointCredentialViewSet, basename="endpointcredential")
router.register("evaluation-suites", registry_api.EvaluationSuiteViewSet, basename="evaluationsuite")
router.register("evaluation-runs", registry_api.EvaluationRunViewSet, basename="evaluationrun")
router.register("certifications", compliance_api.CertificationViewSet, basename="certification")
router.register("classifications", compliance_api.ClassificationViewSet, basename="classification")
router.register("certification-holdings", compliance_api.HoldingViewSet, basename="certificationholding")
router.register("matrix-cells", compliance_api.MatrixCellViewSet, basename="matrixcell")
router.register("cost-tiers", portfolio_api.CostTierViewSet, basename="costtier")
router.register("tasks", portfolio_api.TaskViewSet, basename="task")
router.register("policy-sets", portfolio_api.PolicySetViewSet, basename="policyset")
router.register("change-requests", portfolio_api.ChangeRequestViewSet, basename="changerequest")

urlpatterns = [
    # The routers' poll path first: it is matched thousands of times a second.
    path("api/v1/policy-sets/<slug:slug>/bundle", feed.bundle, name="feed-bundle"),
    path("api/v1/policy-sets/<slug:slug>/status", feed.status, name="feed-status"),
    path("", views.dashboard, name="dashboard"),
    path("login/", steward_views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("profile/", steward_views.profile, name="profile"),
    path("profile/tokens/<int:pk>/revoke/", steward_views.revoke_token, name="revoke-token"),
    path("approvals/", views.approvals_inbox, name="approvals"),
    path("search/", views.global_search, name="search"),
    path("approvals/count/", views.inbox_badge, name="inbox-badge"),
    path("security/lockouts/", steward_views.lockouts, name="lockouts"),
    path("security/lockouts/unlock/", steward_views.unlock, name="unlock"),
    path("health/", steward_views.health, name="health"),
    path("favicon.ico", steward_views.favicon, name="favicon"),
    # Recommendations are portfolio's (they open change requests); they stay beside the suites they read.
    path("registry/recommendations/", include((RECOMMENDATIONS, "recommendations"))),
    path("registry/", include("registry.urls")),
    path("compliance/", include("compliance.urls")),
    path("policies/", include("portfolio.urls")),
    path("audit/", include("audits.urls")),
    path("notifications/", include("notifications.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/compliance/check", compliance_api.compliance_check, name="compliance-check"),
    re_path(
        r"^api/v1/policy-sets/(?P<slug>[a-z0-9][a-z0-9.-]*)/versions/(?P<number>[0-9]+)\.(?P<fmt>yaml|json)$",
        portfolio_api.policy_version_export,
        name="policy-version-export",
    ),
    re_path(
        r"^api/v1/policy-sets/(?P<slug>[a-z0-9][a-z0-9.-]*)/current\.(?P<fmt>yaml|json)$",
        portfolio_api.policy_version_export,
        name="policy-current-export",
    ),
    path("api/v1/decisions", audits_api.decisions, name="decisions"),
    path("api/v1/decisions/<int:pk>/chain", audits_api.decision_chain, name="decision-chain"),
    path("api/v1/audit/checkpoints", audits_api.checkpoints, name="audit-checkpoints"),
    path("api/v1/trust/root.json", feed.trust_root, name="trust-root"),
    path("api/v1/trust/<int:version>.root.json", feed.trust_root_version, name="trust-root-version"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # DRF exempts its views from LoginRequiredMiddleware; the docs are a page, so send people to sign in.
    path("api/docs/", login_required(ApiDocsView.as_view(url_name="schema")), name="api-docs"),
]

handler400 = "steward.views.bad_request"
handler403 = "steward.views.permission_denied"
handler404 = "steward.views.page_not_found"
handler500 = "steward.views.server_error"
