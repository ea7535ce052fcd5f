-- examples/review_fleet (README "Examples"): the fleet run as a child on a fixture
-- tree with known findings; the JSON report is checked exactly, and under
-- --chaos every file is still reviewed exactly once, with restarts.
local S = require "spec.support"
local json = require "dkjson"
local uv = require "luv"

local MAIN = uv.cwd() .. "/examples/review_fleet/main.lua"

local write = S.write

-- The fixture: a C file with a known warning, a Lua file with a syntax
-- error, one assigning a global, clean C, header and Lua files, and a file
-- that is not reviewed.
local function fixture()
  local dir = S.file("", ".d")
  os.remove(dir)
  assert(uv.fs_mkdir(dir, 493))
  assert(uv.fs_mkdir(dir .. "/sub", 493))
  write(dir .. "/warn.c", "static int used(void)\n{\n  int spare;\n  return 0;\n}\n\nint main(void) { return used(); }\n")
  write(dir .. "/bad.lua", "local M = {}\nlocal x = = 1\nreturn M\n")
  write(dir .. "/glob.lua", "local M = {}\ncounter = 1\nreturn M\n")
  write(dir .. "/sub/clean.h", "#ifndef CLEAN_H\n#define CLEAN_H\nint add(int a, int b);\n#endif\n")
  write(dir .. "/notes.txt", "not reviewed\n")
  local files = { "warn.c", "bad.lua", "glob.lua", "sub/clean.h" }
  for i = 1, 12 do
    write(("%s/sub/ok%d.c"):format(dir, i), ("int add%d(int a, int b) { return a + b + %d; }\n"):format(i, i))
    write(("%s/sub/ok%d.lua"):format(dir, i), ("local M = {}\nfunction M.f(a) return a + %d end\nreturn M\n"):format(i))
    files[#files + 1] = ("sub/ok%d.c"):format(i)
    files[#files + 1] = ("sub/ok%d.lua"):format(i)
  end
  table.sort(files)
  return dir, files
end

local function remove_tree(dir)
  os.execute("rm -rf " .. S.quote(dir))
end

local function run_fleet(dir, extra)
  local out = os.tmpname()
  local args = { MAIN, dir, "--json", out, "--timeout-ms", "3000" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  local r = S.run(args)
  local f = io.open(out)
  local report = f and json.decode(f:read("*a"))
  if f then f:close() end
  os.remove(out)
  return r, report
end

-- "DIR/x" -> "x"
local function rel(dir, path) return (path:sub(#dir + 2)) end

local EXPECTED = {
  { file = "bad.lua", line = 2, severity = "error", tool = "luajit -bl", message = "unexpected symbol near '='" },
  { file = "glob.lua", line = 2, severity = "warning", tool = "luajit", message = "assignment to global 'counter'" },
  { file = "warn.c", line = 3, severity = "warning", tool = "gcc", message = "unused variable 'spare' [-Wunused-variable]" },
}

local function check(dir, files, r, report)
  assert.are.equal(0, r.code, r.err)
  assert.is_table(report, "no JSON report")
  assert.are.equal(#files, report.files)
  assert.are.equal(#files, report.reviewed)
  assert.are.same({ done = #files, failed = 0, accounted = true },
    { done = report.tasks.done, failed = report.tasks.failed, accounted = report.tasks.accounted })
  -- every file reviewed exactly once, each under its own task id
  local seen, ids = {}, {}
  for _, res in ipairs(report.results) do
    local name = rel(dir, res.file)
    assert.is_nil(seen[name], name .. " reviewed twice")
    assert.is_nil(ids[res.id], res.id .. " used twice")
    seen[name], ids[res.id] = true, true
  end
  local names = {}
  for name in pairs(seen) do names[#names + 1] = name end
  table.sort(names)
  assert.are.same(files, names)
  -- the findings, exactly
  local got = {}
  for i, f in ipairs(report.findings) do
    got[i] = { file = rel(dir, f.file), line = f.line, severity = f.severity, tool = f.tool, message = f.message }
  end
  assert.are.same(EXPECTED, got)
  assert.are.same({ error = 1, warning = 2 }, report.by_severity)
  assert.matches("review_fleet: " .. #files .. " files reviewed of " .. #files .. ", 3 findings", r.out)
  -- each finding printed as file:line: severity: message [tool], in order
  local printed = {}
  for file, line, rest in r.out:gmatch("([^\n]+):(%d+): ([^\n]+)") do
    printed[#printed + 1] = ("%s:%s: %s"):format(rel(dir, file), line, rest)
  end
  local want = {}
  for i, f in ipairs(EXPECTED) do want[i] = ("%s:%d: %s: %s [%s]"):format(f.file, f.line, f.severity, f.message, f.tool) end
  assert.are.same(want, printed)
end

describe("review_fleet", function()
  local dir, files
  setup(function() dir, files = fixture() end)
  teardown(function() remove_tree(dir) end)

  it("reviews a fixture tree and reports its findings exactly", function()
    local r, report = run_fleet(dir)
    check(dir, files, r, report)
    assert.are.equal(0, report.restarts)
    assert.are.equal(0, report.tasks.retried)
    assert.are.equal(4, #report.agents)
    for _, a in ipairs(report.agents) do assert.is_true(a.heartbeats > 0, a.name .. " sent no heartbeat") end
    assert.matches("by tool:", r.out)
  end)

  it("reviews every file exactly once under --chaos 0.3, restarting agents", function()
    -- 20 attempts: a task crashing 20 times in a row (0.3^20) cannot fail the spec
    local r, report = run_fleet(dir, { "--chaos", "0.3", "--attempts", "20" })
    check(dir, files, r, report)
    assert.is_true(report.restarts > 0, "no restarts")
    assert.is_true(report.tasks.retried > 0, "no retries")
    local crashes = 0
    for _, a in ipairs(report.agents) do crashes = crashes + a.crashes end
    assert.is_true(crashes > 0)
  end)

  it("restarts agents that stop beating (liveness probe) and still reviews every file once", function()
    -- 0.3 per task over 28 files: no hang at all has odds 0.7^28 (5e-5)
    local r, report = run_fleet(dir, { "--hang", "0.3", "--liveness-ms", "200", "--attempts", "20" })
    check(dir, files, r, report)
    local unhealthy = 0
    for _, a in ipairs(report.agents) do unhealthy = unhealthy + a.unhealthy end
    assert.is_true(unhealthy > 0, "no agent found unhealthy")
    assert.is_true(report.restarts >= unhealthy)
  end)

  it("reviews Python files through its MCP reviewer kind (py_reviewer.py), under --chaos too", function()
    local pdir = S.file("", ".d")
    os.remove(pdir)
    assert(uv.fs_mkdir(pdir, 493))
    write(pdir .. "/bad.py", "def f(:\n    pass\n")
    write(pdir .. "/warn.py", "x = 1\nif x is 1:\n    pass\n")
    for i = 1, 10 do write(("%s/ok%d.py"):format(pdir, i), ("def f(a):\n    return a + %d\n"):format(i)) end
    local want = {
      { file = "bad.py", line = 1, severity = "error", tool = "python3", message = "invalid syntax" },
      { file = "warn.py", line = 2, severity = "warning", tool = "python3",
        message = 'SyntaxWarning: "is" with a literal. Did you mean "=="?' },
    }
    for _, extra in ipairs({ {}, { "--chaos", "0.3", "--attempts", "20" } }) do
      local r, report = run_fleet(pdir, extra)
      assert.are.equal(0, r.code, r.err)
      assert.are.same({ done = 12, failed = 0, accounted = true },
        { done = report.tasks.done, failed = report.tasks.failed, accounted = report.tasks.accounted })
      local got, py = {}, 0
      for i, f in ipairs(report.findings) do
        got[i] = { file = rel(pdir, f.file), line = f.line, severity = f.severity, tool = f.tool, message = f.message }
      end
      assert.are.same(want, got)
      for _, a in ipairs(report.agents) do if a.kind == "py" then py = py + a.tasks end end
      assert.are.equal(12, py)
    end
    remove_tree(pdir)
  end)

  it("--state: resumes after a SIGKILL of the host where it stopped, each file reviewed exactly once", function()
    local state = os.tmpname() .. ".db"
    local errf = os.tmpname()
    local p = io.popen(("%s %s %s --state %s 2>%s >/dev/null & echo $!"):format(S.quote(S.exe), S.quote(MAIN),
      S.quote(dir), S.quote(state), S.quote(errf)))
    local pid = p:read("*l")
    p:close()
    local killed = false
    for _ = 1, 6000 do -- until some results are stored, then SIGKILL mid-run
      local f = io.open(errf)
      local text = f and f:read("*a") or ""
      if f then f:close() end
      if text:find("review_fleet: 30%", 1, true) then
        killed = os.execute("kill -9 " .. pid) == 0
        break
      end
      uv.sleep(10)
    end
    assert.is_true(killed, "the first run was not killed mid-run")
    local r, report = run_fleet(dir, { "--state", state })
    check(dir, files, r, report)
    assert.is_true(report.state.resumed > 0 and report.state.resumed < #files, "resumed " .. report.state.resumed)
    assert.are.equal(#files, report.state.results_stored) -- each result stored once
    -- once more: nothing is reviewed again
    r, report = run_fleet(dir, { "--state", state })
    check(dir, files, r, report)
    assert.are.same({ #files, 0, #files }, { report.state.resumed, report.state.queued, report.state.results_stored })
    os.execute("rm -f " .. S.quote(state) .. "* " .. S.quote(errf))
  end)

  it("reviews across 3 hosts through a 3-node NATS cluster, every file exactly once when one host is SIGKILLed mid-review", function()
    -- --hosts 3: Debian's nats-server cluster and three agents hosts
    -- (msrt-lua processes) on this machine; host h1 is SIGKILLed after 8
    -- tasks, what it held times out (3 s) and is retried on h2 and h3
    local r, report = run_fleet(dir, { "--hosts", "3", "--kill-host-after", "8", "--attempts", "20" })
    check(dir, files, r, report)
    assert.are.same({ h1 = true }, report.killed_hosts)
    local n = 0
    for h, tasks in pairs(report.hosts) do
      assert.matches("^h[123]$", h)
      n = n + tasks
    end
    assert.are.equal(#files, n, "every task done by one host's agent")
    assert.is_true(report.hosts.h2 > 0 and report.hosts.h3 > 0)
    assert.matches("hosts: .*h1 %d+ tasks %(SIGKILLed%)", r.out)
    assert.matches("every task id accounted: true", r.out)
  end)

  it("refuses bad usage", function()
    local r = S.run({ MAIN, "--chaos", "2" })
    assert.are.equal(2, r.code)
    assert.matches("%-%-chaos must be a number", r.err)
    r = S.run({ MAIN, "--role", "agents" })
    assert.are.equal(2, r.code)
    assert.matches("%-%-role needs %-%-nats URL", r.err)
  end)
end)
