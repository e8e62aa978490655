""".ci/test-deps, which `make test` runs first: it installs from Debian what the tests
need (as root, or through `sudo -n`) or stops naming the one command to run.

The script runs with PATH set to a temporary directory of stubs only: a stub for each
program the tests use (present or absent as a case needs), and stub `apt-get` and `sudo`
that append their arguments to a log, so nothing is really installed. The stub apt-get
"installs" a package by creating the stubs of its programs. Bash itself is run by its
absolute path; the script needs no other program when told its user id (RR_DEPS_UID).
"""

import os
import shlex
import shutil
import subprocess
import tempfile
import unittest

from support import REPO, NoChildrenLeft

SCRIPT = os.path.join(REPO, ".ci", "test-deps")
BASH = shutil.which("bash") or "/bin/bash"
CHMOD = shutil.which("chmod") or "/bin/chmod"
MAKE = shutil.which("make")

# Each program the script looks for (under its default name) and the Debian package the
# script must ask for when it is missing; cargo is no Debian package (Rust is a given).
PACKAGE_OF = {
    "php": "php-cli", "go": "golang-go", "pkg-config": "pkg-config",
    "valgrind": "valgrind", "cc": "gcc", "gcc": "gcc", "g++": "g++",
    "python3": "python3", "readelf": "binutils", "nm": "binutils", "cargo": None,
}

APT_GET_STUB = r"""
printf 'apt-get %s (DEBIAN_FRONTEND=%s)\n' "$*" "${DEBIAN_FRONTEND-}" >> @LOG@
[ "$1" = install ] || exit 0
shift
if [ -n "${STUB_APT_FAIL-}" ]; then
    echo 'E: Unable to locate package' >&2
    exit 100
fi
for package in "$@"; do
    case $package in
        -*) continue;;
@CASES@
        *) echo "E: Unable to locate package $package" >&2; exit 100;;
    esac
    for file in "${files[@]}"; do
        printf '#!/bin/sh\nexit 0\n' > "$file"
        @CHMOD@ +x "$file"
    done
done
"""

SUDO_STUB = r"""
printf 'sudo %s\n' "$*" >> @LOG@
if [ "$1" != -n ]; then
    echo 'stub sudo: called without -n: real sudo could ask for a password' >&2
    exit 1
fi
shift
if [ -n "${STUB_SUDO_NEEDS_PASSWORD-}" ]; then
    echo 'sudo: a password is required' >&2
    exit 1
fi
while [[ $1 == *=* ]]; do export "$1"; shift; done
exec "$@"
"""

APT_FRONTEND = "(DEBIAN_FRONTEND=noninteractive)"
INSTALL = "install -y --no-install-recommends"


class StubMachine:
    """A temporary directory standing for the machine: bin/ (the only PATH entry), the
    call log, the CA bundle. Every program of PACKAGE_OF is there until removed."""

    def __init__(self, testcase):
        tmp = tempfile.TemporaryDirectory(prefix="rr-test-deps-")
        testcase.addCleanup(tmp.cleanup)
        self.root = tmp.name
        self.bin = os.path.join(self.root, "bin")
        self.log = os.path.join(self.root, "calls.log")
        self.ca_bundle = os.path.join(self.root, "ca-certificates.crt")
        # Where the stub apt-get notes python3-venv installed (see python_without_venv).
        self.venv_marker = os.path.join(self.root, "python3-venv-installed")
        os.mkdir(self.bin)
        with open(self.ca_bundle, "w") as f:
            f.write("stub certificates\n")
        for program in PACKAGE_OF:
            self.add_program(program)
        self.add_program("true")  # what the script asks sudo to run, to see if it may
        self.write_stub("apt-get", self.apt_get_stub())
        self.write_stub("sudo", self.sudo_stub())

    def write_stub(self, name, body, directory=None):
        path = os.path.join(directory or self.bin, name)
        with open(path, "w") as f:
            f.write(f"#!{BASH}\n{body}")
        os.chmod(path, 0o755)
        return path

    def add_program(self, name, directory=None):
        return self.write_stub(name, "exit 0\n", directory)

    def python_without_venv(self):
        """Makes python3 a Debian python3 without python3-venv: `python3 -c ...` (the
        script's check for venv and ensurepip) fails until apt-get installed python3-venv."""
        self.write_stub("python3", f'[ "$1" != -c ] || [ -e {shlex.quote(self.venv_marker)} ]\n')

    def remove(self, *names):
        for name in names:
            os.unlink(os.path.join(self.bin, name))

    def has(self, name):
        return os.access(os.path.join(self.bin, name), os.X_OK)

    def apt_get_stub(self):
        """Logs each call; `install` creates the stubs of the packages' programs (the CA
        bundle for ca-certificates), or fails when STUB_APT_FAIL is set."""
        cases = []
        for package in sorted({p for p in PACKAGE_OF.values() if p}):
            files = " ".join(shlex.quote(os.path.join(self.bin, name))
                             for name, p in PACKAGE_OF.items() if p == package)
            cases.append(f"        {package}) files=({files});;")
        cases.append(f"        ca-certificates) echo stub > {shlex.quote(self.ca_bundle)}; continue;;")
        cases.append(f"        python3-venv) echo stub > {shlex.quote(self.venv_marker)}; continue;;")
        return (APT_GET_STUB.replace("@LOG@", shlex.quote(self.log))
                .replace("@CHMOD@", shlex.quote(CHMOD)).replace("@CASES@", "\n".join(cases)))

    def sudo_stub(self):
        """Logs each call; fails as sudo -n does when a password is needed (when
        STUB_SUDO_NEEDS_PASSWORD is set); otherwise runs the command with the VAR=value
        settings given before it, as real sudo does."""
        return SUDO_STUB.replace("@LOG@", shlex.quote(self.log))

    def calls(self):
        try:
            with open(self.log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def run(self, uid=0, args=(), **env):
        """Runs the script as user `uid`, with only the stubs on PATH and `env` added;
        returns the CompletedProcess (text)."""
        full_env = {"PATH": self.bin, "RR_DEPS_UID": str(uid),
                    "RR_DEPS_CA_BUNDLE": self.ca_bundle}
        full_env.update(env)
        return subprocess.run([BASH, SCRIPT, *args], env=full_env, capture_output=True,
                              text=True, timeout=60)


class TestDepsCase(NoChildrenLeft):
    def setUp(self):
        super().setUp()
        self.machine = StubMachine(self)

    def output(self, result):
        return f"exit {result.returncode}\nstdout:\n{result.stdout}stderr:\n{result.stderr}"

    def assertSucceeded(self, result):
        self.assertEqual(result.returncode, 0, self.output(result))

    def assertFailed(self, result):
        self.assertNotEqual(result.returncode, 0, self.output(result))

    def command_lines(self, result):
        """The lines of the output that are an apt-get install command for a human."""
        return [line for line in (result.stdout + result.stderr).splitlines()
                if "apt-get install" in line]


class NothingMissingTest(TestDepsCase):
    def test_everything_there_installs_nothing(self):
        for uid in (0, 1000):
            result = self.machine.run(uid=uid)
            self.assertSucceeded(result)
            self.assertEqual(self.machine.calls(), [], "apt-get or sudo was called")

    def test_variables_pointing_elsewhere_are_honoured(self):
        # php and go are not on PATH, but the Makefile's PHP and GO name programs that
        # exist (PHP with an argument, as a Makefile may set it): nothing to install.
        self.machine.remove("php", "go")
        elsewhere = os.path.join(self.machine.root, "elsewhere")
        os.mkdir(elsewhere)
        php = self.machine.add_program("php8.2", elsewhere)
        go = self.machine.add_program("go1.19", elsewhere)
        result = self.machine.run(PHP=f"{php} -d display_errors=stderr", GO=go)
        self.assertSucceeded(result)
        self.assertEqual(self.machine.calls(), [])

    def test_variables_are_checked_not_the_default_names(self):
        # php is on PATH, but PHP names another program, which is missing.
        result = self.machine.run(uid=1000, STUB_SUDO_NEEDS_PASSWORD="1", PHP="php8.2")
        self.assertFailed(result)
        self.assertIn("PHP=php8.2", result.stderr)
        self.assertEqual(len(self.command_lines(result)), 1, self.output(result))
        self.assertIn("php-cli", self.command_lines(result)[0])


class InstallTest(TestDepsCase):
    def test_a_python_without_venv_gets_python3_venv(self):
        self.machine.python_without_venv()
        result = self.machine.run(uid=0)
        self.assertSucceeded(result)
        self.assertEqual(self.machine.calls(), [
            f"apt-get update {APT_FRONTEND}",
            f"apt-get {INSTALL} python3-venv {APT_FRONTEND}",
        ])
        # Not root and no sudo: the command to run names it.
        os.unlink(self.machine.venv_marker)
        result = self.machine.run(uid=1000, STUB_SUDO_NEEDS_PASSWORD="1")
        self.assertFailed(result)
        self.assertIn("python3-venv", self.command_lines(result)[0])

    def test_root_installs_only_what_is_missing(self):
        self.machine.remove("php", "go")
        result = self.machine.run(uid=0)
        self.assertSucceeded(result)
        self.assertEqual(self.machine.calls(), [
            f"apt-get update {APT_FRONTEND}",
            f"apt-get {INSTALL} php-cli golang-go {APT_FRONTEND}",
        ])
        self.assertIn("installing php-cli golang-go", result.stdout)
        self.assertTrue(self.machine.has("php") and self.machine.has("go"))

    def test_one_package_for_several_programs(self):
        self.machine.remove("cc", "gcc", "readelf", "nm")
        result = self.machine.run(uid=0)
        self.assertSucceeded(result)
        self.assertEqual(self.machine.calls()[1:],
                         [f"apt-get {INSTALL} gcc binutils {APT_FRONTEND}"])

    def test_missing_ca_certificates_are_installed(self):
        os.unlink(self.machine.ca_bundle)
        result = self.machine.run(uid=0)
        self.assertSucceeded(result)
        self.assertEqual(self.machine.calls()[1:],
                         [f"apt-get {INSTALL} ca-certificates {APT_FRONTEND}"])

    def test_not_root_goes_through_sudo_without_a_password(self):
        self.machine.remove("php", "go")
        result = self.machine.run(uid=1000)
        self.assertSucceeded(result)
        sudo = "sudo -n DEBIAN_FRONTEND=noninteractive apt-get"
        self.assertEqual(self.machine.calls(), [
            "sudo -n true",
            f"{sudo} update",
            f"apt-get update {APT_FRONTEND}",
            f"{sudo} {INSTALL} php-cli golang-go",
            f"apt-get {INSTALL} php-cli golang-go {APT_FRONTEND}",
        ])
        self.assertTrue(self.machine.has("php") and self.machine.has("go"))

    def test_substitute_apt_get_and_sudo(self):
        # RR_DEPS_APT_GET and RR_DEPS_SUDO name the programs to run instead.
        self.machine.remove("php")
        os.rename(os.path.join(self.machine.bin, "apt-get"),
                  os.path.join(self.machine.bin, "my-apt-get"))
        os.rename(os.path.join(self.machine.bin, "sudo"), os.path.join(self.machine.bin, "my-sudo"))
        result = self.machine.run(uid=1000, RR_DEPS_APT_GET="my-apt-get", RR_DEPS_SUDO="my-sudo")
        self.assertSucceeded(result)
        self.assertIn(f"sudo -n DEBIAN_FRONTEND=noninteractive my-apt-get {INSTALL} php-cli",
                      self.machine.calls())

    def test_extra_requirements_from_the_command_line(self):
        # .ci/run asks for make this way; make=make is installed with the rest.
        self.machine.remove("php")
        self.machine.write_stub("apt-get", "printf '%s\\n' \"$*\" >> "
                                f"{shlex.quote(self.machine.log)}\n")
        result = self.machine.run(uid=0, args=["make=make"])
        # The stub installed nothing, so this is a failure; the request is what counts.
        self.assertFailed(result)
        self.assertIn(f"{INSTALL} php-cli make", self.machine.calls())
        self.assertFailed(self.machine.run(args=["make"]))


class CannotInstallTest(TestDepsCase):
    def assertOneCommandForBoth(self, result, starts_with):
        self.assertFailed(result)
        lines = self.command_lines(result)
        self.assertEqual(len(lines), 1, f"not exactly one command line:\n{self.output(result)}")
        self.assertTrue(lines[0].startswith(starts_with), lines[0])
        self.assertIn(f"{INSTALL} php-cli golang-go", lines[0])
        self.assertNotIn("apt-get", " ".join(self.machine.calls()), "apt-get was run")

    def test_not_root_and_sudo_needs_a_password(self):
        self.machine.remove("php", "go")
        result = self.machine.run(uid=1000, STUB_SUDO_NEEDS_PASSWORD="1")
        self.assertOneCommandForBoth(result, "sudo apt-get update && sudo apt-get install")
        self.assertEqual(self.machine.calls(), ["sudo -n true"])
        self.assertFalse(self.machine.has("php"))

    def test_not_root_and_no_sudo(self):
        self.machine.remove("php", "go", "sudo")
        result = self.machine.run(uid=1000)
        self.assertOneCommandForBoth(result, "su -c 'apt-get update && apt-get install")
        self.assertEqual(self.machine.calls(), [])

    def test_failed_install_is_an_error(self):
        self.machine.remove("php", "go")
        result = self.machine.run(uid=0, STUB_APT_FAIL="1")
        self.assertFailed(result)
        self.assertIn("failed", result.stderr)
        self.assertIn("php-cli golang-go", result.stderr)
        self.assertFalse(self.machine.has("php"))

    def test_program_still_missing_after_the_install_is_an_error(self):
        # PHP names a program php-cli does not install: installing is not enough.
        result = self.machine.run(uid=0, PHP="/nonexistent/php")
        self.assertFailed(result)
        self.assertEqual(self.machine.calls()[1:], [f"apt-get {INSTALL} php-cli {APT_FRONTEND}"])
        self.assertIn("still missing", result.stderr)
        self.assertIn("PHP=/nonexistent/php", result.stderr)

    def test_missing_cargo_is_named(self):
        self.machine.remove("cargo")
        result = self.machine.run(uid=0)
        self.assertFailed(result)
        self.assertIn("rustup", result.stderr)
        self.assertEqual(self.machine.calls(), [])


@unittest.skipUnless(MAKE, "make is not installed")
class MakeTestOrderTest(NoChildrenLeft):
    """`make test` runs test-deps before building anything, even with -j. The Makefile is
    run in a copy of the few files it reads, with a CARGO that only prints, so nothing is
    built here."""

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory(prefix="rr-test-deps-make-")
        self.addCleanup(tmp.cleanup)
        self.dir = tmp.name
        for path in ("Makefile", "Cargo.toml", os.path.join("bench", "bench.mk"),
                     os.path.join("tests", "cpp", "cpp.mk"), os.path.join(".ci", "test-deps")):
            os.makedirs(os.path.join(self.dir, os.path.dirname(path)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, path), os.path.join(self.dir, path))
        with open(os.path.join(self.dir, "ca.crt"), "w") as f:
            f.write("stub\n")
        self.true = shutil.which("true")

    def output(self, result):
        return f"exit {result.returncode}\nstdout:\n{result.stdout}stderr:\n{result.stderr}"

    def make_test(self, *variables):
        # Not the make flags of the `make test-python` that may be running this.
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
        # Nothing is really installed: not root, and no sudo.
        no_install = ["RR_DEPS_UID=1000", "RR_DEPS_SUDO=/nonexistent/sudo"]
        return subprocess.run(
            [MAKE, "-j4", "test", "CARGO=echo CARGO RAN", f"RR_DEPS_CA_BUNDLE={self.dir}/ca.crt",
             *no_install, *variables],
            cwd=self.dir, env=env, capture_output=True, text=True, timeout=120)

    def test_failing_test_deps_stops_before_the_build(self):
        result = self.make_test("PHP=/nonexistent/php")
        out = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, self.output(result))
        self.assertIn("apt-get install -y --no-install-recommends php-cli", out)
        self.assertNotIn("CARGO RAN", out)

    def test_build_starts_after_test_deps(self):
        # Every program the tests run is there (`true` stands for each); the build then
        # starts, and fails at once in this copy, which has no sources.
        result = self.make_test(*(f"{var}={self.true}" for var in (
            "PHP", "GO", "PYTHON", "VALGRIND", "PKG_CONFIG", "CC", "CXX")))
        out = result.stdout
        self.assertIn("test-deps: everything the tests run is there", out, self.output(result))
        self.assertIn("CARGO RAN", out, self.output(result))
        self.assertLess(out.index("test-deps: everything"), out.index("CARGO RAN"), out)


if __name__ == "__main__":
    unittest.main()
