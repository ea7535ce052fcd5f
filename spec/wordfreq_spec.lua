-- examples/wordfreq.lua (README "Examples"): its top 20 against
-- `tr -cs A-Za-z '\n' | tr A-Z a-z | sort | uniq -c | sort -rn` on a fixed
-- input: two files, one of several chunks (words cut at chunk boundaries),
-- mixed case, digits and punctuation between words.
local S = require "spec.support"
local uv = require "luv"

local MAIN = uv.cwd() .. "/examples/wordfreq.lua"

-- A fixed pseudo-random text over a skewed vocabulary.
local function corpus(n, seed)
  local vocab = { "the", "Of", "and", "msrt", "actor", "QUEUE", "group", "lua", "worker", "mailbox",
    "supervisor", "restart", "message", "subject", "router", "hub", "reply", "request", "timeout",
    "profile", "batch", "spin", "park", "wake", "steal", "x", "yy", "zzz", "Alpha", "beta",
    "gamma", "delta", "averyveryveryverylongwordthatcrossesboundaries" }
  local seps = { " ", " ", " ", "\n", ", ", ". ", "-", "'", " 42 ", "\t", "_", "(", ")" }
  local state, out = seed, {}
  local function rnd(m)
    state = (state * 1103515245 + 12345) % 2147483648
    return state % m + 1
  end
  for i = 1, n do
    local a, b = rnd(#vocab), rnd(#vocab)
    out[i] = vocab[math.min(a, b)] .. seps[rnd(#seps)] -- min: skewed towards the front
  end
  return table.concat(out)
end

local function expected(paths, top)
  local quoted = {}
  for i, p in ipairs(paths) do quoted[i] = S.quote(p) end
  local p = assert(io.popen("cat " .. table.concat(quoted, " ")
    .. " | tr -cs A-Za-z '\\n' | tr A-Z a-z | sort | uniq -c | sort -rn"))
  local list = {}
  for line in p:lines() do
    local n, w = line:match("^%s*(%d+)%s+(%a+)$")
    if n then list[#list + 1] = { word = w, n = tonumber(n) } end
  end
  p:close()
  return list
end

local function top_of(out)
  local list = {}
  for line in out:gmatch("[^\n]+") do
    local n, w = line:match("^%s*(%d+)%s+(%a+)$")
    if n then list[#list + 1] = { word = w, n = tonumber(n) } end
  end
  return list
end

-- wordfreq's output (its top 20 and word count) against the pipeline's
-- over the same paths.
local function same_top(out, paths)
  local got, want = top_of(out), expected(paths)
  assert.are.equal(20, #got)
  -- the same counts rank by rank; the same words, ties in any order
  local last = want[20].n
  local want_set, tied = {}, {}
  for _, e in ipairs(want) do
    if e.n > last then want_set[e.word] = e.n elseif e.n == last then tied[e.word] = e.n end
  end
  for i = 1, 20 do
    assert.are.equal(want[i].n, got[i].n, "count at rank " .. i)
    local w = got[i].word
    assert.is_truthy(want_set[w] == got[i].n or tied[w] == got[i].n, w .. " is not in the top 20")
  end
  local words = 0
  for _, e in ipairs(want) do words = words + e.n end
  assert.matches(" " .. words .. " words", out)
end

describe("wordfreq", function()
  local files = {}
  setup(function()
    files[1] = S.file(corpus(90000, 7), ".txt") -- ~500 KB: several 128 KiB chunks
    files[2] = S.file("The END of the text, THE end.\n" .. corpus(500, 99), ".txt")
  end)
  teardown(function() for _, f in ipairs(files) do os.remove(f) end end)

  it("finds the same top 20 as tr | sort | uniq -c | sort -rn", function()
    local r = S.run({ MAIN, files[1], files[2] })
    assert.are.equal(0, r.code, r.err)
    assert.matches("wordfreq: 2 files, .* chunks over %d+ mappers, .* profile cpu_bound", r.out)
    same_top(r.out, files)
  end)

  it("counts the default corpus", function()
    -- the default: every file under /usr/share/common-licenses (links
    -- followed) and the project's README.md
    local p = assert(io.popen("find -L /usr/share/common-licenses -type f | LC_ALL=C sort"))
    local paths = {}
    for line in p:lines() do paths[#paths + 1] = line end
    p:close()
    paths[#paths + 1] = uv.cwd() .. "/README.md"
    local r = S.run({ MAIN })
    assert.are.equal(0, r.code, r.err)
    assert.matches("wordfreq: " .. #paths .. " files, ", r.out)
    same_top(r.out, paths)
  end)
end)
