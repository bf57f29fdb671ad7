from django.urls import path

from . import views

app_name = "portfolio"

# The fleet and change-request paths come first: "fleet" and "changes" would otherwise be read as
# policy sets' slugs.
urlpatterns = [
    path("", views.policy_sets, name="policy-sets"),
    path("fleet/", views.fleet, name="fleet"),
    path("fleet/<int:pk>/revoke/", views.revoke_router_token, name="revoke-router"),
    path("changes/", views.change_requests, name="change-requests"),
    path("changes/new/", views.new_change_request, name="new-change-request"),
    path("changes/validate/", views.validate_policy, name="validate-policy"),
    path("changes/<int:pk>/", views.change_request, name="change-request"),
    path("changes/<int:pk>/revise/", views.revise_change_request, name="revise-change-request"),
    path("changes/<int:pk>/submit/", views.submit_change_request, name="submit-change-request"),
    path("changes/<int:pk>/withdraw/", views.withdraw_change_request, name="withdraw-change-request"),
    path("changes/<int:pk>/rebase/", views.rebase_change_request, name="rebase-change-request"),
    path("changes/<int:pk>/review/", views.review_change_request, name="review-change-request"),
    path("changes/<int:pk>/publish/", views.publish_change_request, name="publish-change-request"),
    path("<slug:slug>/", views.policy_set, name="policy-set"),
    path("<slug:slug>/thresholds/", views.policy_set_thresholds, name="policy-set-thresholds"),
    path("<slug:slug>/versions/", views.policy_versions, name="policy-versions"),
    path("<slug:slug>/versions/<int:number>/", views.policy_version, name="policy-version"),
]
