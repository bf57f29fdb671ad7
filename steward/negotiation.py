"""Content negotiation for the API: an ``Accept`` header nothing here can satisfy, or one that cannot
be read at all, gets the view's first renderer (JSON) instead of 406 Not Acceptable.

RFC 9110 (section 12.5.1) lets a server disregard ``Accept`` and send its default representation; a
router or script with an odd header then still gets an answer it can read, the same one a client
sending no header gets, and never an error of its own before authentication and permissions have
had their say. A format the URL names (a ``.yaml`` or ``.json`` suffix, ``?format=``) still has to
exist: that is a 404, as before.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class DefaultWhenNotAcceptable(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            named = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            if named:
                renderers = self.filter_renderers(renderers, named)
            renderer = renderers[0]
            return renderer, renderer.media_type
