"""The ctypes declarations of rr.py against include/rr.h (STYLE.md section 8: stale
declarations fail the tests).

Parses the header with a few regular expressions (enough for cbindgen's output): every
`rr_*` function prototype, integer typedefs, function-pointer typedefs, the structs
(rr_worker_info, rr_pool_stats), the RR_* constants. Then checks, for every function of
the header, that rr.py declares it with the same number of parameters and compatible
types (integer size and sign; pointer depth and pointee), and the other way round.
"""

import ctypes
import os
import re
import sys
import unittest

import rr
from support import REPO, NoChildrenLeft

HEADER = os.path.join(REPO, "include", "rr.h")

INT_TYPES = {  # C type -> (size, signed)
    "uint8_t": (1, False), "int8_t": (1, True), "uint16_t": (2, False), "int16_t": (2, True),
    "uint32_t": (4, False), "int32_t": (4, True), "uint64_t": (8, False), "int64_t": (8, True),
    "size_t": (ctypes.sizeof(ctypes.c_size_t), False),
    "uintptr_t": (ctypes.sizeof(ctypes.c_void_p), False),
    "intptr_t": (ctypes.sizeof(ctypes.c_void_p), True),
    "bool": (1, False), "char": (1, None), "int": (4, True), "unsigned": (4, False),
    "enum": (4, None),  # a C enum without an integer typedef: int-sized, sign unknown
}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def statements(text):
    """Top-level statements (split at ';' outside braces), preprocessor lines and
    extern "C" wrappers removed."""
    text = "\n".join(l for l in text.split("\n") if not l.lstrip().startswith("#"))
    text = re.sub(r'\bextern\s+"C"\s*\{', " ", text)
    out, cur, depth = [], [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                continue  # the closing brace of extern "C"
            depth -= 1
        if ch == ";" and depth == 0:
            out.append(" ".join("".join(cur).split()))
            cur = []
        else:
            cur.append(ch)
    return out


def split_params(s):
    parts, cur, depth = [], [], 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return [] if parts == ["void"] else parts


class Header:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.raw = f.read()
        self.text = strip_comments(self.raw)
        self.int_typedefs = {}   # name -> C integer type
        self.fnptr_typedefs = set()
        self.structs = {}        # name -> [(field C type, name)]
        self.functions = {}      # name -> (return C type, [param C decl])
        self.constants = {}      # RR_* name -> int
        for m in re.finditer(r"^\s*#\s*define\s+(RR_\w+)\s+\(?\s*(-?(?:0x[0-9a-fA-F]+|\d+))[uUlL]*\s*\)?\s*$",
                             self.text, re.M):
            self.constants[m.group(1)] = int(m.group(2), 0)
        for st in statements(self.text):
            self._statement(st)

    def _statement(self, st):
        m = re.match(r"^(?:typedef\s+)?enum\s+(\w*)\s*(?::\s*\w+\s*)?\{(.*)\}\s*(\w*)$", st)
        if m:
            value = -1
            for item in m.group(2).split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, expr = item.partition("=")
                value = int(expr.strip().rstrip("uUlL"), 0) if expr.strip() else value + 1
                self.constants[name.strip()] = value
            for name in (m.group(1), m.group(3)):
                if name:
                    self.int_typedefs.setdefault(name, "enum")
            return
        m = re.match(r"^typedef\s+struct\s+(\w+)\s*\{(.*)\}\s*(\w+)$", st)
        if m:
            fields = []
            for decl in m.group(2).split(";"):
                decl = decl.strip()
                if decl:
                    fm = re.match(r"^(.*?)(\w+)\s*(\[\s*\d+\s*\])?$", decl)
                    fields.append(((fm.group(1) + (fm.group(3) or "")).strip(), fm.group(2)))
            self.structs[m.group(3)] = fields
            return
        if st.startswith("typedef"):
            m = re.match(r"^typedef\s+.*\(\s*\*\s*(\w+)\s*\)\s*\(.*\)$", st)
            if m:
                self.fnptr_typedefs.add(m.group(1))
                return
            m = re.match(r"^typedef\s+(?:const\s+)?(\w+)\s+(\w+)$", st)
            if m and m.group(1) in INT_TYPES:
                self.int_typedefs[m.group(2)] = m.group(1)
            return  # typedef struct X X; and the like
        m = re.match(r"^(.*?)\b(rr_\w+)\s*\((.*)\)$", st)
        if m:
            ret = re.sub(r"\bRR_[A-Z_]+(\s*\([^)]*\))?", " ", m.group(1))  # RR_MUST_USE...
            ret = re.sub(r"\b(extern|static|inline)\b", " ", ret)
            self.functions[m.group(2)] = (" ".join(ret.split()), split_params(m.group(3)))

    def kind(self, decl, has_name=True):
        """('void',) | ('int', size, signed) | ('ptr', depth, base) | ('fnptr',)
        | ('array', length, element kind)"""
        array = re.match(r"^(.*?)\[\s*(\d+)\s*\]$", decl)
        if array:
            return ("array", int(array.group(2)), self.kind(array.group(1), has_name))
        if re.search(r"\(\s*\*", decl):
            return ("fnptr",)
        tokens = re.findall(r"\w+|\*", decl)
        tokens = [t for t in tokens if t not in ("const", "struct", "enum", "volatile")]
        if has_name and len([t for t in tokens if t != "*"]) > 1 and tokens[-1] != "*":
            tokens = tokens[:-1]  # the parameter's name
        depth = tokens.count("*")
        base = " ".join(t for t in tokens if t != "*")
        if base == "unsigned int":
            base = "unsigned"
        base = self.int_typedefs.get(base, base)
        if depth:
            return ("ptr", depth, base)
        if base == "void":
            return ("void",)
        if base in self.fnptr_typedefs:
            return ("fnptr",)
        if base in INT_TYPES:
            return ("int",) + INT_TYPES[base]
        return ("unknown", base)


def ctypes_kind(t):
    if t is None:
        return ("void",)
    if isinstance(t, type) and issubclass(t, ctypes.Array):
        return ("array", t._length_, ctypes_kind(t._type_))
    if isinstance(t, type) and issubclass(t, ctypes._CFuncPtr):
        return ("fnptr",)
    depth = 0
    while isinstance(t, type) and issubclass(t, ctypes._Pointer):
        depth += 1
        t = t._type_
    if t is ctypes.c_char_p:
        return ("ptr", depth + 1, "char")
    if t is ctypes.c_void_p:
        return ("ptr", depth + 1, "void")
    if isinstance(t, type) and issubclass(t, ctypes._CFuncPtr):
        return ("ptr", depth, "fnptr")
    if isinstance(t, type) and issubclass(t, ctypes.Structure):
        return ("ptr", depth, t.__name__) if depth else ("struct", t.__name__)
    size = ctypes.sizeof(t)
    signed = t(-1).value == -1 if t is not ctypes.c_char else None
    if depth:
        return ("ptr", depth, ("int", size, signed))
    return ("int", size, signed)


def compatible(c, py, header):
    """Whether the header's kind `c` and the ctypes kind `py` agree."""
    if c[0] != py[0]:
        return False
    if c[0] in ("void", "fnptr"):
        return True
    if c[0] == "array":
        return c[1] == py[1] and compatible(c[2], py[2], header)
    if c[0] == "int":
        return c[1] == py[1] and (c[2] is None or py[2] is None or c[2] == py[2])
    if c[0] == "ptr":
        if c[1] != py[1]:
            return False
        cbase, pybase = c[2], py[2]
        if pybase == "void":  # c_void_p: any pointee at this depth
            return True
        if pybase == "char":  # c_char_p: bytes buffers and strings
            return cbase in ("char", "uint8_t", "int8_t")
        if isinstance(pybase, tuple):
            return cbase in INT_TYPES and INT_TYPES[cbase][0] == pybase[1] and (
                INT_TYPES[cbase][1] is None or pybase[2] is None or
                INT_TYPES[cbase][1] == pybase[2])
        return cbase == pybase
    return False


class HeaderTest(NoChildrenLeft):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(HEADER):
            raise AssertionError(f"{HEADER} is missing (generated by `make header`)")
        cls.h = Header(HEADER)

    def test_parser_found_the_interface(self):
        # Guards the parser itself: a regex that matched nothing would pass every check.
        self.assertGreaterEqual(len(self.h.functions), len(rr.DECLARATIONS) * 0.9,
                                sorted(self.h.functions))
        self.assertIn("rr_exec", self.h.functions)
        self.assertEqual(len(self.h.functions["rr_exec"][1]), 7)
        self.assertIn("rr_worker_info", self.h.structs)

    def test_every_header_function_is_declared(self):
        missing = sorted(set(self.h.functions) - set(rr.DECLARATIONS))
        self.assertEqual(missing, [], "functions of rr.h without a ctypes declaration in "
                                      "tests/python/rr.py")

    def test_every_declaration_is_in_the_header(self):
        extra = sorted(set(rr.DECLARATIONS) - set(self.h.functions))
        self.assertEqual(extra, [], "ctypes declarations of functions absent from rr.h")

    def signature_problems(self, declarations, lib, where):
        """What differs between rr.h and `declarations` (name: (restype, argtypes)),
        applied to `lib`; `where` names the file of the declarations."""
        problems = []
        for name, (ret, params) in sorted(self.h.functions.items()):
            if name not in declarations:
                continue
            restype, argtypes = declarations[name]
            fn = getattr(lib, name)
            if fn.restype is not restype or list(fn.argtypes or []) != list(argtypes):
                problems.append(f"{name}: declarations not applied to the library function")
            if len(params) != len(argtypes):
                problems.append(f"{name}: {len(params)} parameters in rr.h, "
                                f"{len(argtypes)} argtypes in {where}")
                continue
            c, py = self.h.kind(ret, has_name=False), ctypes_kind(restype)
            if not compatible(c, py, self.h):
                problems.append(f"{name}: returns {ret!r} {c} in rr.h, restype {py} in {where}")
            for i, (decl, t) in enumerate(zip(params, argtypes)):
                c, py = self.h.kind(decl), ctypes_kind(t)
                if not compatible(c, py, self.h):
                    problems.append(f"{name}: parameter {i} is {decl!r} {c} in rr.h, "
                                    f"{py} in {where}")
        return problems

    def struct_problems(self, module, where, required=True):
        """What differs between the structs of rr.h and the ctypes Structures of the
        same names in `module` (each must exist when `required`)."""
        problems = []
        for struct, fields in sorted(self.h.structs.items()):
            ours = getattr(module, struct, None)
            if not (isinstance(ours, type) and issubclass(ours, ctypes.Structure)):
                if required:
                    problems.append(f"{struct} of rr.h has no ctypes Structure in {where}")
                continue
            if [n for _, n in fields] != [n for n, _ in ours._fields_]:
                problems.append(f"{struct}: fields {[n for _, n in fields]} in rr.h, "
                                f"{[n for n, _ in ours._fields_]} in {where}")
                continue
            for (ctype, name), (_, t) in zip(fields, ours._fields_):
                if not compatible(self.h.kind(ctype, has_name=False), ctypes_kind(t), self.h):
                    problems.append(f"{struct}.{name}: {ctype} in rr.h, {t} in {where}")
        return problems

    def test_signatures_match(self):
        self.assertEqual(self.signature_problems(rr.DECLARATIONS, rr.lib, "rr.py"), [])

    def test_the_python_packages_declarations_match_too(self):
        # python/src/roadrunner_pool/_lib.py declares (a part of) the interface again, for
        # the package: checked against the header the same way, so that neither drifts.
        sys.path.insert(0, os.path.join(REPO, "python", "src"))
        try:
            from roadrunner_pool import _lib as package
        finally:
            sys.path.pop(0)
        where = "python/src/roadrunner_pool/_lib.py"
        extra = sorted(set(package.DECLARATIONS) - set(self.h.functions))
        self.assertEqual(extra, [], f"declarations in {where} of functions absent from rr.h")
        self.assertEqual(self.signature_problems(package.DECLARATIONS, package.lib, where), [])
        self.assertEqual(self.struct_problems(package, where, required=False), [])
        for struct in ("rr_pool_stats", "rr_worker_info", "rr_completion"):
            self.assertTrue(hasattr(package, struct), f"{where} names no {struct}: not checked")

    def test_struct_layouts(self):
        # Every struct of the header (rr_worker_info, rr_pool_stats, ...) has a ctypes
        # Structure of the same name with the same fields, in order, of compatible types.
        self.assertIn("rr_pool_stats", self.h.structs)
        self.assertEqual(self.struct_problems(rr, "rr.py"), [])

    def test_constants_match(self):
        ours = {k: v for k, v in vars(rr).items() if k.startswith(rr.CONSTANT_PREFIXES)}
        theirs = {k: v for k, v in self.h.constants.items()
                  if k.startswith(rr.CONSTANT_PREFIXES)}
        self.assertEqual(sorted(set(theirs) - set(ours)), [], "constants of rr.h missing in rr.py")
        self.assertEqual(sorted(set(ours) - set(theirs)), [], "constants of rr.py absent from rr.h")
        self.assertEqual({k: ours[k] for k in theirs}, theirs)

    def test_version(self):
        v = rr.lib.rr_version().decode()
        major, minor, patch = (self.h.constants[f"RR_VERSION_{p}"]
                               for p in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(v, f"{major}.{minor}.{patch}")
        with open(os.path.join(REPO, "Cargo.toml"), encoding="utf-8") as f:
            cargo = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
        self.assertEqual(v, cargo)

    def test_status_and_state_strings(self):
        for value, name in rr.STATUS_NAMES.items():
            s = rr.lib.rr_status_str(value)
            self.assertTrue(s, f"rr_status_str({name}) is empty")
        self.assertTrue(rr.lib.rr_status_str(12345))  # unknown: still a static string
        self.assertEqual(rr.lib.rr_worker_state_str(rr.RR_WORKER_STATE_READY), b"ready")
        self.assertEqual(rr.lib.rr_worker_state_str(rr.RR_WORKER_STATE_WORKING), b"working")
        for state in range(7):
            self.assertTrue(rr.lib.rr_worker_state_str(state))


if __name__ == "__main__":
    unittest.main()
