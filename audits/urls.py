from django.urls import path

from . import views

app_name = "audits"

urlpatterns = [
    path("", views.audit_trail, name="trail"),
    path("decisions/", views.decisions, name="decisions"),
    path("decisions/<int:pk>/", views.decision, name="decision"),
]
