"""The forms in which the OpenAI emulator sends its rate-limit headers, as the API may send them.

The reference (OpenAI's rate-limit guide, see ``reference/provider-apis.md`` §1.4 and §2) documents
``x-ratelimit-{limit,remaining,reset}-requests``, where the reset is a Go duration (``12ms``, ``1s``,
``6m0s``) until the window is *fully* replenished; on a 429 a ``retry-after`` in seconds, which the
SDK also reads as an HTTP date, and the non-standard ``retry-after-ms`` beside it. It also notes that
the headers are sometimes missing. :func:`shape_headers` turns the exact headers a handler set into
one of those forms, or into broken ones, so clients are tested against all of them.
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import MutableMapping

# x-ratelimit-*: all three; no remaining count; none at all; unreadable values
RATE_FORMS = ("all", "no_remaining", "none", "malformed")
# on a 429: seconds and milliseconds; seconds only; an HTTP date; nothing; unreadable values
RETRY_FORMS = ("seconds_and_ms", "seconds", "date", "none", "malformed")
RATE_HEADERS = tuple(f"x-ratelimit-{what}-{unit}" for unit in ("requests", "tokens")
                     for what in ("limit", "remaining", "reset"))
MALFORMED = {**{f"x-ratelimit-limit-{unit}": "unlimited" for unit in ("requests", "tokens")},
             **{f"x-ratelimit-remaining-{unit}": "" for unit in ("requests", "tokens")},
             **{f"x-ratelimit-reset-{unit}": "soon" for unit in ("requests", "tokens")},
             "retry-after": "in a moment", "retry-after-ms": "NaN"}


def check_forms(rate_form: str, retry_form: str) -> None:
    if rate_form not in RATE_FORMS:
        raise ValueError(f"unknown rate-limit header form {rate_form!r}; choose from {', '.join(RATE_FORMS)}")
    if retry_form not in RETRY_FORMS:
        raise ValueError(f"unknown retry-after form {retry_form!r}; choose from {', '.join(RETRY_FORMS)}")


def shape_headers(headers: MutableMapping[str, str], rate_form: str, retry_form: str) -> None:
    """Rewrite exact rate-limit and retry headers in place into the chosen forms."""
    present = [name for name in RATE_HEADERS if name in headers]
    if rate_form == "none":
        for name in present:
            del headers[name]
    elif rate_form == "no_remaining":
        for name in present:
            if "-remaining-" in name:
                del headers[name]
    elif rate_form == "malformed":
        headers.update({name: MALFORMED[name] for name in present})
    if "retry-after" not in headers:
        return
    seconds = math.ceil(float(headers["retry-after-ms"]) / 1000) if "retry-after-ms" in headers \
        else int(headers["retry-after"])
    if retry_form in ("seconds", "date", "none") and "retry-after-ms" in headers:
        del headers["retry-after-ms"]
    if retry_form == "date":
        headers["retry-after"] = email.utils.formatdate(time.time() + seconds + 1, usegmt=True)
    elif retry_form == "none":
        del headers["retry-after"]
    elif retry_form == "malformed":
        headers.update({"retry-after": MALFORMED["retry-after"], "retry-after-ms": MALFORMED["retry-after-ms"]})
