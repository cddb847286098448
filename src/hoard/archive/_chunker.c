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
 * Where the chunk being scanned ends: its length, or 0 when the bytes seen do
 * not decide that yet.
 *
 * The chunk began `carry` bytes before p; lengths <= carry were tested
 * already (by an earlier call) and were not cuts. hist_end points just past
 * the last of those carried bytes, of which at least min(63, carry) are
 * readable there: the hash window may reach back into them. avail bytes are
 * readable at p.
 *
 * Candidate lengths n run from max(min_size, carry + 1) up to max_size. A
 * length n is a cut when the gear hash of chunk bytes [n - 64, n) has no bit
 * of the mask in force set (mask_s while n < avg_size, mask_l from there on),
 * or when n == max_size.
 */
static size_t next_cut(const cdc_params *cp, const uint8_t *hist_end, size_t carry,
                       const uint8_t *p, size_t avail)
{
    const uint64_t *gear = cp->gear;
    size_t limit = carry + avail < cp->max_size ? carry + avail : cp->max_size;
    size_t n = carry + 1 > cp->min_size ? carry + 1 : cp->min_size;
    size_t small_end = cp->avg_size - 1 < limit ? cp->avg_size - 1 : limit;
    uint64_t h = 0;

    if (n > limit) {
        return limit == cp->max_size ? limit : 0;
    }
    /* Warm up on the 63 bytes before the first candidate's last byte. */
    for (size_t i = n - WINDOW; i < n - 1; i++) {
        h = (h << 1) + gear[i < carry ? *(hist_end - (carry - i)) : p[i - carry]];
    }
    for (; n <= small_end; n++) {
        h = (h << 1) + gear[p[n - 1 - carry]];
        if (!(h & cp->mask_s)) {
            return n;
        }
    }
    for (; n <= limit; n++) {
        h = (h << 1) + gear[p[n - 1 - carry]];
        if (!(h & cp->mask_l)) {
            return n;
        }
    }
    return limit == cp->max_size ? limit : 0;
}

/* Fill cuts with the end offsets (in data) of the chunks; returns how many. */
static size_t scan(const cdc_params *cp, const uint8_t *hist_end, size_t carry,
                   const uint8_t *data, size_t len, int final, size_t *cuts)
{
    size_t pos = 0;
    size_t count = 0;

    while (pos < len || carry > 0) {
        size_t cut = next_cut(cp, hist_end, carry, data + pos, len - pos);
        if (cut == 0) {
            if (!final) {
                break;
            }
            cut = carry + (len - pos);
        }
        pos += cut - carry;
        cuts[count++] = pos;
        carry = 0;
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

static int check_sizes(Py_ssize_t min_size, Py_ssize_t avg_size, Py_ssize_t max_size)
{
    if (min_size < WINDOW || avg_size < min_size || max_size < avg_size) {
        PyErr_Format(PyExc_ValueError,
                     "need 64 <= min_size <= avg_size <= max_size, got %zd, %zd, %zd",
                     min_size, avg_size, max_size);
        return 0;
    }
    return 1;
}

static int check_carry(Py_ssize_t carry, Py_ssize_t max_size, Py_ssize_t history_len)
{
    Py_ssize_t want = carry < WINDOW - 1 ? carry : WINDOW - 1;

    if (carry < 0 || carry >= max_size) {
        PyErr_Format(PyExc_ValueError, "need 0 <= carry < max_size, got carry %zd", carry);
        return 0;
    }
    if (history_len != want) {
        PyErr_Format(PyExc_ValueError,
                     "history must be the last %zd carried bytes, got %zd bytes", want,
                     history_len);
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

typedef struct {
    Py_buffer data;
    Py_buffer table;
    Py_buffer history;
    Py_ssize_t carry;
    int final;
} scan_args;

static PyObject *run_scan(cdc_params *cp, const scan_args *a)
{
    size_t len = (size_t)a->data.len;
    size_t capacity = len / cp->min_size + 2;
    const uint8_t *hist_end = a->history.buf != NULL
                                  ? (const uint8_t *)a->history.buf + a->history.len
                                  : (const uint8_t *)"";
    size_t *cuts;
    size_t count;
    PyObject *result;

    if (a->table.len != GEAR_TABLE_BYTES) {
        PyErr_Format(PyExc_ValueError, "gear_table must be %d bytes, got %zd",
                     GEAR_TABLE_BYTES, a->table.len);
        return NULL;
    }
    load_gear(cp->gear, (const unsigned char *)a->table.buf);
    cuts = PyMem_RawMalloc(capacity * sizeof(size_t));
    if (cuts == NULL) {
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    count = scan(cp, hist_end, (size_t)a->carry, (const uint8_t *)a->data.buf, len, a->final,
                 cuts);
    Py_END_ALLOW_THREADS
    result = cuts_to_list(cuts, count);
    PyMem_RawFree(cuts);
    return result;
}

PyDoc_STRVAR(find_cuts_doc,
"find_cuts(data, gear_table, sizes, masks, *, carry=0, history=b'', final=False)\n"
"--\n\n"
"Return the end offsets in data of the chunks that data cuts into.\n"
"sizes is (min_size, avg_size, max_size), masks is (mask_s, mask_l).\n"
"The first chunk began carry bytes before data (0 <= carry < max_size);\n"
"lengths <= carry of it were tested before and are not tested again, and\n"
"history holds its last min(63, carry) bytes, which the hash window needs.\n"
"The first offset is 0 if that carried chunk ends where data starts.\n"
"Without final the scan stops at the last cut the data decides and the uncut\n"
"tail is left to the caller; with final the tail is the last chunk.\n"
"Runs without the GIL; the buffers must not change meanwhile.");

static PyObject *find_cuts(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"data",  "gear_table", "sizes", "masks",
                               "carry", "history",    "final", NULL};
    scan_args a = {{0}, {0}, {0}, 0, 0};
    cdc_params *cp;
    Py_ssize_t min_size, avg_size, max_size;
    uint64_t mask_s, mask_l;
    PyObject *result = NULL;

    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*y*(nnn)(O&O&)|$ny*p", keywords, &a.data,
                                     &a.table, &min_size, &avg_size, &max_size, convert_u64,
                                     &mask_s, convert_u64, &mask_l, &a.carry, &a.history,
                                     &a.final)) {
        return NULL;
    }
    if (check_sizes(min_size, avg_size, max_size) &&
        check_carry(a.carry, max_size, a.history.buf ? a.history.len : 0)) {
        cp = PyMem_RawMalloc(sizeof(cdc_params));
        if (cp == NULL) {
            PyErr_NoMemory();
        } else {
            cp->min_size = (size_t)min_size;
            cp->avg_size = (size_t)avg_size;
            cp->max_size = (size_t)max_size;
            cp->mask_s = mask_s;
            cp->mask_l = mask_l;
            result = run_scan(cp, &a);
            PyMem_RawFree(cp);
        }
    }
    PyBuffer_Release(&a.data);
    PyBuffer_Release(&a.table);
    if (a.history.obj != NULL) {
        PyBuffer_Release(&a.history);
    }
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
