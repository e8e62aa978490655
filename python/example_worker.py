import roadrunner_pool

# A worker program: answers each task with its body in upper case. A Server runs it:
#   python3 example.py "python3 example_worker.py"
with roadrunner_pool.Worker() as worker:
    for task in worker:  # until the server says stop
        worker.respond(task.body.upper(), task.context)
