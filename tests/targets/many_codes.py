"""Target for test_code_table: on 'go', makes and calls 30,000 functions
compiled one by one (60,000 code objects: more than the payload's code
table holds, 3/4 of 65,536), each allocating a list at its own line, then
prints 'DONE'; the main thread then waits for the next line."""
import sys

print("READY", flush=True)
keep = []
for line in sys.stdin:
    if line.strip() == "go":
        for i in range(30000):
            ns = {}
            exec(compile("def f():\n    return [0] * 40\n", "<gen%d>" % i,
                         "exec"), ns)
            keep.append(ns["f"]())  # MARK: call
        print("DONE", flush=True)
