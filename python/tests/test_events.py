"""Server.on_event: the events of a pool, as Event tuples, on a library thread."""

import contextlib
import io
import os
import re
import threading
import unittest

import roadrunner_pool as rp
from support import REPO, PoolCase, wait_until


class EventsTest(PoolCase):
    def test_life_cycle_events(self):
        srv = self.server(num_workers=2, start=False)
        events = []
        threads = set()

        def on_event(e):
            events.append(e)
            threads.add(threading.get_ident())

        srv.on_event(on_event)
        srv.start()
        pids = {w.pid for w in srv.workers()}
        wait_until(lambda: {e.pid for e in list(events)
                            if e.type == rp.EventType.WORKER_CONSTRUCT} == pids,
                   what="a WORKER_CONSTRUCT per worker", state=lambda: events)
        wait_until(lambda: rp.EventType.SERVER_START in [e.type for e in list(events)],
                   what="SERVER_START", state=lambda: events)
        self.assertTrue(all(isinstance(e, rp.Event) for e in events))
        self.assertNotIn(threading.get_ident(), threads, "a callback ran on the caller's thread")
        # A worker's stderr line, with its pid.
        pid = int(srv.exec(b"", b"!pid").body)
        srv.exec(b"", b"!stderr:hello from the worker")
        wait_until(lambda: any(e.type == rp.EventType.WORKER_STDERR
                               and e.message == "hello from the worker" for e in list(events)),
                   what="the stderr event", state=lambda: events)
        # A crash: WORKER_ERROR about that pid.
        with self.assertRaises(rp.WorkerError):
            srv.exec(b"", b"!crash")
        wait_until(lambda: [e for e in list(events) if e.type == rp.EventType.WORKER_ERROR
                            and e.pid in pids], what="WORKER_ERROR", state=lambda: events)
        srv.stop()
        wait_until(lambda: rp.EventType.SERVER_STOP in [e.type for e in list(events)],
                   what="SERVER_STOP")
        self.assertIn(pid, pids)

    def test_replace_unregister_and_a_raising_callback(self):
        srv = self.server(num_workers=1)
        first, second = [], []
        srv.on_event(first.append)
        srv.exec(b"", b"!stderr:one")
        wait_until(lambda: any(e.message == "one" for e in list(first)), what="event one")

        def broken(e):
            second.append(e)
            raise RuntimeError("a bug in the callback")

        srv.on_event(broken)  # replaces: `first` gets nothing more
        n_first = len(first)
        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            srv.exec(b"", b"!stderr:two")
            srv.exec(b"", b"!stderr:three")  # the exception did not stop the events
            wait_until(lambda: [e.message for e in list(second)
                                if e.type == rp.EventType.WORKER_STDERR] == ["two", "three"],
                       what="events two and three", state=lambda: second)
            srv.on_event(None)  # waits until the callback is not running
        self.assertEqual(captured.getvalue().count("RuntimeError: a bug in the callback"),
                         len(second))
        self.assertEqual(len(first), n_first)
        n_second = len(second)
        srv.reset()  # events that nobody receives
        srv.exec(b"", b"!stderr:four")
        self.assertEqual(srv.exec(b"still").body, b"still")
        self.assertEqual(len(second), n_second)

    def test_close_from_a_callback_is_refused(self):
        srv = self.server(num_workers=1)
        outcome = []

        def on_event(e):
            if e.type == rp.EventType.WORKER_STDERR:
                try:
                    srv.close()
                except rp.StateError as err:
                    outcome.append(err)

        srv.on_event(on_event)
        srv.exec(b"", b"!stderr:go")
        wait_until(lambda: outcome, what="the refused close")
        self.assertFalse(srv.closed)
        self.assertEqual(srv.exec(b"alive").body, b"alive")

    def test_a_reconfigure_with_another_relay_reports_what_it_ignored(self):
        srv = self.server(num_workers=2)
        events = []
        srv.on_event(events.append)
        srv.reconfigure(relay="tcp://127.0.0.1:7123", num_workers=1)
        ignored = wait_until(lambda: [e for e in list(events)
                                      if e.type == rp.EventType.RECONFIGURE_IGNORED],
                             what="RECONFIGURE_IGNORED", state=lambda: events)
        self.assertEqual(len(ignored), 1)
        self.assertIs(type(ignored[0].type), rp.EventType)
        self.assertEqual(ignored[0].pid, -1)
        self.assertIn("127.0.0.1:7123", ignored[0].message)
        # The server kept its relay; the rest was applied.
        self.assertEqual(srv.relay, "pipes")
        self.assertEqual(srv.status()["relay"], "pipes")
        self.assertEqual(len(srv.workers()), 1)
        self.assertEqual(srv.exec(b"over pipes").body, b"over pipes")

    def test_remove_worker_reports_worker_removed(self):
        srv = self.server(num_workers=2)
        events = []
        srv.on_event(events.append)
        pid = srv.workers()[0].pid
        srv.remove_worker(pid)
        removed = wait_until(lambda: [e for e in list(events)
                                      if e.type == rp.EventType.WORKER_REMOVED],
                             what="WORKER_REMOVED", state=lambda: events)
        self.assertEqual([e.pid for e in removed], [pid])
        self.assertIs(type(removed[0].type), rp.EventType)


class EventTypeTest(unittest.TestCase):
    def test_every_event_type_of_rr_h(self):
        with open(os.path.join(REPO, "include", "rr.h"), encoding="utf-8") as f:
            defined = {name: int(value) for name, value in
                       re.findall(r"^#define RR_EVENT_(\w+) (\d+)$", f.read(), re.M)}
        self.assertGreaterEqual(len(defined), 22)
        self.assertEqual({t.name: t.value for t in rp.EventType}, defined)
        self.assertEqual(rp.EventType.WORKER_REMOVED, 310)


if __name__ == "__main__":
    unittest.main()
