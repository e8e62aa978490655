"""The README's first programs (C, C++, Python, Go) are the files `make test` runs:
each file must appear in README.md as a fenced block, character for character."""

import os
import re
import unittest

from support import REPO

PROGRAMS = {
    "c": "examples-c/hello.c",
    "cpp": "tests/cpp/hello.cpp",
    "python": "python/example.py",
    "go": "go/example/hello/main.go",
}


class ReadmeProgramsTest(unittest.TestCase):
    def test_each_program_is_shown_as_it_is_run(self):
        with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        blocks = re.findall(r"^```(\w+)\n(.*?)^```$", readme, re.M | re.S)
        for language, path in PROGRAMS.items():
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                program = f.read()
            shown = [body for lang, body in blocks if lang == language]
            self.assertIn(program, shown, f"README.md does not show {path} as it is")


if __name__ == "__main__":
    unittest.main()
