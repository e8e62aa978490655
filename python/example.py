import sys
import roadrunner_pool

# python3 example.py WORKER-COMMAND (an echo worker, e.g. target/release/rr-test-worker)
if len(sys.argv) != 2:
    print("usage: python3 example.py WORKER-COMMAND", file=sys.stderr)
    sys.exit(2)
with roadrunner_pool.Server(sys.argv[1], num_workers=2) as server:
    answer = server.exec(b"world", context=b"hello")
    print(answer.context.decode(), answer.body.decode())
