-- wrk script of the load benchmark (bench/load): the tokens to send come from a file.
--
--   wrk -tT ... -s tokens.lua URL -- TOKEN_FILE MODE T
--
-- TOKEN_FILE holds one token per line; MODE is `cycle` or `first-pass` (which needs several
-- tokens); T is wrk's -t.
--
-- With one token, every request carries it and the request stays static (wrk builds it once and
-- runs no Lua per request). With several, each of the T threads takes every T-th token (thread k
-- the tokens k+1, k+1+T, ...), pre-builds its requests in init(), and request() only picks the
-- next one, cycling, so the per-request Lua cost is one table lookup.
--
-- `first-pass` stops each thread once it has a response for each of its tokens: every token is
-- sent once (give or take the requests still in flight when a thread stops, which wrap around
-- to its first tokens). wrk's own duration is then still the whole -d (its main thread sleeps
-- that long), so each thread records when its first request left and its last response came,
-- with clock_gettime through LuaJIT's FFI, and done() reports that span.
--
-- done() prints one machine-readable line for the driver, starting with LOADBENCH.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } loadbench_timespec;
int clock_gettime(int clock_id, loadbench_timespec *tp);
]]
-- CLOCK_MONOTONIC on Linux.
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("loadbench_timespec")

local function now_us()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
   return tonumber(now_ts.tv_sec) * 1e6 + tonumber(now_ts.tv_nsec) / 1e3
end

-- The setup/done environment: one entry per thread, to read their globals in done().
local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

-- Per-thread state (each thread runs its own copy of this script).
local prebuilt = {}
local count = 0
local next_index = 0
local responses = 0
local first_pass = false
-- Globals, so done() can read them through thread:get().
pass_start_us = 0
pass_end_us = 0

function init(args)
   local path, mode, thread_count = args[1], args[2], tonumber(args[3] or "1")
   if path == nil or (mode ~= "cycle" and mode ~= "first-pass") or thread_count == nil then
      error("usage: wrk ... -s tokens.lua URL -- TOKEN_FILE cycle|first-pass THREADS")
   end
   first_pass = mode == "first-pass"
   local me = thread_index or 0

   local all = {}
   for line in io.lines(path) do
      if #line > 0 then
         all[#all + 1] = line
      end
   end
   if #all == 0 then
      error("no tokens in " .. path)
   end

   if #all == 1 then
      wrk.headers["Authorization"] = "Bearer " .. all[1]
   else
      for i = me + 1, #all, thread_count do
         prebuilt[#prebuilt + 1] = wrk.format(nil, nil, { Authorization = "Bearer " .. all[i] })
      end
      count = #prebuilt
      if count == 0 then
         error("more wrk threads than tokens")
      end
      -- A global defined here, not at the top level: wrk keeps the request static when no
      -- global `request` exists after init().
      request = function()
         if pass_start_us == 0 then
            pass_start_us = now_us()
         end
         next_index = next_index % count + 1
         return prebuilt[next_index]
      end
   end

   if first_pass and count == 0 then
      error("first-pass needs more than one token")
   end
   if first_pass then
      -- Likewise: without a global `response`, wrk does not parse responses at all.
      response = function()
         responses = responses + 1
         if responses == count then
            pass_end_us = now_us()
            wrk.thread:stop()
         end
      end
   end
end

function done(summary, latency, requests)
   -- The span of the first pass over all threads; 0 when not a first pass or one never ended.
   local start_us, end_us = nil, 0
   for _, thread in ipairs(threads) do
      local s, e = thread:get("pass_start_us"), thread:get("pass_end_us")
      if s == nil or e == nil or e == 0 then
         end_us = -1
         break
      end
      if start_us == nil or s < start_us then start_us = s end
      if e > end_us then end_us = e end
   end
   local pass_us = 0
   if start_us ~= nil and end_us > 0 then
      pass_us = end_us - start_us
   end

   local e = summary.errors
   io.write(string.format(
      "LOADBENCH requests=%d duration_us=%d pass_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, pass_us, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50.0), latency:percentile(99.0)))
end
