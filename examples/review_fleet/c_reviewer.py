#!/usr/bin/env python3
"""c_reviewer: a review agent for C files, speaking JSON lines (msrt.process).

stdin:  {"subject": ..., "reply": R, "data": {"id", "path", "cflags": [...]}}
stdout: {"subject": "<prefix>.progress", "data": {"id", "reply", "agent", "pid"}}
          as soon as a task is read (the hub knows who holds what);
        {"subject": R, "data": {"id", "path", "agent", "pid", "ms",
          "findings": [{"line", "severity", "tool", "message"}]}}  the result
          (or "error": why, when a tool could not run);
        {"subject": "<prefix>.heartbeat", "data": {"agent", "pid", "tasks"}}
          every REVIEW_HEARTBEAT_MS.
Tools: gcc -fsyntax-only -Wall -Wextra, and cppcheck when it is installed.
REVIEW_CHAOS=P: before each task, exit abruptly with probability P.
REVIEW_HANG=P: before each task, hang with probability P (no more work, no
more heartbeats: for the supervisor's liveness probe to find).
"""
import json
import os
import queue
import random
import re
import shutil
import subprocess
import sys
import threading
import time

NAME = os.environ.get("REVIEWER_NAME", "c")
PREFIX = os.environ.get("REVIEW_PREFIX", "agents.reviewer." + NAME)
CHAOS = float(os.environ.get("REVIEW_CHAOS") or 0)
HANG = float(os.environ.get("REVIEW_HANG") or 0)
HEARTBEAT_S = int(os.environ.get("REVIEW_HEARTBEAT_MS") or 1000) / 1000.0
GCC = os.environ.get("REVIEW_CC") or shutil.which("gcc") or "cc"
CPPCHECK = shutil.which("cppcheck")

PID = os.getpid()
out_lock = threading.Lock()
tasks = queue.Queue()
done = 0
hung = threading.Event()

# file:line[:col]: severity: message  (gcc -fdiagnostics-plain-output)
GCC_LINE = re.compile(r"^(.*?):(\d+):(?:\d+:)? (fatal error|error|warning): (.*)$")
# "In file included from FILE:LINE[:COL]," and "                 from FILE:LINE,"
INCLUDED = re.compile(r"^(?:In file included from|\s+from) (.*?):(\d+)(?::\d+)?[:,]$")


def emit(subject, data):
    line = json.dumps({"subject": subject, "data": data})  # ASCII: always valid UTF-8
    with out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def run(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def gcc(path, cflags):
    rc, text = run([GCC, "-fsyntax-only", "-Wall", "-Wextra", "-fdiagnostics-plain-output",
                    "-fno-diagnostics-show-caret"] + cflags + [path])
    found, include_line, elsewhere = [], 0, None
    for line in text.splitlines():
        inc = INCLUDED.match(line)
        if inc and inc.group(1) == path and not include_line:
            include_line = int(inc.group(2))
        m = GCC_LINE.match(line)
        if m and m.group(1) == path:  # what the includes say is their own review
            sev = "error" if m.group(3) == "fatal error" else m.group(3)
            found.append({"line": int(m.group(2)), "severity": sev, "tool": "gcc",
                          "message": m.group(4)})
        elif m and elsewhere is None and m.group(3) != "warning":
            elsewhere = (include_line, "in %s: %s" % (m.group(1), m.group(4)))
    if rc != 0 and not any(f["severity"] == "error" for f in found):
        if elsewhere is None:
            raise RuntimeError("gcc exited %d: %s" % (rc, text.strip()[:300]))
        # the file does not compile because of what it includes: say where
        found.append({"line": elsewhere[0], "severity": "error", "tool": "gcc", "message": elsewhere[1]})
    return found


def cppcheck(path, cflags):
    defs = [f for f in cflags if f.startswith("-D")]
    rc, text = run([CPPCHECK, "--quiet", "--language=c", "--enable=warning,performance,portability",
                    "--template={file}:{line}:{severity}:{id}:{message}"] + defs + [path])
    found = []
    for line in text.splitlines():
        parts = line.split(":", 4)
        if len(parts) == 5 and parts[0] == path and parts[1].isdigit():
            found.append({"line": int(parts[1]), "severity": parts[2], "tool": "cppcheck",
                          "message": "%s [%s]" % (parts[4], parts[3])})
    return found


def review(task):
    path, cflags = task["path"], task.get("cflags") or []
    findings = gcc(path, cflags)
    if CPPCHECK:
        findings += cppcheck(path, cflags)
    findings.sort(key=lambda f: (f["line"], f["tool"]))
    return findings


def worker():
    global done
    while True:
        msg = tasks.get()
        if msg is None:
            os._exit(0)
        if CHAOS > 0 and random.random() < CHAOS:
            sys.stderr.write("chaos: crashing with task %s\n" % msg["data"].get("id"))
            sys.stderr.flush()
            os._exit(70)
        if HANG > 0 and random.random() < HANG:
            sys.stderr.write("chaos: hanging with task %s\n" % msg["data"].get("id"))
            sys.stderr.flush()
            hung.set()
            threading.Event().wait()
        task, t0 = msg["data"], time.time()
        reply = {"id": task.get("id"), "path": task.get("path"), "agent": NAME, "pid": PID}
        try:
            reply["findings"] = review(task)
        except Exception as e:  # a tool that cannot run: say why, do not crash
            reply["error"] = str(e)
        reply["ms"] = int((time.time() - t0) * 1000)
        done += 1
        emit(msg["reply"], reply)


def heartbeat():
    while not hung.is_set():
        emit(PREFIX + ".heartbeat", {"agent": NAME, "pid": PID, "tasks": done, "queued": tasks.qsize()})
        time.sleep(HEARTBEAT_S)


def main():
    threading.Thread(target=worker, daemon=True).start()
    threading.Thread(target=heartbeat, daemon=True).start()
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            sys.stderr.write("not JSON: %r\n" % line[:100])
            continue
        if not isinstance(msg, dict) or not msg.get("reply") or not isinstance(msg.get("data"), dict):
            continue
        emit(PREFIX + ".progress", {"id": msg["data"].get("id"), "reply": msg["reply"],
                                    "agent": NAME, "pid": PID})
        tasks.put(msg)
    tasks.put(None)  # EOF: finish what was read, then exit
    threading.Event().wait()


if __name__ == "__main__":
    main()
