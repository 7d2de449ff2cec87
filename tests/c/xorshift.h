/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The random numbers of the C test programs: xorshift64, fast, and the same sequence for a
 * seed on every machine, so that a program built on the project's tree and on QEMU's makes
 * the same calls.
 */
#ifndef XORSHIFT_H
#define XORSHIFT_H

#include <stdint.h>

static inline uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

#endif /* XORSHIFT_H */
