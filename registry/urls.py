from django.urls import path

from . import views
from .evaluation import views as evaluation_views

app_name = "registry"

urlpatterns = [
    path("", views.version_list, name="version-list"),
    path("propose/", views.propose_version, name="propose"),
    path("versions/<int:pk>/", views.version_detail, name="version-detail"),
    path("versions/<int:pk>/edit/", views.edit_proposal, name="edit-proposal"),
    path("versions/<int:pk>/withdraw/", views.withdraw_proposal, name="withdraw-proposal"),
    path("versions/<int:pk>/<str:action>/", views.version_transition, name="version-transition"),
    path("credentials/", views.credential_list, name="credentials"),
    path("credentials/<int:pk>/", views.credential_detail, name="credential"),
    path("credentials/<int:pk>/<str:action>/", views.credential_decide, name="credential-decide"),
    path("suites/", evaluation_views.suite_list, name="suites"),
    path("import-suite/", evaluation_views.suite_import, name="suite-import"),
    path("suites/<str:slug>/", evaluation_views.suite_detail, name="suite"),
    path("suites/<str:slug>/run/", evaluation_views.suite_start_run, name="suite-run"),
    path("runs/", evaluation_views.run_list, name="runs"),
    path("runs/<int:pk>/", evaluation_views.run_detail, name="run"),
    path("runs/<int:pk>/progress/", evaluation_views.run_progress, name="run-progress"),
    path("runs/<int:pk>/compare/", evaluation_views.run_compare, name="run-compare"),
    path("runs/<int:pk>/cancel/", evaluation_views.run_cancel, name="run-cancel"),
]
