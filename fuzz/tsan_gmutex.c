/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tsan_gmutex: lets ThreadSanitizer see GLib's GMutex (used by scripts/sanitize.sh --tsan).
 *
 * GLib's GMutex is a futex of its own, not a pthread mutex, and libglib is not built with
 * -fsanitize=thread, so TSan cannot see that g_mutex_unlock() in one thread happens before
 * g_mutex_lock() in the next: every access to a tree under the binding layer's lock would be
 * reported as a race.  Preloaded after libtsan, this library wraps the three calls and tells
 * TSan about the ordering with its annotation functions; the locking itself is still GLib's.
 *
 *   cc -shared -fPIC -O1 $(pkg-config --cflags glib-2.0) fuzz/tsan_gmutex.c \
 *      -Wl,--no-as-needed $(pkg-config --libs glib-2.0) -ldl -o build/tsan_gmutex.so
 *   LD_PRELOAD="$(gcc -print-file-name=libtsan.so) build/tsan_gmutex.so" python ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

/* Exported by the TSan runtime (libtsan), which must be preloaded first. */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

static void (*real_lock)(GMutex *mutex);
static void (*real_unlock)(GMutex *mutex);
static gboolean (*real_trylock)(GMutex *mutex);

__attribute__((constructor)) static void tsan_gmutex_init(void)
{
    real_lock = (void (*)(GMutex *))dlsym(RTLD_NEXT, "g_mutex_lock");
    real_unlock = (void (*)(GMutex *))dlsym(RTLD_NEXT, "g_mutex_unlock");
    real_trylock = (gboolean(*)(GMutex *))dlsym(RTLD_NEXT, "g_mutex_trylock");
    if (!real_lock || !real_unlock || !real_trylock) {
        fprintf(stderr, "tsan_gmutex: GLib's g_mutex_* not found\n");
        abort();
    }
}

void g_mutex_lock(GMutex *mutex)
{
    real_lock(mutex);
    __tsan_acquire(mutex);
}

gboolean g_mutex_trylock(GMutex *mutex)
{
    gboolean locked = real_trylock(mutex);
    if (locked) {
        __tsan_acquire(mutex);
    }
    return locked;
}

void g_mutex_unlock(GMutex *mutex)
{
    __tsan_release(mutex);
    real_unlock(mutex);
}
