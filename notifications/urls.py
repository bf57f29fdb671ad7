from django.urls import path

from . import views

app_name = "notifications"

urlpatterns = [
    path("preferences/", views.preferences, name="preferences"),
    path("webhooks/", views.add_webhook, name="add-webhook"),
    path("webhooks/<int:pk>/remove/", views.remove_webhook, name="remove-webhook"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
