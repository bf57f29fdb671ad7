"""What the registry announces; the apps above react (the registry never imports them).

``evaluation_run_finished`` is sent with ``run`` after a run is scored and committed.
"""

from django.dispatch import Signal

evaluation_run_finished = Signal()
