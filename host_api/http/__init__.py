"""The ``http`` capability: outbound HTTP for plugins, to granted hosts only.

Units: ``config`` (``capabilities.http`` bounds), ``hosts`` (the manifest's
host patterns), ``addresses`` (the SSRF rule and the resolver), ``requests``
(validation), ``client`` (one exchange with a vetted address), ``capability``
(``http_fetch``: redirects, retries, and the per-host breakers of the kernel's
``Resilience``).
"""

from arcana_host.http.capability import HttpCapability
from arcana_host.http.config import HttpConfig

__all__ = ["HttpCapability", "HttpConfig"]
