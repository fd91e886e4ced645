"""The HTTP gateway: the Substra REST API over the organization's gRPC services (docs/adr/0005-gateway.md).

- :mod:`~gateway.bootstrap`: the composition root (``__main__`` → ``build``); :mod:`~gateway.settings`.
- :mod:`~gateway.app`: the one dispatcher; :mod:`~gateway.routes`: the route table.
- :mod:`~gateway.httprule`, :mod:`~gateway.transcoder`, :mod:`~gateway.router`: routes from the
  ``google.api.http`` annotations, bound path → body → query, called generically.
- :mod:`~gateway.render`: messages to the SDK's JSON; :mod:`~gateway.errors`: the one error table.
- :mod:`~gateway.uploads`, :mod:`~gateway.multipart`, :mod:`~gateway.downloads`, :mod:`~gateway.views`:
  the adapters for what transcoding cannot express.
- :mod:`~gateway.users`, :mod:`~gateway.auth`: users, tokens, login; :mod:`~gateway.store`: their
  persistence (a protocol, its PostgreSQL implementation and tables).
- :mod:`~gateway.policies`: identity rules on transcoded calls; :mod:`~gateway.openapi`: the document.
"""

import os

# Set before grpc is imported, as for the services (see services/__init__.py).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
