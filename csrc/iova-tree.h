/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The IOVA tree's header for code inside csrc/: the public one, include/qemu/iova-tree.h.
 */
#include "include/qemu/iova-tree.h"
