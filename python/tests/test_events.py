"""Server.on_event: the events of a pool, as Event tuples, on a library thread."""

import contextlib
import io
import threading
import unittest

import roadrunner_pool as rp
from support import PoolCase, wait_until


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


if __name__ == "__main__":
    unittest.main()
