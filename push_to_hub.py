#!/usr/bin/env python
"""Validate an LQ-KBERT model folder and upload it to the Hugging Face Hub.

    python push_to_hub.py MODEL_DIR --repo-id ORG/NAME [--private] [--revision BRANCH] [--create-pr]
                          [--commit-message TEXT] [--dry-run] [--sync-code]

Every check runs before anything is sent, and nothing is uploaded unless all of them pass (see lqkbert/publishing.py
for the list). Exit codes: 0 success, 1 validation failed, 2 usage error or missing token, 3 upload failed.

This script is repository tooling, not a Hub file: it is never copied into model folders.
"""

import logging
import sys
from pathlib import Path


# Run from a clone without installing the package: the lqkbert tooling sits next to this script.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lqkbert.publishing import main  # noqa: E402


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
