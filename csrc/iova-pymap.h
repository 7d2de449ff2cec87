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
 * the caller passed, whatever other threads do.  The read calls nothing that can raise,
 * allocate or run Python code, so it needs no thread state: it is right whether the _try
 * wrapper kept the GIL (iova-cffi.h) or a cffi release let it go, and in a subinterpreter,
 * where PyGILState_Ensure() (which an earlier version called) waits for ever for the main
 * interpreter's GIL.
 */
#ifndef IOVA_PYMAP_H
#define IOVA_PYMAP_H

#include <stdint.h>

/*
 * The int @field's value into *@value when it is in 0..2**63-1.  PyLong_AsLongLongAndOverflow()
 * answers an int's value, or says it does not fit, without setting an exception, and reads
 * an int subclass's value without calling anything of it.  A field at or above 2**63 (an
 * IOVA or an HVA in the top half of the space, an id there) is left to the slow path too:
 * telling it from one above 2**64-1 takes a call that raises.
 */
static int ib_pymap_u63(PyObject *field, uint64_t *value)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(field, &overflow);

    if (overflow || v < 0) {
        return 0;
    }
    *value = (uint64_t)v;
    return 1;
}

/*
 * Whether @obj, a DMAMap by the caller's test of its type, has five int fields in
 * 0..2**63-1, which are then in @fields (the insert checks them further, the perm and the
 * ranges, as any insert does).  Anything else (a tuple forged to another length, a field of
 * another type, out of range, or in the top half) is left to the checks of Python's slow
 * path, which store it or word the error.
 */
static int ib_pymap_fields(PyObject *obj, uint64_t fields[5])
{
    if (!PyTuple_Check(obj) || PyTuple_Size(obj) != 5) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < 5; i++) {
        PyObject *field = PyTuple_GetItem(obj, i); /* i is in range: it cannot fail */

        if (!PyLong_Check(field) || !ib_pymap_u63(field, &fields[i])) {
            return 0;
        }
    }
    return 1;
}

/*
 * ib_tree_insert_map_try() of the DMAMap at @map (its id()): IOVA_OK, an IOVA_ERR_* code,
 * IB_BUSY or IB_CLOSED, as that call answers, or IOVA_ERR_INVALID for a map whose fields C
 * does not read (see ib_pymap_fields()), which Python's checks then store, reject or
 * normalise.
 */
static int ib_tree_insert_obj_try(IBTree *t, uintptr_t map)
{
    uint64_t fields[5];

    if (!ib_pymap_fields((PyObject *)map, fields)) {
        return IOVA_ERR_INVALID;
    }
    return ib_tree_insert_map_try(t, fields[0], fields[1], fields[2], fields[3], fields[4]);
}

#endif /* IOVA_PYMAP_H */
