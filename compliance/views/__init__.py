"""Compliance pages: the matrix (with its cell panel and CSV export), certifications and classifications.

Every verdict shown comes from ``compliance.matrix.Matrix``; every decision goes through the
``MatrixCell`` methods. Views parse input, authorise, call one thing and render.
"""

from .cells import CELL_ACTION_VIEWS, cell_detail
from .certifications import add_certification, add_holding, certifications_page, evidence_file, renew_holding
from .classifications import add_classification, classifications_page, edit_classification
from .matrix import matrix_csv, matrix_page

__all__ = [
    "CELL_ACTION_VIEWS",
    "add_certification",
    "add_classification",
    "add_holding",
    "cell_detail",
    "certifications_page",
    "classifications_page",
    "edit_classification",
    "evidence_file",
    "matrix_csv",
    "matrix_page",
    "renew_holding",
]
