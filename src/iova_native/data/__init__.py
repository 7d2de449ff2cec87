# SPDX-License-Identifier: GPL-2.0-or-later
"""The embedded default trace (default-trace.log.gz), read through importlib.resources."""
