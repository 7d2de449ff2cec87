/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * VhostIOVATree's header for code inside csrc/: the public one,
 * include/hw/virtio/vhost-iova-tree.h.
 */
#include "include/hw/virtio/vhost-iova-tree.h"
