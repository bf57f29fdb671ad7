from django.urls import path

from . import views

app_name = "compliance"

CELL = "matrix/cell/<int:version_pk>/<str:classification_slug>/"

urlpatterns = [
    path("matrix/", views.matrix_page, name="matrix"),
    path("matrix.csv", views.matrix_csv, name="matrix-csv"),
    path(CELL, views.cell_detail, name="cell"),
    *[path(f"{CELL}{action}/", view, name=f"cell-{action}") for action, view in views.CELL_ACTION_VIEWS.items()],
    path("certifications/", views.certifications_page, name="certifications"),
    path("certifications/new/", views.add_certification, name="add-certification"),
    path("holdings/new/", views.add_holding, name="add-holding"),
    path("holdings/<int:holding_pk>/renew/", views.renew_holding, name="renew-holding"),
    path("evidence/<int:holding_pk>/", views.evidence_file, name="evidence"),
    path("classifications/", views.classifications_page, name="classifications"),
    path("classifications/new/", views.add_classification, name="add-classification"),
    path("classifications/<str:slug>/edit/", views.edit_classification, name="edit-classification"),
]
