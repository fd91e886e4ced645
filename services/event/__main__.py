"""``python -m services.event``: run one organization's event service."""

from services.event.bootstrap import build
from services.event.settings import EventSettings
from services.kit.app import main

if __name__ == "__main__":
    main(EventSettings, build)
