"""What a Python host did to itself does not reach its workers: Python ignores SIGPIPE
and SIGXFSZ, and a descriptor may be inheritable (os.set_inheritable, or one the
interpreter itself inherited)."""

import os
import signal
import tempfile
import unittest

from support import ServerCase, rr_test_worker_path


class WorkerStartTest(ServerCase):
    def test_a_worker_gets_default_signals_and_only_its_standard_streams(self):
        self.assertEqual(signal.getsignal(signal.SIGPIPE), signal.SIG_IGN, "Python ignores SIGPIPE")
        with tempfile.TemporaryDirectory() as d:
            fd = os.open(os.path.join(d, "host-only"), os.O_CREAT | os.O_RDONLY)
            self.addCleanup(os.close, fd)
            os.set_inheritable(fd, True)
            # The shell records what it was started with, then becomes the test worker.
            command = (f"sh -c '(cat /proc/$$/status) > {d}/status; (ls /proc/$$/fd) > {d}/fds; "
                       f"exec \"$0\" echo' '{rr_test_worker_path()}'")
            srv = self.server(command, num_workers=1)
            self.assertEqual(srv.exec(b"", b"up"), (b"", b"up"))
            srv.free()
            with open(os.path.join(d, "fds")) as f:
                self.assertEqual(sorted(int(x) for x in f.read().split()), [0, 1, 2])
            with open(os.path.join(d, "status")) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            self.assertEqual(int(fields["SigBlk"], 16), 0)
            ignored = int(fields["SigIgn"], 16)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ):
                self.assertFalse(ignored & (1 << (sig - 1)), f"{sig!r} ignored in the worker: {ignored:#x}")


if __name__ == "__main__":
    unittest.main()
