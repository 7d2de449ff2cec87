# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m iova_native``: the ``iova-native`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
