import sys
import roadrunner_pool

# python3 example.py WORKER-COMMAND (an echo worker, e.g. target/release/rr-test-worker)
with roadrunner_pool.Server(sys.argv[1], num_workers=2) as server:
    answer = server.exec(b"world", context=b"hello")
    print(answer.context.decode(), answer.body.decode())
