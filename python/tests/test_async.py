"""Server.exec_async on asyncio: answers, errors, and cancellation of the awaiting task."""

import asyncio
import os
import threading
import time
import unittest

import roadrunner_pool as rp
from support import PoolCase, alive, children, wait_until


class ExecAsyncTest(PoolCase):
    def run_async(self, coro, timeout=20.0):
        return asyncio.run(asyncio.wait_for(coro, timeout))

    def test_many_tasks_on_few_workers(self):
        srv = self.server(num_workers=3)
        tasks = [(b"body %d" % i + b"x" * (i * 31 % 700), b"ctx %d" % i) for i in range(150)]

        async def main():
            return await asyncio.gather(*(srv.exec_async(b, c) for b, c in tasks))

        results = self.run_async(main())
        self.assertEqual([(r.body, r.context) for r in results], tasks)
        self.assertEqual(srv.stats().tasks_done, 150)

    def test_the_loop_runs_while_tasks_wait(self):
        # No thread waits: other coroutines of the loop run during a slow task.
        srv = self.server(num_workers=1)
        ticks = []

        async def ticker(stop):
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        async def main():
            stop = asyncio.Event()
            t = asyncio.ensure_future(ticker(stop))
            answer = await srv.exec_async(b"slow", b"!sleep:300")
            stop.set()
            await t
            return answer

        self.assertEqual(self.run_async(main()).context, b"!sleep:300")
        self.assertGreater(len(ticks), 5)

    def test_errors_are_raised(self):
        srv = self.server(num_workers=2)

        async def main():
            return await asyncio.gather(
                srv.exec_async(b"no \xff", b"!error"), srv.exec_async(b"fine"),
                srv.exec_async(b"", b"!crash"), return_exceptions=True)

        job, fine, crash = self.run_async(main())
        self.assertIsInstance(job, rp.JobError)
        self.assertEqual(job.data, b"no \xff")
        self.assertEqual(fine, rp.Payload(b"fine", b""))
        self.assertIsInstance(crash, rp.WorkerError)
        self.assertIn("crash requested", crash.message)

        async def refused():
            await srv.exec_async(b"stopped")

        srv.stop()
        with self.assertRaises(rp.StateError):
            self.run_async(refused())

    def test_cancelling_the_awaiting_task_cancels_the_task(self):
        srv = self.server(num_workers=1)
        pid = srv.workers()[0].pid

        async def main():
            running = asyncio.ensure_future(srv.exec_async(b"slow", b"!hang"))
            waiting = asyncio.ensure_future(srv.exec_async(b"never runs"))
            await wait_for_state("working")
            # The waiting one first: it never runs, nobody is killed.
            waiting.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await waiting
            self.assertEqual([w.pid for w in srv.workers()], [pid])
            # The running one: its worker is killed and replaced, without waiting for it.
            t0 = time.monotonic()
            running.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await running
            self.assertLess(time.monotonic() - t0, 4.0)
            answer = await srv.exec_async(b"", b"!pid")
            return int(answer.body)

        async def wait_for_state(state):
            while srv.workers()[0].state != state:
                await asyncio.sleep(0.005)

        new_pid = self.run_async(main())
        self.assertNotEqual(new_pid, pid)
        wait_until(lambda: not alive(pid), what="the cancelled task's worker killed")
        # The killed worker may still be listed ("stopping") until its stop finished.
        wait_until(lambda: [w.pid for w in srv.workers()] == [new_pid],
                   what="only the new worker listed", state=srv.workers)
        self.assertEqual(srv.stats().tasks_cancelled, 2)
        wait_until(lambda: set(children()) == {new_pid}, what="the killed worker reaped")

    def test_wait_for_timeout_and_a_new_loop(self):
        srv = self.server(num_workers=2)

        async def main():
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(srv.exec_async(b"", b"!hang"), 0.2)
            return await asyncio.gather(*(srv.exec_async(b"%d" % i) for i in range(20)))

        self.assertEqual([r.body for r in self.run_async(main())],
                         [b"%d" % i for i in range(20)])
        # A second loop (asyncio.run again) gets its own queue; the first is dropped.
        self.assertEqual(self.run_async(srv.exec_async(b"loop 2")).body, b"loop 2")
        wait_until(lambda: len(children()) == 2, what="the hung worker replaced and reaped")

    def test_close_fails_pending_tasks(self):
        srv = rp.Server(self.server(start=False).command, num_workers=1, destroy_timeout=0.5)
        self.addCleanup(srv.close)
        srv.start()
        pid = srv.workers()[0].pid

        async def main():
            running = asyncio.ensure_future(srv.exec_async(b"", b"!hang"))
            waiting = asyncio.ensure_future(srv.exec_async(b"waits"))
            while srv.workers()[0].state != "working":
                await asyncio.sleep(0.005)
            srv.close()
            return await asyncio.gather(running, waiting, return_exceptions=True)

        running, waiting = self.run_async(main())
        self.assertIsInstance(running, rp.WorkerError)  # killed after destroy_timeout
        self.assertIsInstance(waiting, rp.StateError)
        self.assertGone([pid])

    def test_close_on_another_thread_leaves_other_servers_queues_alone(self):
        # A's queue, closed on another thread while A's loop is busy, must keep its
        # descriptor until the loop stopped watching it: freed at once, its number is
        # free for the next queue (B's), whose reader the loop then never registers
        # (asyncio keeps A's stale entry for that number) or drops when A's removal runs.
        a = self.server(num_workers=1)
        b = self.server(num_workers=1)

        async def main():
            loop = asyncio.get_running_loop()
            self.assertEqual((await a.exec_async(b"a")).body, b"a")
            a_fd = a._queues[loop].fd  # A's queue and its descriptor exist now
            closer = threading.Thread(target=a.close)
            closer.start()
            closer.join()  # blocks the loop: nothing scheduled on it runs meanwhile
            self.assertTrue(a.closed)
            # Take every descriptor below A's, and A's if it is free (as it was before
            # the fix), so that B's queue gets A's number whenever that number is free.
            held = []
            try:
                while True:
                    fd = os.open(os.devnull, os.O_RDONLY)
                    if fd >= a_fd:
                        if fd > a_fd:
                            os.close(fd)
                        else:
                            held.append(fd)
                        break
                    held.append(fd)
                if held and held[-1] == a_fd:
                    os.close(held.pop())
                # Awaited directly (not in a task of its own), B's queue is made now,
                # before anything scheduled on the loop meanwhile (A's clean-up) runs.
                answer = await b.exec_async(b"b")
            finally:
                for fd in held:
                    os.close(fd)
            return answer

        # It hung before the fix: main() times out, and the test fails, after 30 s.
        self.assertEqual(self.run_async(main(), timeout=30.0).body, b"b")
        self.assertEqual(self.run_async(b.exec_async(b"b again")).body, b"b again")


if __name__ == "__main__":
    unittest.main()
