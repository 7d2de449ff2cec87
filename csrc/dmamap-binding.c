// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * iova_native._dmamap: the fast construction of DMAMap, in C.
 *
 * DMAMap is the tuple subclass of src/iova_native/_types.py.  Calling a Python class whose
 * __new__ is Python code goes through the interpreter's generic slot machinery: an argument
 * tuple, a second one with the class in front, a Python frame, tuple.__new__ with its checks,
 * and a temporary tuple.  That is most of the 360 ns a DMAMap(...) used to cost.  Here
 * DMAMap's metaclass answers the call itself: for exact ints that fit, a Perm other than NONE
 * and ranges that do not wrap (what almost every caller passes), it allocates the instance
 * and stores the fields, nothing else.  Any other call is handed, unchanged, to type.__call__,
 * which runs DMAMap.__new__ in Python: its checks normalise (__index__, int perms) or raise
 * the errors both backends share, so no error is produced here.
 *
 * The module keeps no C globals: what a call needs lives in the module's state (single-phase
 * initialisation, found again with PyState_FindModule).  It is built against the limited API
 * of CPython 3.9, like the cffi extension, so one abi3 wheel still serves every version.
 */
#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

enum { MAP_FIELDS = 5, PERM_VALUES = 4 };

/* What the constructor needs; filled by PyInit and register(). */
typedef struct {
    PyObject *map_type;             /* DMAMap, once register() names it */
    PyObject *meta_type;            /* DMAMapType: register() takes only its instances */
    PyObject *perms[PERM_VALUES];   /* Perm.NONE, RO, WO, RW, indexed by value */
    PyObject *zero;                 /* id's default */
    PyObject *type_call;            /* type.__call__: every call the fast path declines */
    PyObject *names[MAP_FIELDS];    /* interned field names, in signature order */
    newfunc tuple_new;              /* tuple's own tp_new, for generic_alloc */
    bool generic_alloc;             /* build through tuple_new (see new_map) */
    bool generic_required;          /* the running version needs it: no test turns it off */
} MapState;

static const char *const field_names[MAP_FIELDS] = {
    "iova", "translated_addr", "size", "perm", "id",
};

static struct PyModuleDef dmamap_module;

static MapState *map_state(void)
{
    PyObject *module = PyState_FindModule(&dmamap_module);

    return module ? (MapState *)PyModule_GetState(module) : NULL;
}

/*
 * slow_call: hand a call to type.__call__(cls, *args, **kwargs), which runs DMAMap.__new__.
 */
static PyObject *slow_call(PyObject *type_call, PyObject *cls, PyObject *args,
                           PyObject *kwargs)
{
    Py_ssize_t n = PyTuple_Size(args);
    PyObject *full = PyTuple_New(n + 1);
    PyObject *result;

    if (!full) {
        return NULL;
    }
    Py_INCREF(cls);
    PyTuple_SetItem(full, 0, cls);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GetItem(args, i);

        Py_INCREF(item);
        PyTuple_SetItem(full, i + 1, item);
    }
    result = PyObject_Call(type_call, full, kwargs);
    Py_DECREF(full);
    return result;
}

/*
 * field_index: the position of keyword @key among the field names, or -1.  Keywords written
 * in a call are interned, so the identity test almost always decides.  A key that is not an
 * exact str is left to the slow path: Python matches it with its own __eq__ (a str subclass
 * may say no to its own text, or raise), which a comparison here would not ask.
 */
static int field_index(MapState *st, PyObject *key)
{
    for (int i = 0; i < MAP_FIELDS; i++) {
        if (key == st->names[i]) {
            return i;
        }
    }
    if (!PyUnicode_CheckExact(key)) {
        return -1;
    }
    for (int i = 0; i < MAP_FIELDS; i++) {
        if (PyUnicode_Compare(key, st->names[i]) == 0) {
            return i;
        }
    }
    PyErr_Clear();
    return -1;
}

/*
 * gather_fields: the call's five fields (borrowed) in @fields, defaults filled in.  False when
 * the call is not a plain one (too few or too many arguments, an unknown or repeated keyword):
 * the slow path then raises Python's own TypeError for it.
 */
static bool gather_fields(MapState *st, PyObject *args, PyObject *kwargs,
                          PyObject *fields[MAP_FIELDS])
{
    Py_ssize_t n = PyTuple_Size(args);
    Py_ssize_t pos = 0;
    PyObject *key, *value;

    if (n > MAP_FIELDS) {
        return false;
    }
    for (int i = 0; i < MAP_FIELDS; i++) {
        fields[i] = i < n ? PyTuple_GetItem(args, i) : NULL;
    }
    while (kwargs && PyDict_Next(kwargs, &pos, &key, &value)) {
        int i = field_index(st, key);

        if (i < 0 || fields[i]) {
            return false;
        }
        fields[i] = value;
    }
    if (!fields[0] || !fields[1] || !fields[2]) {
        return false;
    }
    if (!fields[3]) {
        fields[3] = st->perms[3];
    }
    if (!fields[4]) {
        fields[4] = st->zero;
    }
    return true;
}

/* u64_of: the value of an exact int in 0..2**64-1 in @out; false for anything else. */
static bool u64_of(PyObject *obj, uint64_t *out)
{
    unsigned long long value;

    if (!PyLong_CheckExact(obj)) {
        return false;
    }
    value = PyLong_AsUnsignedLongLong(obj);
    if (value == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();   /* negative or too large: the slow path says which */
        return false;
    }
    *out = value;
    return true;
}

/* valid_fields: the test of DMAMap.__new__, for the fields it accepts as they are. */
static bool valid_fields(MapState *st, PyObject *fields[MAP_FIELDS])
{
    uint64_t iova, translated, size, id;
    PyObject *perm = fields[3];

    if (perm != st->perms[1] && perm != st->perms[2] && perm != st->perms[3]) {
        return false;
    }
    if (!u64_of(fields[0], &iova) || !u64_of(fields[1], &translated) ||
        !u64_of(fields[2], &size) || !u64_of(fields[4], &id)) {
        return false;
    }
    return size <= UINT64_MAX - iova && size <= UINT64_MAX - translated;
}

/* store_fields: @fields (new references taken) as the items of the fresh @tuple, or NULL. */
static PyObject *store_fields(PyObject *tuple, PyObject *const fields[MAP_FIELDS])
{
    if (!tuple) {
        return NULL;
    }
    for (int i = 0; i < MAP_FIELDS; i++) {
        Py_INCREF(fields[i]);
        PyTuple_SetItem(tuple, i, fields[i]);
    }
    return tuple;
}

/*
 * new_map: an instance of @cls holding @fields (new references taken).
 *
 * Up to CPython 3.13 a tuple is its header and its items, so the instance is allocated and
 * its items stored, as tuple.__new__ itself does for a subclass, without the argument
 * handling and the temporary tuple.  Later versions may keep more in a tuple (3.14 caches
 * its hash, which a zeroed allocation would read as a hash of 0), so there, and whenever
 * the version is not known, tuple's own tp_new builds it.
 */
static PyObject *new_map(MapState *st, PyObject *cls, PyObject *const fields[MAP_FIELDS])
{
    PyObject *map, *plain, *args;

    if (!st->generic_alloc) {
        return store_fields(PyType_GenericAlloc((PyTypeObject *)cls, MAP_FIELDS), fields);
    }
    plain = store_fields(PyTuple_New(MAP_FIELDS), fields);
    if (!plain) {
        return NULL;
    }
    args = PyTuple_Pack(1, plain);
    Py_DECREF(plain);
    if (!args) {
        return NULL;
    }
    map = st->tuple_new((PyTypeObject *)cls, args, NULL);
    Py_DECREF(args);
    return map;
}

/*
 * unregistered_call: type.__call__ when the module's state cannot be found, or was cleared
 * (an interpreter being finalised, a finalizer still building maps): slow, the same answer.
 */
static PyObject *unregistered_call(PyObject *cls, PyObject *args, PyObject *kwargs)
{
    PyObject *type_call = PyObject_GetAttrString((PyObject *)&PyType_Type, "__call__");
    PyObject *result;

    if (!type_call) {
        return NULL;
    }
    result = slow_call(type_call, cls, args, kwargs);
    Py_DECREF(type_call);
    return result;
}

/*
 * map_type_call: DMAMapType.__call__, i.e. DMAMap(...).  Only DMAMap itself takes the fast
 * path: a subclass may define __new__ or __init__, which type.__call__ runs.
 */
static PyObject *map_type_call(PyObject *cls, PyObject *args, PyObject *kwargs)
{
    MapState *st = map_state();
    PyObject *fields[MAP_FIELDS];

    if (!st || !st->type_call) {   /* no module, or its state cleared at shutdown */
        return unregistered_call(cls, args, kwargs);
    }
    if (cls != st->map_type || !gather_fields(st, args, kwargs, fields) ||
        !valid_fields(st, fields)) {
        return slow_call(st->type_call, cls, args, kwargs);
    }
    return new_map(st, cls, fields);
}

/*
 * from_fields: the backends' trusted builder, DMAMap from a tuple of five fields they know
 * to be valid (read from C, or already checked).  It skips tuple.__new__'s argument handling
 * and temporary tuple.
 */
static PyObject *from_fields(PyObject *module, PyObject *fields)
{
    MapState *st = (MapState *)PyModule_GetState(module);
    PyObject *items[MAP_FIELDS];

    if (!st->map_type) {
        PyErr_SetString(PyExc_RuntimeError, "DMAMap is not registered yet");
        return NULL;
    }
    if (!PyTuple_CheckExact(fields) || PyTuple_Size(fields) != MAP_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "from_fields() needs a tuple of 5 fields");
        return NULL;
    }
    for (int i = 0; i < MAP_FIELDS; i++) {
        items[i] = PyTuple_GetItem(fields, i);
    }
    return new_map(st, st->map_type, items);
}

/* replace_ref: *@slot holds a new reference to @obj; the old one is dropped last. */
static void replace_ref(PyObject **slot, PyObject *obj)
{
    PyObject *old = *slot;

    Py_INCREF(obj);
    *slot = obj;
    Py_XDECREF(old);
}

/*
 * register(map_type, perms): name DMAMap and the four Perm members (by value).  The class
 * must be a tuple subclass built by DMAMapType: new_map() lays a map out as a tuple of five
 * items, which any other class (an int, a struct sequence with hidden fields) is not, and
 * tuple's tp_new writes the items without asking.
 */
static PyObject *register_map(PyObject *module, PyObject *args)
{
    MapState *st = (MapState *)PyModule_GetState(module);
    PyObject *map_type, *perms;

    if (!PyArg_ParseTuple(args, "OO!:register", &map_type, &PyTuple_Type, &perms)) {
        return NULL;
    }
    if (!st->meta_type || !PyType_Check(map_type) || PyTuple_Size(perms) != PERM_VALUES ||
        !PyType_IsSubtype((PyTypeObject *)map_type, &PyTuple_Type) ||
        !PyObject_TypeCheck(map_type, (PyTypeObject *)st->meta_type)) {
        PyErr_SetString(PyExc_TypeError,
                        "register() needs a tuple subclass of DMAMapType and 4 Perm members");
        return NULL;
    }
    for (int i = 0; i < PERM_VALUES; i++) {
        PyObject *perm = PyTuple_GetItem(perms, i);

        replace_ref(&st->perms[i], perm);
    }
    replace_ref(&st->map_type, map_type);
    Py_RETURN_NONE;
}

/* _set_generic_alloc(flag): build through tuple's tp_new (what later versions need), or not,
 * and answer the setting before: lets the tests run that path on the versions installed.
 * Where the version needs it, it stays on (a bare allocation would hash every map as 0). */
static PyObject *set_generic_alloc(PyObject *module, PyObject *flag)
{
    MapState *st = (MapState *)PyModule_GetState(module);
    int value = PyObject_IsTrue(flag);

    if (value < 0) {
        return NULL;
    }
    bool before = st->generic_alloc;

    st->generic_alloc = value || st->generic_required;
    return PyBool_FromLong(before);
}

static PyMethodDef dmamap_methods[] = {
    {"register", register_map, METH_VARARGS,
     "register(map_type, perms): the class the fast path builds and Perm's members."},
    {"from_fields", from_fields, METH_O,
     "from_fields(fields): a DMAMap of five fields known valid, without checks."},
    {"_set_generic_alloc", set_generic_alloc, METH_O,
     "_set_generic_alloc(flag): build maps through tuple's own tp_new (for tests)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot map_type_slots[] = {
    {Py_tp_call, (void *)map_type_call},
    {Py_tp_doc, (void *)"DMAMap's metaclass: builds a plain, valid map without Python code."},
    {0, NULL},
};

static PyType_Spec map_type_spec = {
    .name = "iova_native._dmamap.DMAMapType",
    .basicsize = 0,
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = map_type_slots,
};

static int dmamap_traverse(PyObject *module, visitproc visit, void *arg)
{
    MapState *st = (MapState *)PyModule_GetState(module);

    if (!st) {
        return 0;
    }
    Py_VISIT(st->map_type);
    Py_VISIT(st->meta_type);
    for (int i = 0; i < PERM_VALUES; i++) {
        Py_VISIT(st->perms[i]);
    }
    Py_VISIT(st->zero);
    Py_VISIT(st->type_call);
    return 0;
}

static int dmamap_clear(PyObject *module)
{
    MapState *st = (MapState *)PyModule_GetState(module);

    if (!st) {
        return 0;
    }
    Py_CLEAR(st->map_type);
    Py_CLEAR(st->meta_type);
    for (int i = 0; i < PERM_VALUES; i++) {
        Py_CLEAR(st->perms[i]);
    }
    Py_CLEAR(st->zero);
    Py_CLEAR(st->type_call);
    for (int i = 0; i < MAP_FIELDS; i++) {
        Py_CLEAR(st->names[i]);
    }
    return 0;
}

static void dmamap_free(void *module)
{
    dmamap_clear((PyObject *)module);
}

static struct PyModuleDef dmamap_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "iova_native._dmamap",
    .m_doc = "DMAMap's constructor in C (see src/iova_native/_types.py).",
    .m_size = sizeof(MapState),
    .m_methods = dmamap_methods,
    .m_traverse = dmamap_traverse,
    .m_clear = dmamap_clear,
    .m_free = dmamap_free,
};

/* running_version: the running CPython's major * 100 + minor, or -1. */
static long running_version(void)
{
    PyObject *info = PySys_GetObject("version_info");   /* borrowed */
    PyObject *major = info ? PySequence_GetItem(info, 0) : NULL;
    PyObject *minor = info ? PySequence_GetItem(info, 1) : NULL;
    long version = -1;

    if (major && minor) {
        version = PyLong_AsLong(major) * 100 + PyLong_AsLong(minor);
    }
    Py_XDECREF(major);
    Py_XDECREF(minor);
    PyErr_Clear();
    return version;
}

static PyType_Slot probe_slots[] = {
    {0, NULL},
};

/* The tp_new a tuple subclass inherits is tuple's own; a heap type's slots can be read. */
static PyType_Spec probe_spec = {
    .name = "iova_native._dmamap._TupleProbe",
    .basicsize = 0,
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = probe_slots,
};

static int find_tuple_new(MapState *st)
{
    PyObject *bases = PyTuple_Pack(1, (PyObject *)&PyTuple_Type);
    PyObject *probe;

    if (!bases) {
        return -1;
    }
    probe = PyType_FromSpecWithBases(&probe_spec, bases);
    Py_DECREF(bases);
    if (!probe) {
        return -1;
    }
    st->tuple_new = (newfunc)PyType_GetSlot((PyTypeObject *)probe, Py_tp_new);
    Py_DECREF(probe);
    if (!st->tuple_new) {
        PyErr_SetString(PyExc_SystemError, "tuple's tp_new not found");
        return -1;
    }
    return 0;
}

static int init_state(PyObject *module, MapState *st)
{
    PyObject *bases, *meta;
    long version = running_version();

    st->generic_required = version < 309 || version > 313;
    st->generic_alloc = st->generic_required;
    if (find_tuple_new(st) < 0) {
        return -1;
    }

    st->zero = PyLong_FromLong(0);
    st->type_call = PyObject_GetAttrString((PyObject *)&PyType_Type, "__call__");
    if (!st->zero || !st->type_call) {
        return -1;
    }
    for (int i = 0; i < MAP_FIELDS; i++) {
        st->names[i] = PyUnicode_InternFromString(field_names[i]);
        if (!st->names[i]) {
            return -1;
        }
    }
    bases = PyTuple_Pack(1, (PyObject *)&PyType_Type);
    if (!bases) {
        return -1;
    }
    meta = PyType_FromSpecWithBases(&map_type_spec, bases);
    Py_DECREF(bases);
    if (!meta) {
        return -1;
    }
    Py_INCREF(meta);
    st->meta_type = meta;
    /* PyModule_AddObject steals the reference only when it succeeds. */
    if (PyModule_AddObject(module, "DMAMapType", meta) < 0) {
        Py_DECREF(meta);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__dmamap(void);

PyMODINIT_FUNC PyInit__dmamap(void)
{
    PyObject *module = PyModule_Create(&dmamap_module);

    if (!module) {
        return NULL;
    }
    if (init_state(module, (MapState *)PyModule_GetState(module)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
