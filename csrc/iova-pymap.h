/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Included only by the module cffi generates (after Python.h and iova-binding.h): an insert
 * that crosses into C as one word, the address of the DMAMap object to store.
 *
 * Why: a cffi call converts each argument from a Python int on its own, and Python must
 * unpack the map and test the type of each field before it may pass them (cffi would take
 * anything with __int__).  A call of six words with those tests costs about 130 ns more than
 * a call of two that reads the five fields here, from the tuple itself.
 *
 * The address is CPython's id() of a map the caller holds for the whole call, so the object
 * outlives the read.  A DMAMap is a tuple of ints, both immutable, so what is read is what
 * the caller passed, whatever other threads do.  The fields are read under the GIL
 * (PyGILState_Ensure(): the _try wrapper keeps it, see iova-cffi.h, and should it not, this
 * takes it back), and the tree's lock is taken only after it is let go.
 */
#ifndef IOVA_PYMAP_H
#define IOVA_PYMAP_H

#include <limits.h>
#include <stdint.h>

/*
 * The value of the int @field, or UINT64_MAX with OverflowError set when it is negative or
 * above 2**64-1.  Where a long has 64 bits, PyLong_AsUnsignedLong(): it shifts the int's
 * digits in, where PyLong_AsUnsignedLongLong() converts any value above 2**30 through a byte
 * array (94 instructions a field on 3.11, callgrind).
 */
static uint64_t ib_pymap_u64(PyObject *field)
{
#if ULONG_MAX == UINT64_MAX
    return PyLong_AsUnsignedLong(field);
#else
    return PyLong_AsUnsignedLongLong(field);
#endif
}

/*
 * Whether @obj, a DMAMap by the caller's test of its type, has five int fields in
 * 0..2**64-1, which are then in @fields (the insert checks them further, the perm and the
 * ranges, as any insert does).  Anything else (a tuple forged to another length, a field of
 * another type or out of range) is left to the checks of Python's slow path, which word the
 * error.
 */
static int ib_pymap_fields(PyObject *obj, uint64_t fields[5])
{
    if (!PyTuple_Check(obj) || PyTuple_Size(obj) != 5) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < 5; i++) {
        PyObject *field = PyTuple_GetItem(obj, i);

        if (!field || !PyLong_Check(field)) {
            PyErr_Clear();
            return 0;
        }
        fields[i] = ib_pymap_u64(field);
        if (fields[i] == UINT64_MAX && PyErr_Occurred()) {
            PyErr_Clear(); /* negative, or above 2**64-1 */
            return 0;
        }
    }
    return 1;
}

/*
 * ib_tree_insert_map_try() of the DMAMap at @map (its id()): IOVA_OK, an IOVA_ERR_* code,
 * IB_BUSY or IB_CLOSED, as that call answers, or IOVA_ERR_INVALID for a map whose fields are
 * not plain (see ib_pymap_fields()), which Python's checks then reject or normalise.
 */
static int ib_tree_insert_obj_try(IBTree *t, uintptr_t map)
{
    uint64_t fields[5];
    PyGILState_STATE gil = PyGILState_Ensure();
    int plain = ib_pymap_fields((PyObject *)map, fields);

    PyGILState_Release(gil);
    if (!plain) {
        return IOVA_ERR_INVALID;
    }
    return ib_tree_insert_map_try(t, fields[0], fields[1], fields[2], fields[3], fields[4]);
}

#endif /* IOVA_PYMAP_H */
