"""Events through a Python callback (CFUNCTYPE), and the userdata_free contract."""

import unittest

import rr
from support import ServerCase, children, wait_until


class EventsTest(ServerCase):
    def assertNoCallbackErrors(self, listener):
        self.assertEqual(listener.callback_errors, [])

    def test_lifecycle_events(self):
        listener = rr.Listener()
        srv = self.server(num_workers=2, listener=listener)
        pids = {w["pid"] for w in srv.workers()}
        self.assertEqual(len(pids), 2)

        wait_until(lambda: listener.of_type(rr.RR_EVENT_SERVER_START),
                   what="RR_EVENT_SERVER_START")
        wait_until(lambda: {e.pid for e in listener.of_type(rr.RR_EVENT_WORKER_CONSTRUCT)}
                   >= pids, what=f"RR_EVENT_WORKER_CONSTRUCT for {pids}")
        for e in listener.of_type(rr.RR_EVENT_SERVER_START):
            self.assertEqual(e.pid, -1)

        srv.stop()
        wait_until(lambda: listener.of_type(rr.RR_EVENT_SERVER_STOP),
                   what="RR_EVENT_SERVER_STOP")
        gone = {rr.RR_EVENT_WORKER_DESTRUCT, rr.RR_EVENT_WORKER_KILL}
        wait_until(lambda: {e.pid for e in listener.snapshot() if e.type in gone} >= pids,
                   what=f"destruct or kill events for {pids}")

        types = [e.type for e in listener.snapshot()]
        self.assertLess(types.index(rr.RR_EVENT_SERVER_START),
                        types.index(rr.RR_EVENT_SERVER_STOP))
        self.assertEqual(listener.max_concurrent, 1, "callback calls overlapped")
        self.assertEqual(listener.freed, 0)
        srv.free()
        self.assertEqual(listener.freed, 1)
        self.assertEqual(listener.freed_userdata, [listener.userdata])
        n = len(listener.snapshot())
        self.assertNoCallbackErrors(listener)
        srv.free()  # the wrapper's second free is a no-op: no second userdata_free
        self.assertEqual(listener.freed, 1)
        self.assertEqual(len(listener.snapshot()), n, "a callback ran after rr_server_free")

    def test_stderr_lines_become_events(self):
        listener = rr.Listener()
        srv = self.server(num_workers=1, listener=listener)
        pid = srv.workers()[0]["pid"]
        self.assertEqual(srv.exec(b"!stderr:hello from stderr 4417", b"x"),
                         (b"!stderr:hello from stderr 4417", b"x"))
        ev = wait_until(lambda: [e for e in listener.snapshot()
                                 if e.message and "hello from stderr 4417" in e.message],
                        what="the stderr event")[0]
        self.assertEqual(ev.pid, pid)
        self.assertEqual(ev.type, rr.RR_EVENT_WORKER_STDERR)
        self.assertNoCallbackErrors(listener)

    def test_worker_exiting_on_its_own_is_reported_and_replaced(self):
        listener = rr.Listener()
        srv = self.server(num_workers=1, listener=listener)
        pid = srv.workers()[0]["pid"]
        self.assertEqual(srv.exec(b"!exit", b"bye"), (b"!exit", b"bye"))
        wait_until(lambda: any(e.pid == pid for e in listener.of_type(rr.RR_EVENT_WORKER_DEAD)),
                   what=f"RR_EVENT_WORKER_DEAD for {pid}")
        # Replaced without a task having to fail first.
        new = wait_until(lambda: [w["pid"] for w in srv.workers() if w["pid"] != pid],
                         what="a replacement worker",
                         state=lambda: (srv.workers(), listener.snapshot(), children()))
        wait_until(lambda: set(children()) == set(new), what="the dead worker reaped")
        self.assertEqual(srv.exec(b"!pid", b"")[1], str(new[0]).encode())
        self.assertNoCallbackErrors(listener)

    def test_crash_reports_a_worker_error_event(self):
        listener = rr.Listener()
        srv = self.server(num_workers=1, listener=listener)
        pid = srv.workers()[0]["pid"]
        self.assertRRError(rr.RR_STATUS_WORKER_ERROR, srv.exec, b"!crash", b"")
        wait_until(lambda: any(e.pid == pid for e in listener.snapshot()
                               if e.type in (rr.RR_EVENT_WORKER_ERROR, rr.RR_EVENT_WORKER_DEAD)),
                   what=f"an error or dead event for {pid}")

    def test_replacing_and_unregistering_call_userdata_free_once(self):
        a, b = rr.Listener(), rr.Listener()
        srv = self.server(num_workers=1, start=False)
        srv.listen(a)
        srv.listen(b)  # replaces a
        wait_until(lambda: a.freed == 1, what="userdata_free of the replaced callback")
        self.assertEqual(a.freed_userdata, [a.userdata])
        self.assertEqual(b.freed, 0)
        srv.start()
        wait_until(lambda: b.of_type(rr.RR_EVENT_SERVER_START), what="events reach b")
        self.assertEqual(a.of_type(rr.RR_EVENT_SERVER_START), [])
        srv.listen(None)  # unregisters b
        wait_until(lambda: b.freed == 1, what="userdata_free of the unregistered callback")
        srv.free()
        self.assertEqual((a.freed, b.freed), (1, 1))
        self.assertNoCallbackErrors(a)
        self.assertNoCallbackErrors(b)

    def test_userdata_free_on_a_server_never_started(self):
        listener = rr.Listener()
        srv = self.server(start=False, listener=listener)
        srv.free()
        self.assertEqual(listener.freed, 1)
        self.assertEqual(listener.snapshot(), [])

    def test_callback_sees_reconfigured_pool(self):
        listener = rr.Listener()
        srv = self.server(num_workers=1, listener=listener)
        srv.reset()
        new_pid = srv.workers()[0]["pid"]
        wait_until(lambda: any(e.pid == new_pid
                               for e in listener.of_type(rr.RR_EVENT_WORKER_CONSTRUCT)),
                   what="construct event of the reset pool's worker")
        self.assertEqual(srv.exec(b"!stderr:after-reset-99", b""), (b"!stderr:after-reset-99", b""))
        wait_until(lambda: any(e.pid == new_pid and e.message and "after-reset-99" in e.message
                               for e in listener.snapshot()),
                   what="stderr event from the reset pool")


if __name__ == "__main__":
    unittest.main()
