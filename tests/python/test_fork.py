"""A Python host that forks (as multiprocessing's "fork" start method does) while it has
a server: the child must leave the parent's server alone and may make its own."""

import os
import select
import signal
import unittest

import rr
from support import ServerCase, rr_test_worker_command


def run_in_child(check):
    """Runs check() in a forked child; returns what it reported ("ok" or the failure)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            check()
            report = "ok"
        except BaseException as e:  # everything goes back to the parent
            report = f"{type(e).__name__}: {e}"
        os.write(write_end, report.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        # A child that hangs is killed after 30 s rather than holding up the suite.
        if not select.select([pipe], [], [], 30)[0]:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "the child hung (killed after 30 s)"
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        return f"the child ended with status {status:#x}"
    return report


class ForkTest(ServerCase):
    def test_a_forked_child_cannot_use_the_parents_server(self):
        srv = self.server(num_workers=2)
        before = sorted(w["pid"] for w in srv.workers())

        def in_child():
            for name, call in (("exec", lambda: srv.exec(b"", b"from the child")),
                               ("stats", srv.stats),
                               ("workers", srv.workers)):
                try:
                    call()
                except rr.RRError as e:
                    if e.status != rr.RR_STATUS_STATE or "fork()" not in str(e):
                        raise AssertionError(f"{name}: {e}")
                else:
                    raise AssertionError(f"{name} succeeded in the forked child")
            srv.free()  # returns at once, stops nothing

        self.assertEqual(run_in_child(in_child), "ok")
        self.assertEqual(sorted(w["pid"] for w in srv.workers()), before)
        for i in range(10):
            self.assertEqual(srv.exec(b"c", b"after %d" % i), (b"c", b"after %d" % i))
        stats = srv.stats()
        self.assertEqual((stats["worker_errors"], stats["retired_died"]), (0, 0), stats)

    def test_a_forked_child_can_make_its_own_server(self):
        srv = self.server(num_workers=1)
        parents = [w["pid"] for w in srv.workers()]

        def in_child():
            with rr.Server.create(rr_test_worker_command(), num_workers=1) as own:
                own.start()
                if own.exec(b"", b"child's own") != (b"", b"child's own"):
                    raise AssertionError("wrong answer")
                mine = [w["pid"] for w in own.workers()]
                if set(mine) & set(parents):
                    raise AssertionError(f"the child's server has the parent's workers {mine}")

        self.assertEqual(run_in_child(in_child), "ok")
        self.assertEqual(srv.exec(b"", b"still mine"), (b"", b"still mine"))


if __name__ == "__main__":
    unittest.main()
