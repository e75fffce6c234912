#!/usr/bin/env python3
"""Checks heed's ctypes declarations (python/heed/_capi.py) against include/heed/heed.h.

The header is parsed here (structs, enums, function prototypes; it is plain C with one
declaration per statement) and compared field by field and argument by argument with
the ctypes structs and signatures, so the binding cannot drift from the C API. Needs no
library and no numpy: it imports _capi alone.
"""

import ctypes
import importlib.util
import os
import re
import unittest

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
HEADER = os.path.join(_REPO, "include", "heed", "heed.h")


def _load_capi():
    """heed._capi without importing the package (which would open libheed)."""
    spec = importlib.util.spec_from_file_location(
        "heed_capi_under_test", os.path.join(_REPO, "python", "heed", "_capi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


capi = _load_capi()

# C scalar types -> ctypes.
_SCALARS = {
    "uint32_t": ctypes.c_uint32, "int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64, "uint8_t": ctypes.c_uint8, "double": ctypes.c_double,
    "float": ctypes.c_float, "int": ctypes.c_int, "size_t": ctypes.c_size_t,
    "heed_status": ctypes.c_int,
}


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


class Header:
    """What heed.h declares: enums {name: value}, structs {name: [(field, ctype)]},
    functions {name: (restype, [argtypes])}, macros {name: value}."""

    def __init__(self, path):
        raw = open(path).read()
        self.macros = dict(re.findall(r"^#define\s+(\w+)\s+(\d+)\s*$", raw, flags=re.M))
        text = _strip_comments(raw)
        text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)
        text = re.sub(r'extern\s+"C"\s*\{', " ", text)
        self.enums = {}
        for body in re.findall(r"typedef\s+enum\s+\w+\s*\{(.*?)\}\s*\w+\s*;", text, flags=re.S):
            for item in body.split(","):
                item = item.strip()
                if item:
                    name, value = (s.strip() for s in item.split("="))
                    self.enums[name] = int(value)
        text = re.sub(r"typedef\s+enum\s+\w+\s*\{.*?\}\s*\w+\s*;", " ", text, flags=re.S)
        self.structs = {}
        self.opaque = set(re.findall(r"typedef\s+struct\s+(\w+)\s+\w+\s*;", text))
        for name, body, alias in re.findall(
                r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
            assert name == alias, (name, alias)
            fields = []
            for decl in body.split(";"):
                decl = " ".join(decl.split())
                if decl:
                    fields.extend(self._declarators(decl))
            self.structs[name] = fields
        text = re.sub(r"typedef\s+struct\s+\w+\s*(\{.*?\})?\s*\w+\s*;", " ", text, flags=re.S)
        self.functions = {}
        for decl in text.split(";"):
            decl = " ".join(decl.split())
            if not decl or decl == "}":
                continue
            decl = decl.lstrip("} ")
            m = re.fullmatch(r"(.*?)\b(heed_\w+)\s*\((.*)\)", decl)
            assert m, "cannot read the declaration %r" % decl
            ret, name, args = m.groups()
            argtypes = []
            if args.strip() != "void":
                for arg in args.split(","):
                    argtypes.append(self._type(self._split_name(arg.strip())[0]))
            self.functions[name] = (self._type(ret.strip()), argtypes)

    @staticmethod
    def _split_name(decl):
        """('const char *', 'name') from 'const char *name'."""
        m = re.fullmatch(r"(.*?)(\w+)", decl)
        return m.group(1).strip(), m.group(2)

    def _declarators(self, decl):
        """[(name, ctype)] of 'T a, *b' (one base type, several names)."""
        first, *rest = (d.strip() for d in decl.split(","))
        base, name = self._split_name(first)
        stars = base.count("*")
        base = base.replace("*", "").strip()
        out = [(name, self._type(base + " " + "*" * stars))]
        for d in rest:
            n_stars = d.count("*")
            out.append((d.replace("*", "").strip(), self._type(base + " " + "*" * n_stars)))
        return out

    def _type(self, ctext):
        """The ctypes type of a C type, or a description for pointers to structs."""
        t = " ".join(ctext.replace("*", " * ").split())
        t = t.replace("const ", "").strip()
        if t == "void":
            return None
        if t == "char *":
            return ctypes.c_char_p
        if t == "void *":
            return ctypes.c_void_p
        if t.endswith(" *"):
            inner = t[:-2].strip()
            if inner in self.opaque and inner not in capi.STRUCTS:
                return ctypes.c_void_p  # an opaque handle
            if inner.endswith(" *"):
                inner_t = self._type(inner)
                return ctypes.POINTER(inner_t)
            if inner in capi.STRUCTS:
                return ctypes.POINTER(capi.STRUCTS[inner])
            return ctypes.POINTER(_SCALARS[inner])
        return _SCALARS[t]


def _same(a, b):
    """Whether two ctypes types are the same C type."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    # POINTER(T) is cached per T, so identity mostly holds; compare the targets else.
    ta, tb = getattr(a, "_type_", None), getattr(b, "_type_", None)
    if isinstance(ta, type) and isinstance(tb, type):
        return issubclass(a, ctypes._Pointer) and issubclass(b, ctypes._Pointer) and _same(ta, tb)
    return ctypes.sizeof(a) == ctypes.sizeof(b) and ta == tb


def _name(t):
    return "void" if t is None else t.__name__


class HeaderTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.header = Header(HEADER)

    def test_abi_version(self):
        self.assertEqual(int(self.header.macros["HEED_ABI_VERSION"]), capi.ABI_VERSION)

    def test_enums(self):
        self.assertEqual(self.header.enums, capi.ENUMS)

    def test_structs(self):
        self.assertEqual(sorted(self.header.structs), sorted(capi.STRUCTS))
        for name, fields in self.header.structs.items():
            ours = capi.STRUCTS[name]._fields_
            self.assertEqual([f for f, _ in fields], [f for f, _ in ours],
                             "%s: field names or order differ" % name)
            for (field, ctype), (_, ours_t) in zip(fields, ours):
                self.assertTrue(_same(ctype, ours_t), "%s.%s: heed.h says %s, _capi.py %s"
                                % (name, field, _name(ctype), _name(ours_t)))

    def test_functions(self):
        declared = set(self.header.functions)
        bound = set(capi.SIGNATURES)
        self.assertEqual(sorted(declared - bound), [],
                         "declared in heed.h but not bound in _capi.SIGNATURES")
        self.assertEqual(sorted(bound - declared), [], "bound but not declared in heed.h")
        for name, (ret, args) in self.header.functions.items():
            our_ret, our_args, _ = capi.SIGNATURES[name]
            self.assertTrue(_same(ret, our_ret), "%s returns %s in heed.h, %s in _capi.py"
                            % (name, _name(ret), _name(our_ret)))
            self.assertEqual(len(args), len(our_args), "%s: argument count" % name)
            for i, (a, b) in enumerate(zip(args, our_args)):
                self.assertTrue(_same(a, b), "%s argument %d: heed.h %s, _capi.py %s"
                                % (name, i, _name(a), _name(b)))

    def test_compiler_only_marks(self):
        # The functions in the [compiler] sections of heed.h are the ones a
        # runtime-only library lacks.
        parts = re.split(r"/\* ---- (.*?) -+ \*/", open(HEADER).read())
        compiler = set()
        for title, body in zip(parts[1::2], parts[2::2]):
            if "[compiler]" in title:
                compiler |= set(re.findall(r"\b(heed_\w+)\s*\(", _strip_comments(body)))
        ours = {n for n, (_, _, c) in capi.SIGNATURES.items() if c}
        self.assertEqual(ours, compiler & set(capi.SIGNATURES))

    def test_parser_reads_what_it_should(self):
        # The parser itself: a sample with every form the header uses.
        self.assertIn(("memory_hits", ctypes.c_uint64),
                      [(n, t) for n, t in self.header.structs["heed_cache_stats"]])
        self.assertEqual(len(self.header.structs["heed_attention_args"]), 16)
        self.assertGreaterEqual(len(self.header.functions), 29)


if __name__ == "__main__":
    unittest.main()
