/*
 * hoard.archive._chunker: the native scan of hoard's keyed FastCDC chunker.
 *
 * The algorithm is defined in docs/design/chunking.md; chunk boundaries are
 * part of the repository format. hoard/archive/chunker_py.py is the
 * pure-Python twin of this file and must cut at exactly the same offsets
 * (tests/unit/archive/test_chunker.py proves it with hypothesis).
 *
 * Only the scan lives here: the masks are computed in chunker.py and the
 * streaming (carrying the uncut tail of one read into the next) is done in
 * Python, so the two implementations differ in nothing else. The scan runs
 * without the GIL, so threads chunking different files run in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>

#define GEAR_ENTRIES 256
#define GEAR_TABLE_BYTES (GEAR_ENTRIES * 8)
/* The gear hash of a position depends on exactly the WINDOW bytes before it:
 * older bytes have been shifted out of the 64-bit state. */
#define WINDOW 64

typedef struct {
    uint64_t gear[GEAR_ENTRIES];
    size_t min_size;
    size_t avg_size;
    size_t max_size;
    uint64_t mask_s;
    uint64_t mask_l;
} cdc_params;

/* Decode the table as 256 little-endian uint64, whatever the host's order. */
static void load_gear(uint64_t *gear, const unsigned char *bytes)
{
    for (int i = 0; i < GEAR_ENTRIES; i++) {
        uint64_t v = 0;
        for (int j = 7; j >= 0; j--) {
            v = (v << 8) | bytes[i * 8 + j];
        }
        gear[i] = v;
    }
}

/*
 * Length of the chunk that starts at p, given avail bytes there.
 *
 * Candidate lengths n run from max(min_size, skip + 1) up to max_size; the
 * caller promises that lengths <= skip were tested already. A length n is a
 * cut when the gear hash of bytes [n - 64, n) has no bit of the mask in force
 * set (mask_s while n < avg_size, mask_l from there on), or when n ==
 * max_size. Returns 0 when the avail bytes do not decide the cut yet.
 */
static size_t next_cut(const cdc_params *cp, const uint8_t *p, size_t avail, size_t skip)
{
    const uint64_t *gear = cp->gear;
    size_t limit = avail < cp->max_size ? avail : cp->max_size;
    size_t n = skip + 1 > cp->min_size ? skip + 1 : cp->min_size;
    size_t small_end = cp->avg_size - 1 < limit ? cp->avg_size - 1 : limit;
    uint64_t h = 0;

    if (n > limit) {
        return limit == cp->max_size ? limit : 0;
    }
    /* Warm up on the 63 bytes before the first candidate's last byte. */
    for (const uint8_t *q = p + n - WINDOW; q < p + n - 1; q++) {
        h = (h << 1) + gear[*q];
    }
    for (; n <= small_end; n++) {
        h = (h << 1) + gear[p[n - 1]];
        if (!(h & cp->mask_s)) {
            return n;
        }
    }
    for (; n <= limit; n++) {
        h = (h << 1) + gear[p[n - 1]];
        if (!(h & cp->mask_l)) {
            return n;
        }
    }
    return limit == cp->max_size ? limit : 0;
}

/* Fill cuts with the end offsets of the chunks in data; returns how many. */
static size_t scan(const cdc_params *cp, const uint8_t *data, size_t len, size_t skip,
                   int final, size_t *cuts)
{
    size_t pos = 0;
    size_t count = 0;

    while (pos < len) {
        size_t cut = next_cut(cp, data + pos, len - pos, skip);
        skip = 0;
        if (cut == 0) {
            if (!final) {
                break;
            }
            cut = len - pos;
        }
        pos += cut;
        cuts[count++] = pos;
    }
    return count;
}

static int convert_u64(PyObject *obj, void *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        return 0;
    }
    *(uint64_t *)out = (uint64_t)v;
    return 1;
}

static int check_sizes(Py_ssize_t min_size, Py_ssize_t avg_size, Py_ssize_t max_size,
                       Py_ssize_t skip)
{
    if (min_size < WINDOW || avg_size < min_size || max_size < avg_size) {
        PyErr_Format(PyExc_ValueError,
                     "need 64 <= min_size <= avg_size <= max_size, got %zd, %zd, %zd",
                     min_size, avg_size, max_size);
        return 0;
    }
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "skip must not be negative");
        return 0;
    }
    return 1;
}

static PyObject *cuts_to_list(const size_t *cuts, size_t count)
{
    PyObject *list = PyList_New((Py_ssize_t)count);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        PyObject *v = PyLong_FromSize_t(cuts[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

static PyObject *run_scan(cdc_params *cp, const Py_buffer *data, const Py_buffer *table,
                          Py_ssize_t skip, int final)
{
    size_t len = (size_t)data->len;
    size_t capacity = len / cp->min_size + 2;
    size_t *cuts;
    size_t count;
    PyObject *result;

    if (table->len != GEAR_TABLE_BYTES) {
        PyErr_Format(PyExc_ValueError, "gear_table must be %d bytes, got %zd",
                     GEAR_TABLE_BYTES, table->len);
        return NULL;
    }
    load_gear(cp->gear, (const unsigned char *)table->buf);
    cuts = PyMem_RawMalloc(capacity * sizeof(size_t));
    if (cuts == NULL) {
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    count = scan(cp, (const uint8_t *)data->buf, len, (size_t)skip, final, cuts);
    Py_END_ALLOW_THREADS
    result = cuts_to_list(cuts, count);
    PyMem_RawFree(cuts);
    return result;
}

PyDoc_STRVAR(find_cuts_doc,
"find_cuts(data, gear_table, sizes, masks, *, skip=0, final=False)\n"
"--\n\n"
"Return the end offsets of the chunks that data cuts into, a chunk starting at\n"
"offset 0. sizes is (min_size, avg_size, max_size), masks is (mask_s, mask_l).\n"
"Lengths <= skip of the first chunk are known not to be cuts and are\n"
"not tested again. Without final the scan stops at the last cut the data\n"
"decides and the uncut tail is left to the caller; with final the tail is the\n"
"last chunk. Runs without the GIL; data must not change meanwhile.");

static PyObject *find_cuts(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"data", "gear_table", "sizes", "masks", "skip", "final", NULL};
    Py_buffer data = {0};
    Py_buffer table = {0};
    cdc_params *cp;
    Py_ssize_t min_size, avg_size, max_size;
    Py_ssize_t skip = 0;
    uint64_t mask_s, mask_l;
    int final = 0;
    PyObject *result = NULL;

    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*(nnn)(O&O&)|$np", keywords, &data, &table,
                                     &min_size, &avg_size, &max_size, convert_u64, &mask_s,
                                     convert_u64, &mask_l, &skip, &final)) {
        return NULL;
    }
    if (check_sizes(min_size, avg_size, max_size, skip)) {
        cp = PyMem_RawMalloc(sizeof(cdc_params));
        if (cp == NULL) {
            PyErr_NoMemory();
        } else {
            cp->min_size = (size_t)min_size;
            cp->avg_size = (size_t)avg_size;
            cp->max_size = (size_t)max_size;
            cp->mask_s = mask_s;
            cp->mask_l = mask_l;
            result = run_scan(cp, &data, &table, skip, final);
            PyMem_RawFree(cp);
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&table);
    return result;
}

static PyMethodDef chunker_methods[] = {
    {"find_cuts", (PyCFunction)(void (*)(void))find_cuts, METH_VARARGS | METH_KEYWORDS,
     find_cuts_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef chunker_module = {
    PyModuleDef_HEAD_INIT,
    "hoard.archive._chunker",
    "Native scan of hoard's keyed FastCDC chunker (see docs/design/chunking.md).",
    -1,
    chunker_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__chunker(void)
{
    return PyModule_Create(&chunker_module);
}
