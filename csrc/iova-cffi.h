/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Included only by the module cffi generates (after Python.h and cffi's own definitions, before
 * its call wrappers): the wrapper of every function whose name ends in "_try" keeps the GIL
 * and leaves errno alone.
 *
 * Why: a look-up from Python is one cffi call around a few dozen nanoseconds of C, and a wrapper
 * that releases the GIL, takes it back and saves and restores ffi.errno around the call spends
 * 30 to 60 ns more on it.  cffi has no per-function switch for that, but its wrappers spell
 * the release with Py_BEGIN_ALLOW_THREADS and Py_END_ALLOW_THREADS and the errno handling with
 * _cffi_restore_errno() and _cffi_save_errno(), inside a function named after the C function
 * (_cffi_f_NAME).  The macros below test that name's suffix, which the compiler folds, so the
 * other wrappers are exactly cffi's.
 *
 * Keeping the GIL is safe only for a call that never waits for anything held by a thread that
 * may be waiting for the GIL: the _try functions of iova-binding.h take the tree's lock with a
 * try-lock and answer IB_BUSY instead of waiting.  Should a cffi release spell these
 * differently, the overrides are unused and the _try wrappers release the GIL like the others
 * (tests/test_threads.py checks that they keep it).
 */
#ifndef IOVA_CFFI_H
#define IOVA_CFFI_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

/* Whether @name (of @size bytes, its NUL included) ends in "_try". */
static inline int ib_cffi_keeps_gil(const char *name, size_t size)
{
    return size > 4 && name[size - 5] == '_' && name[size - 4] == 't' &&
           name[size - 3] == 'r' && name[size - 2] == 'y';
}

#define IB_CFFI_KEEPS_GIL() ib_cffi_keeps_gil(__func__, sizeof(__func__))

#if defined(Py_BEGIN_ALLOW_THREADS) && defined(Py_END_ALLOW_THREADS)
#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS \
    {                          \
        PyThreadState *_save = IB_CFFI_KEEPS_GIL() ? NULL : PyEval_SaveThread();
#define Py_END_ALLOW_THREADS          \
        if (_save) {                  \
            PyEval_RestoreThread(_save); \
        }                             \
    }
#endif

#if defined(_cffi_restore_errno) && defined(_cffi_save_errno)
/* cffi's own, taken while its definitions are still in force. */
static inline void ib_cffi_restore_errno(void)
{
    _cffi_restore_errno();
}

static inline void ib_cffi_save_errno(void)
{
    _cffi_save_errno();
}

#undef _cffi_restore_errno
#undef _cffi_save_errno
#define _cffi_restore_errno() (IB_CFFI_KEEPS_GIL() ? (void)0 : ib_cffi_restore_errno())
#define _cffi_save_errno() (IB_CFFI_KEEPS_GIL() ? (void)0 : ib_cffi_save_errno())
#endif

/*
 * cffi converts every 64-bit unsigned argument through one function of its backend, which
 * for a Python int takes its sign and then PyLong_AsUnsignedLongLong(): that converts any
 * value above 2**30 through a byte array, 84 instructions an argument on CPython 3.11
 * (callgrind; an IOVA or an HVA is above it).  An exact int is converted here instead with
 * PyLong_AsUnsignedLong(), where a long has 64 bits, which shifts the int's digits in: the
 * same value, or an OverflowError for a negative int or one above 2**64-1 as before, worded
 * by CPython rather than by cffi.  Anything else goes to cffi's own conversion, as before.
 * No wording shows: the binding catches that OverflowError where it passes an unchecked
 * value, and checks the value first everywhere else.
 */
#if defined(_cffi_to_c_u64) && ULONG_MAX == UINT64_MAX
static inline unsigned long long ib_cffi_to_c_u64_backend(PyObject *obj)
{
    return _cffi_to_c_u64(obj);
}

static inline unsigned long long ib_cffi_to_c_u64(PyObject *obj)
{
    if (PyLong_CheckExact(obj)) {
        return PyLong_AsUnsignedLong(obj);
    }
    return ib_cffi_to_c_u64_backend(obj);
}

#undef _cffi_to_c_u64
#define _cffi_to_c_u64 ib_cffi_to_c_u64
#endif

#endif /* IOVA_CFFI_H */
