"""The wrk scripts of `make bench`: every one counts the answers by status (printed by `done` as
`status <code> <count>` lines), and some make the requests: a form or JSON body, a sign-up with a
new username each time, sample jobs whose ids are written to a file per thread."""

from __future__ import annotations

import json
from pathlib import Path

# Each thread's Lua state counts its own answers; `done` (the main state) adds them up.
_COUNTING = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
statuses = {}
function count(status)
  statuses[status] = (statuses[status] or 0) + 1
end
function response(status, headers, body)
  count(status)
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("status %d %d\\n", status, n))
  end
end
"""


def _lua(value: str) -> str:
    # A JSON string is a valid Lua string literal for the ASCII text used here.
    return json.dumps(value)


def counting() -> str:
    """Requests as given on wrk's command line; answers counted."""
    return _COUNTING


def post(path: str, body: str, content_type: str) -> str:
    """The same POST again and again."""
    return _COUNTING + (
        f'wrk.method = "POST"\nwrk.path = {_lua(path)}\nwrk.body = {_lua(body)}\n'
        f'wrk.headers["Content-Type"] = {_lua(content_type)}\n'
    )


def sign_ups(prefix: str, password: str) -> str:
    """POST /api/v1/user with a username and e-mail address never used before (`prefix`, the
    thread and a counter: at most 20 lowercase letters and digits)."""
    return _COUNTING + (
        f"""
local n = 0
function request()
  n = n + 1
  local name = string.format("%s%dx%d", {_lua(prefix)}, tid, n)
  local body = string.format(
    '{{"name":"Bench %d","username":"%s","email":"%s@example.com","password":%s}}',
    n, name, name, {_lua(json.dumps(password))})
  return wrk.format("POST", "/api/v1/user", {{["Content-Type"] = "application/json"}}, body)
end
"""
    )


def sample_jobs(per_thread: int, folder: Path) -> str:
    """`per_thread` POST /api/v1/tasks/task per thread; each thread writes the ids it got to
    `folder/ids-<thread>.txt` and, once all its jobs are answered, `done`, and stops.

    wrk calls `request()` once more than it sends (in its first thread, to check the script), so
    POSTs are counted where wrk asks each connection's `delay()` before its next request: a
    connection granted a POST sends one; once the thread's are all granted, a connection waits
    a second and asks for `/health` instead, until the thread stops.
    """
    return _COUNTING + (
        f"""
local granted, sent, answered, finished = 0, 0, 0, false
local file
function init(args)
  file = io.open({_lua(str(folder))} .. "/ids-" .. tid .. ".txt", "w")
  file:setvbuf("line")
end
function delay()
  if granted < {per_thread} then
    granted = granted + 1
    return 0
  end
  return 1000
end
function request()
  if sent < granted then
    sent = sent + 1
    return wrk.format("POST", "/api/v1/tasks/task?message=m" .. tid .. "x" .. sent, {{}}, "")
  end
  return wrk.format("GET", "/health", {{}})
end
function response(status, headers, body)
  if finished then return end
  local id = body:match('"id":"(%x+)"')
  if id then
    count(status)
    file:write(id, "\\n")
    answered = answered + 1
  elseif status >= 300 then
    count(status)
    answered = answered + 1
  end
  if answered >= {per_thread} then
    finished = true
    file:write("done\\n")
    file:close()
    wrk.thread:stop()
  end
end
"""
    )
