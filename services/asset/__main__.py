"""``python -m services.asset``: run the ledger."""

from services.asset.bootstrap import build
from services.asset.settings import AssetSettings
from services.kit.app import main

if __name__ == "__main__":
    main(AssetSettings, build)
