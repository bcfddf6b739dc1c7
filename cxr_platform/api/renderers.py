"""The API's JSON, written by orjson: the same JSON as DRF's JSONRenderer (compact, UTF-8, DRF's forms
of datetimes, decimals and lazy strings; a float in exponent form is written 2.5e-7 where Python
writes 2.5e-07, the same number), in a tenth of the time. The cohort list is polled, and
writing its 31 KB page with the standard library's encoder was about a tenth of the request
(bench/api.py). A request for indented JSON (``Accept: application/json; indent=4``) is DRF's."""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer

# Datetimes and dataclasses go to DRF's encoder (orjson's forms differ: DRF keeps milliseconds);
# dictionaries with integer keys are written as the standard library writes them (keys as text).
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


class FastJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if self.get_indent(accepted_media_type or "", renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            out = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except (TypeError, orjson.JSONEncodeError):
            # What orjson cannot write (an integer beyond 64 bits, a type neither knows): DRF's own
            # renderer, with its own errors. (A NaN, which DRF refuses, orjson writes as null.)
            return super().render(data, accepted_media_type, renderer_context)
        # As DRF does: the line and paragraph separators escaped, so the JSON is also valid JavaScript.
        return out.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
