from django.urls import path

from . import views

app_name = "audits"

urlpatterns = [
    path("", views.audit_trail, name="trail"),
    path("export.csv", views.audit_trail_csv, name="trail-csv"),
    path("changes/", views.changes, name="changes"),
    path("decisions/", views.decisions, name="decisions"),
    path("decisions/charts/", views.decision_charts, name="decision-charts"),
    path("decisions/export.csv", views.decisions_csv, name="decisions-csv"),
    path("decisions/export.jsonl", views.decisions_jsonl, name="decisions-jsonl"),
    path("decisions/<int:pk>/", views.decision, name="decision"),
    path("violations/", views.violations, name="violations"),
]
