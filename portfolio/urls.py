from django.urls import path

from . import views

app_name = "portfolio"

urlpatterns = [
    path("", views.policy_sets, name="policy-sets"),
    path("<slug:slug>/", views.policy_set, name="policy-set"),
    path("<slug:slug>/versions/<int:number>/", views.policy_version, name="policy-version"),
]
