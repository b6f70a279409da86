"""The ``http`` capability: outbound HTTP for plugins, to granted hosts only.

Units: ``config`` (``capabilities.http`` bounds), ``hosts`` (the manifest's
host patterns), ``addresses`` (the SSRF rule and the resolver), ``requests``
(validation), ``client`` (one exchange with a vetted address), ``breakers``
(the kernel's per-host breaker board), ``capability`` (``http_fetch``:
redirects, retries, breaker).
"""

from arcana_host.http.breakers import http_breaker_board
from arcana_host.http.capability import HttpCapability
from arcana_host.http.config import HttpConfig

__all__ = ["HttpCapability", "HttpConfig", "http_breaker_board"]
