"""The completion queue (rr_queue_*, rr_exec_submit) driven by an asyncio event loop.

The queue's descriptor is watched with `loop.add_reader`; its callback drains
rr_queue_next(q, 0) and resolves one asyncio.Future per tag. A task awaited through
asyncio and cancelled there (Task.cancel, asyncio.wait_for's timeout) calls
rr_queue_cancel for its tag; its completion still comes, with RR_STATUS_CANCELLED.
Every test ends with the reader removed, the queue freed and no worker process left.
"""

import asyncio
import itertools
import select
import time
import unittest

import rr
from support import ServerCase, children, wait_until


class AsyncQueue:
    """An rr.Queue seen from asyncio: `await run(server, context, body)` gives the answer's
    (context, body) or raises the task's RRError.

    Every task has its own tag and its own future (`completions[tag]`), resolved with the
    task's rr.Completion by the reader callback. `run` awaits it shielded: a cancelled run
    cancels the task with rr_queue_cancel, and its completion still arrives in that future
    (the tests check it)."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = rr.Queue()
        self.fd = self.queue.fd()
        self.tags = itertools.count(1)
        self.completions = {}  # tag -> Future resolved with that task's Completion
        self.unexpected = []   # completions for a tag we never submitted, or came twice
        self.wakeups = 0
        self.closed = False
        loop.add_reader(self.fd, self._on_readable)

    def _on_readable(self):
        self.wakeups += 1
        for c in self.queue.drain():
            fut = self.completions.get(c.tag)
            if fut is None or fut.done():
                self.unexpected.append(c)
            else:
                fut.set_result(c)

    def submit(self, server, context=b"", body=b""):
        """Submits a task; returns its tag (the future is completions[tag])."""
        tag = next(self.tags)
        fut = self.loop.create_future()
        self.completions[tag] = fut
        try:
            self.queue.submit(server, context, body, tag)
        except BaseException:
            del self.completions[tag]
            raise
        return tag

    async def run(self, server, context=b"", body=b""):
        tag = self.submit(server, context, body)
        try:
            c = await asyncio.shield(self.completions[tag])
        except asyncio.CancelledError:
            self.queue.cancel(tag)
            raise
        return c.result()

    async def completion(self, tag, timeout=5.0):
        """The Completion of `tag`, however the task ended."""
        return await asyncio.wait_for(asyncio.shield(self.completions[tag]), timeout)

    def close(self):
        """Removes the reader (it must still be there) and frees the queue."""
        if self.closed:
            return True
        self.closed = True
        removed = self.loop.remove_reader(self.fd)
        self.queue.free()
        return removed


def readable(fd):
    return bool(select.select([fd], [], [], 0)[0])


class QueueAsyncioTest(ServerCase):
    def run_async(self, main, *args, timeout=20.0):
        """Runs main(aq, *args) on a new event loop with an AsyncQueue, then checks the
        reader was still registered, removes it and frees the queue (even on failure)."""
        async def wrapper():
            aq = AsyncQueue(asyncio.get_running_loop())
            try:
                result = await asyncio.wait_for(main(aq, *args), timeout)
            finally:
                removed = aq.close()
            self.assertTrue(removed, "the queue's reader was gone before the end")
            self.assertEqual(aq.unexpected, [], "completions for no pending task")
            return aq, result
        return asyncio.run(wrapper())

    def test_200_tasks_over_3_workers(self):
        srv = self.server(num_workers=3)
        pids = sorted(w["pid"] for w in srv.workers())

        async def main(aq):
            self.assertFalse(readable(aq.fd), "the queue's fd is readable with nothing in it")
            tasks = []
            for i in range(200):
                ctx = b"!sleep:%d" % (i % 4) if i % 10 == 0 else b"ctx-%d" % i
                body = bytes([i % 256]) * (i * 37 % 1000) + b"#%d" % i
                tasks.append((ctx, body))
            results = await asyncio.gather(*(aq.run(srv, ctx, body) for ctx, body in tasks))
            self.assertEqual(results, tasks)
            self.assertTrue(all(f.done() and f.result().status == rr.RR_STATUS_OK
                                for f in aq.completions.values()))
            self.assertEqual(len(aq.completions), 200)
            self.assertFalse(readable(aq.fd), "the fd is readable after every completion was taken")
            return aq.wakeups

        aq, wakeups = self.run_async(main)
        self.assertGreaterEqual(wakeups, 1)
        # Nothing was replaced: the same three workers ran everything.
        self.assertEqual(sorted(w["pid"] for w in srv.workers()), pids)
        self.assertEqual(sum(w["num_execs"] for w in srv.workers()), 200)
        self.assertEqual(srv.stats()["tasks_done"], 200)

    def test_wait_for_timeout_cancels_a_running_task_and_the_pool_serves_on(self):
        srv = self.server(num_workers=2)
        pids = {w["pid"] for w in srv.workers()}

        async def main(aq):
            t0 = time.monotonic()
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(aq.run(srv, b"!hang", b"forever"), 0.2)
            self.assertLess(time.monotonic() - t0, 4.0)
            (tag,) = aq.completions  # the only task so far
            c = await aq.completion(tag)
            self.assertEqual(c.status, rr.RR_STATUS_CANCELLED)
            self.assertIsNone(c.value)
            self.assertEqual(c.error.status, rr.RR_STATUS_CANCELLED)
            self.assertIn("cancel", c.error.message)
            # The pool keeps serving, on both workers, while the hung one is replaced.
            answers = await asyncio.gather(*(aq.run(srv, b"after", b"%d" % i) for i in range(40)))
            self.assertEqual(answers, [(b"after", b"%d" % i) for i in range(40)])

        self.run_async(main)
        # The hung worker was killed and replaced: two workers, one new.
        wait_until(lambda: len(srv.workers()) == 2 and len(children()) == 2,
                   what="the cancelled worker replaced and reaped",
                   state=lambda: (srv.workers(), children()))
        now = {w["pid"] for w in srv.workers()}
        self.assertEqual(len(now & pids), 1, f"before {pids}, after {now}")
        self.assertEqual(srv.exec(b"x", b"y"), (b"x", b"y"))
        self.assertEqual(srv.stats()["tasks_cancelled"], 1)

    def test_task_cancel_of_a_running_and_a_waiting_task(self):
        srv = self.server(num_workers=1)
        pid = srv.workers()[0]["pid"]

        async def main(aq):
            running = asyncio.create_task(aq.run(srv, b"!sleep:5000", b"slow"))
            await asyncio.sleep(0)  # let it submit
            waiting = asyncio.create_task(aq.run(srv, b"never", b"runs"))
            await asyncio.sleep(0)
            tag_running, tag_waiting = sorted(aq.completions)
            # Cancel the one waiting for the worker first: it never runs, nobody is killed.
            waiting.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await waiting
            c = await aq.completion(tag_waiting)
            self.assertEqual((c.status, c.error.status), (rr.RR_STATUS_CANCELLED,) * 2)
            self.assertFalse(aq.completions[tag_running].done())
            self.assertEqual([w["pid"] for w in srv.workers()], [pid])
            # Then the running one: its worker is killed and replaced.
            t0 = time.monotonic()
            running.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await running
            c = await aq.completion(tag_running)
            self.assertLess(time.monotonic() - t0, 4.0, "the cancel waited for the task")
            self.assertEqual((c.status, c.error.status), (rr.RR_STATUS_CANCELLED,) * 2)
            # A new worker serves.
            ctx, new_pid = await aq.run(srv, b"!pid", b"")
            self.assertEqual(ctx, b"pid")
            self.assertNotEqual(int(new_pid), pid)

        self.run_async(main)
        new = [w["pid"] for w in srv.workers()]
        self.assertEqual(len(new), 1)
        self.assertNotEqual(new[0], pid)
        self.assertEqual(srv.stats()["tasks_cancelled"], 2)

    def test_job_error_is_an_exception_with_the_workers_message(self):
        srv = self.server(num_workers=2)

        async def main(aq):
            results = await asyncio.gather(
                aq.run(srv, b"!error", b"the worker says no \xff"),
                aq.run(srv, b"fine", b"1"),
                aq.run(srv, b"!error", b""),
                return_exceptions=True)
            e = results[0]
            self.assertIsInstance(e, rr.RRError)
            self.assertEqual(e.status, rr.RR_STATUS_JOB_ERROR)
            self.assertEqual(e.err_status, rr.RR_STATUS_JOB_ERROR)
            self.assertEqual(e.data, b"the worker says no \xff")
            self.assertIn("the worker says no", e.message)
            self.assertEqual(results[1], (b"fine", b"1"))
            self.assertIsInstance(results[2], rr.RRError)
            self.assertEqual((results[2].status, results[2].data), (rr.RR_STATUS_JOB_ERROR, b""))
            # A worker error too (the worker crashes): an exception, and the pool serves on.
            with self.assertRaises(rr.RRError) as cm:
                await aq.run(srv, b"!crash", b"")
            self.assertEqual(cm.exception.status, rr.RR_STATUS_WORKER_ERROR)
            self.assertIn("crash requested", cm.exception.message)
            self.assertEqual(await aq.run(srv, b"after", b"errors"), (b"after", b"errors"))

        self.run_async(main)

    def test_submit_errors_post_nothing(self):
        srv = self.server(num_workers=1, start=False)

        async def main(aq):
            e = self.assertRRError(rr.RR_STATUS_STATE, aq.submit, srv, b"a", b"b")
            self.assertTrue(e.message)
            self.assertEqual(aq.completions, {})
            await asyncio.sleep(0.05)
            self.assertFalse(readable(aq.fd))
            self.assertIsNone(aq.queue.next(0))
            srv.start()
            self.assertEqual(await aq.run(srv, b"started", b""), (b"started", b""))

        aq, _ = self.run_async(main)
        self.assertEqual(aq.wakeups, 1)

    def test_freeing_the_queue_with_outstanding_tasks(self):
        srv = self.server(num_workers=2)

        async def main(aq):
            aq.submit(srv, b"!hang", b"")
            aq.submit(srv, b"!sleep:5000", b"")
            aq.submit(srv, b"waits", b"")  # no free worker: waits in line
            t0 = time.monotonic()
            self.assertTrue(aq.close())
            self.assertLess(time.monotonic() - t0, 4.0, "rr_queue_free waited for the tasks")
            self.assertFalse(any(f.done() for f in aq.completions.values()))

        self.run_async(main)
        # Both running workers were killed and replaced; the pool serves.
        self.assertEqual(srv.exec(b"after", b"free"), (b"after", b"free"))
        wait_until(lambda: len(srv.workers()) == 2 and len(children()) == 2,
                   what="the killed workers replaced and reaped",
                   state=lambda: (srv.workers(), children()))
        self.assertEqual(srv.exec(b"after", b"free"), (b"after", b"free"))


class QueueContractTest(ServerCase):
    """The rules of the queue that the asyncio driver relies on, with plain calls."""

    def test_duplicate_tags_and_a_level_triggered_fd(self):
        srv = self.server(num_workers=2)
        with rr.Queue() as q:
            # Two running tasks and a waiting one share tag 7; cancel(7) ends all three.
            for ctx in (b"!hang", b"!hang", b"waits"):
                q.submit(srv, ctx, b"", 7)
            self.assertFalse(readable(q.fd()))
            q.cancel(7)
            cs = [q.next(2000) for _ in range(3)]
            self.assertEqual([(c.tag, c.status) for c in cs], [(7, rr.RR_STATUS_CANCELLED)] * 3)
            self.assertIsNone(q.next(0))
            q.cancel(7)  # nothing outstanding: nothing happens
            q.cancel(12345)
            # Two completions waiting (a cancel posts before it returns): the fd stays
            # readable until both are taken.
            q.submit(srv, b"!hang", b"", 1)
            q.submit(srv, b"!hang", b"", 2)
            q.cancel(2)
            q.cancel(1)
            self.assertTrue(readable(q.fd()))
            self.assertEqual(q.next(0).tag, 2)
            self.assertTrue(readable(q.fd()), "the fd went quiet with a completion waiting")
            self.assertEqual(q.next(0).tag, 1)
            self.assertFalse(readable(q.fd()))
            self.assertIsNone(q.next(0))
            # Answers come too, the fd raised by the reactor.
            q.submit(srv, b"a", b"", 3)
            self.assertTrue(select.select([q.fd()], [], [], 5)[0])
            self.assertEqual(q.next(0).result(), (b"a", b""))
            t0 = time.monotonic()
            self.assertIsNone(q.next(100))
            self.assertGreaterEqual(time.monotonic() - t0, 0.09)
            self.assertRRError(rr.RR_STATUS_INVALID_ARGUMENT, q.next, -2)
        self.assertEqual(srv.stats()["tasks_cancelled"], 5)

    def test_null_arguments(self):
        srv = self.server(num_workers=1)
        with rr.Queue() as q:
            c = rr.rr_completion()
            self.assertEqual(rr.lib.rr_queue_fd(None), -1)
            self.assertEqual(rr.lib.rr_queue_new(None, None), rr.RR_STATUS_NULL_ARGUMENT)
            self.assertEqual(rr.lib.rr_queue_next(None, 0, rr.byref(c), None), rr.RR_STATUS_NULL_ARGUMENT)
            self.assertEqual(rr.lib.rr_queue_next(q.ptr, 0, None, None), rr.RR_STATUS_NULL_ARGUMENT)
            self.assertEqual(rr.lib.rr_queue_cancel(None, 1, None), rr.RR_STATUS_NULL_ARGUMENT)
            self.assertEqual(rr.lib.rr_exec_submit(None, q.ptr, None, 0, None, 0, 1, None),
                             rr.RR_STATUS_NULL_ARGUMENT)
            self.assertEqual(rr.lib.rr_exec_submit(srv.ptr, None, None, 0, None, 0, 1, None),
                             rr.RR_STATUS_NULL_ARGUMENT)
            self.assertEqual(rr.lib.rr_exec_submit(srv.ptr, q.ptr, None, 3, None, 0, 1, None),
                             rr.RR_STATUS_NULL_ARGUMENT)
            rr.lib.rr_queue_free(None)
            self.assertIsNone(q.next(50))  # nothing was posted for the refused submits


if __name__ == "__main__":
    unittest.main()
