"""``python -m services.compute``: run one organization's compute service."""

from services.compute.bootstrap import build
from services.compute.settings import ComputeSettings
from services.kit.app import main

if __name__ == "__main__":
    main(ComputeSettings, build)
