"""Build of the roadrunner-pool wheel: the Rust crate one directory up (../Cargo.toml) is
built with cargo by setuptools-rust and its cdylib goes into the package as
roadrunner_pool/libroadrunner<EXT_SUFFIX> (loaded with ctypes by roadrunner_pool._lib).

Build from a checkout of the repository: `pip install ./python`. Cargo builds into the
repository's target/python (CARGO_TARGET_DIR overrides it), setuptools into a directory
of target/python-build that is removed after the build: nothing is left in python/.
"""

import os
import re
import shutil
import tempfile

from setuptools import setup
from setuptools_rust import Binding, RustExtension, Strip

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CARGO_TOML = os.path.join(REPO, "Cargo.toml")
BUILD_ROOT = os.path.join(REPO, "target", "python-build")


def crate_version():
    """The version of the crate: one version for the library and the package."""
    with open(CARGO_TOML, encoding="utf-8") as f:
        text = f.read()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    m = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M)
    if m is None:
        raise RuntimeError(f"no version in the [package] of {CARGO_TOML}")
    return m.group(1)


if not os.path.exists(CARGO_TOML):
    raise RuntimeError(f"{CARGO_TOML} not found: build roadrunner-pool from a checkout of the "
                       "libroadrunner repository (pip install ./python)")
# A fresh setuptools build directory for each run, removed at its end: a file removed from
# src/ cannot come back from an earlier build into the wheel, and two builds at once do not
# share one.
os.makedirs(BUILD_ROOT, exist_ok=True)
BUILD = tempfile.mkdtemp(prefix="build-", dir=BUILD_ROOT)
# Cargo's own directory for this build, inside the repository's (git-ignored) target/: not
# target/release, whose cdylib-only build would make `make lib` rebuild the crate, and
# whose libroadrunner.so other tests load while this runs.
os.environ.setdefault("CARGO_TARGET_DIR", os.path.join(REPO, "target", "python"))

try:
    setup(
        version=crate_version(),
        rust_extensions=[
            RustExtension(
                "roadrunner_pool.libroadrunner",
                path=CARGO_TOML,
                binding=Binding.NoBinding,
                py_limited_api=False,
                # The release profile keeps line tables (debug = 1) for the repository's own
                # builds; the wheel's copy drops them (symbols stay, for backtraces).
                strip=Strip.Debug,
            )
        ],
        options={
            "build": {"build_base": BUILD},
            "egg_info": {"egg_base": BUILD},
        },
    )
finally:
    shutil.rmtree(BUILD, ignore_errors=True)
