"""``python -m tools.clients build|gen|path`` — install the client tools, generate and compile the clients, or show
where the tools are."""

import sys

from tools.clients.build import main

sys.exit(main(sys.argv[1:]))
