from django.urls import path

from . import views

app_name = "registry"

urlpatterns = [
    path("", views.version_list, name="version-list"),
    path("propose/", views.propose_version, name="propose"),
    path("versions/<int:pk>/", views.version_detail, name="version-detail"),
    path("versions/<int:pk>/<str:action>/", views.version_transition, name="version-transition"),
    path("credentials/", views.credential_list, name="credentials"),
    path("credentials/<int:pk>/", views.credential_detail, name="credential"),
    path("credentials/<int:pk>/<str:action>/", views.credential_decide, name="credential-decide"),
    path("suites/", views.suite_list, name="suites"),
    path("import-suite/", views.suite_import, name="suite-import"),
    path("suites/<str:slug>/", views.suite_detail, name="suite"),
    path("suites/<str:slug>/run/", views.suite_start_run, name="suite-run"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/progress/", views.run_progress, name="run-progress"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("recommendations/", views.recommendations, name="recommendations"),
    path("recommendations/apply/", views.recommendation_apply, name="recommendation-apply"),
]
