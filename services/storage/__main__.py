"""``python -m services.storage``: run one organization's storage service."""

from services.kit.app import main
from services.storage.bootstrap import build
from services.storage.settings import StorageSettings

if __name__ == "__main__":
    main(StorageSettings, build)
