from django.urls import path

from . import views

app_name = "registry"

urlpatterns = [
    path("", views.version_list, name="version-list"),
    path("propose/", views.propose_version, name="propose"),
    path("versions/<int:pk>/", views.version_detail, name="version-detail"),
    path("versions/<int:pk>/<str:action>/", views.version_transition, name="version-transition"),
]
