--[[
esl_bridge_lib.lua: what the esl-bridge Lua callouts share.

Loaded by esl_bridge_hotdesk.lua and esl_bridge_presence.lua (from the same scripts directory);
it is not a dialplan entry point itself. It:
  * reads the settings from FreeSWITCH global variables (set once in conf/esl_bridge.xml):
      esl_bridge_url             base URL of esl-bridge (default http://127.0.0.1:8000)
      esl_bridge_secret          shared secret, sent as the X-ESL-Bridge-Secret header
      esl_bridge_connect_timeout seconds, optional (default 2)
      esl_bridge_timeout         seconds for the whole request, optional (default 3)
  * POSTs form data to esl-bridge through mod_curl's `curl` API and decodes the JSON answer
    with mod_lua's freeswitch.JSON;
  * never raises for a network or protocol problem: post() returns nil, a reason and whether
    esl-bridge was unavailable or answered wrongly, so that a caller can tell the caller so and
    carry on.

Written for the Lua 5.1 to 5.4 that mod_lua may be built with: no goto, no integer division,
no bit operators, no utf8 library.
]]

local M = {}

M.DEFAULT_URL = "http://127.0.0.1:8000"
M.DEFAULT_CONNECT_TIMEOUT = 2
M.DEFAULT_TIMEOUT = 3

-- The secret shipped in conf/esl_bridge.xml. A script refuses to send it: a deployment that
-- forgot to set its own secret fails loudly instead of running with a published one.
M.PLACEHOLDER_SECRET = "change-me-to-a-long-random-secret"

-- Tones from the stock vars.xml: "bong" as the confirmation, the SIT tone as the error; the
-- stock "not available" prompt when esl-bridge cannot be reached (refused, timed out, no reply).
M.CONFIRM_TONE = "tone_stream://%(200,0,500,600,700)"
M.ERROR_TONE = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"
M.UNAVAILABLE_PROMPT = "ivr/ivr-not_available.wav"

-- mod_curl splits its argument string on spaces (quotes and backslashes have meaning to it),
-- so nothing we pass may contain them. The URL and the secret are checked against these.
local URL_PATTERN = "^https?://[%w%-%._~:/%[%]]+$"
local SECRET_PATTERN = "^[%w%-%._~+/=]+$"

function M.log(level, message)
  freeswitch.consoleLog(level, "esl-bridge: " .. message .. "\n")
end

local function nonempty(value)
  return type(value) == "string" and value ~= ""
end
M.nonempty = nonempty

-- First argument that is a non-empty string, else nil.
function M.first(...)
  local n = select("#", ...)
  for i = 1, n do
    local value = select(i, ...)
    if nonempty(value) then
      return value
    end
  end
  return nil
end

local function seconds_setting(name, default)
  local raw = freeswitch.getGlobalVariable(name)
  if not nonempty(raw) then
    return default
  end
  local value = tonumber(raw)
  if value == nil or value < 1 or value > 60 or value ~= math.floor(value) then
    M.log("WARNING", name .. " must be a whole number of seconds from 1 to 60; using " .. default)
    return default
  end
  return math.floor(value)
end

--- Settings from the global variables, or nil and a reason when they are unusable.
function M.config()
  local url = freeswitch.getGlobalVariable("esl_bridge_url")
  if not nonempty(url) then
    url = M.DEFAULT_URL
  end
  url = url:gsub("/+$", "")
  if not url:match(URL_PATTERN) then
    return nil, "esl_bridge_url is not an http(s) URL without spaces or quotes"
  end
  local secret = freeswitch.getGlobalVariable("esl_bridge_secret")
  if not nonempty(secret) then
    return nil, "esl_bridge_secret is not set"
  end
  if secret == M.PLACEHOLDER_SECRET then
    return nil, "esl_bridge_secret still has the shipped placeholder value; set your own"
  end
  if not secret:match(SECRET_PATTERN) then
    return nil, "esl_bridge_secret may only hold letters, digits and -._~+/="
  end
  return {
    url = url,
    secret = secret,
    connect_timeout = seconds_setting("esl_bridge_connect_timeout", M.DEFAULT_CONNECT_TIMEOUT),
    timeout = seconds_setting("esl_bridge_timeout", M.DEFAULT_TIMEOUT),
  }
end

---------------------------------------------------------------------------------------------
-- Form encoding for mod_curl
---------------------------------------------------------------------------------------------

-- application/x-www-form-urlencoded value: everything but unreserved characters as %XX
-- (a space too, never "+").
function M.form_escape(value)
  return (tostring(value):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- The `post` argument for mod_curl from an ordered list of {name, value} pairs.
-- mod_curl URL-decodes that argument once before sending it (recorded on FreeSWITCH 1.10),
-- so the form is encoded twice: "100%" -> "100%25" (the form) -> "100%2525" (what we pass).
-- The result holds only [A-Za-z0-9%&=._~-]: no space can split mod_curl's arguments.
function M.curl_post_data(fields)
  local parts = {}
  for i, pair in ipairs(fields) do
    local form = M.form_escape(pair[1]) .. "=" .. M.form_escape(pair[2])
    parts[i] = (form:gsub("%%", "%%25"))
  end
  return table.concat(parts, "&")
end

---------------------------------------------------------------------------------------------
-- JSON decoding
---------------------------------------------------------------------------------------------

--- Decode JSON text with mod_lua's freeswitch.JSON (FreeSWITCH 1.10 has it): the value, or nil
-- and a reason. As recorded on 1.10: numbers come back as floats (1 is 1.0 under Lua 5.3+),
-- null leaves the key out, text that is not JSON gives nil, and a bare string or number gives
-- an empty table.
function M.json_decode(text)
  if type(text) ~= "string" then
    return nil, "not a string"
  end
  if freeswitch.JSON == nil then
    return nil, "this mod_lua has no freeswitch.JSON (FreeSWITCH 1.10 or later has it)"
  end
  local ok, decoder = pcall(freeswitch.JSON)
  if not ok or decoder == nil then
    return nil, "freeswitch.JSON() failed: " .. tostring(decoder)
  end
  local decoded_ok, result = pcall(decoder.decode, decoder, text)
  if decoded_ok and type(result) == "table" then
    return result
  end
  return nil, "not JSON"
end

--- A code mod_curl reports ("7", or 7 / 7.0 from a version that sends numbers) as "7".
function M.code(value)
  if type(value) == "number" then
    return tostring(math.floor(value))
  end
  if type(value) == "string" then
    return value
  end
  return nil
end

---------------------------------------------------------------------------------------------
-- The HTTP call
---------------------------------------------------------------------------------------------

-- What each failure means to the caller: esl-bridge could not be reached at all ("unavailable":
-- refused, unknown host, timed out, no reply), or it answered something unusable ("error").
M.UNAVAILABLE = "unavailable"
M.ERROR = "error"

-- curl exit codes worth naming in a log line (mod_curl reports them as strings).
local CURL_ERRORS = { ["6"] = "host not found", ["7"] = "connection refused",
  ["28"] = "no answer within the timeout" }

--- POST a form to esl-bridge and return its decoded JSON answer (a table).
-- `path` starts with "/" (e.g. "/freeswitch/hotdesk/login"); `fields` is an ordered list of
-- {name, value} pairs. On any failure returns nil, a reason fit for the log (it never contains
-- the form, which may hold a PIN) and what kind of failure it was: M.UNAVAILABLE (esl-bridge
-- refused the connection, could not be found, did not answer within the timeout, answered 502,
-- 503 or 504, or mod_curl gave no reply) or M.ERROR (another non-200 answer, a body that is
-- missing or not a JSON object).
function M.post(cfg, path, fields)
  -- Exactly 10 space-separated arguments; the form goes last, as mod_curl's syntax wants.
  local args = table.concat({
    cfg.url .. path,
    "json",
    "connect-timeout", tostring(cfg.connect_timeout),
    "timeout", tostring(cfg.timeout),
    -- one token: a "Name: value" with a space would be split by mod_curl
    "append_headers", "X-ESL-Bridge-Secret:" .. cfg.secret,
    "post", M.curl_post_data(fields),
  }, " ")
  local api = freeswitch.API()
  local ok, raw = pcall(api.execute, api, "curl", args)
  if not ok then
    return nil, "mod_curl failed: " .. tostring(raw), M.UNAVAILABLE
  end
  if not nonempty(raw) then
    return nil, "mod_curl gave no reply for " .. cfg.url .. path, M.UNAVAILABLE
  end
  if raw:sub(1, 4) == "-ERR" or raw:sub(1, 7) == "INVALID" then
    -- "-ERR no reply" (what the event socket says for an empty output), or "INVALID
    -- COMMAND!" without mod_curl: the first line, without anything that is not printable.
    local line = raw:match("^[^\n]*"):gsub("[^%w%p ]", ""):sub(1, 80)
    return nil, "mod_curl answered '" .. line .. "' for " .. cfg.url .. path
      .. " (is mod_curl loaded?)", M.UNAVAILABLE
  end
  local outcome = M.json_decode(raw)
  if type(outcome) ~= "table" or (outcome.exit_code == nil and outcome.status_code == nil) then
    return nil, "mod_curl output is not its JSON (is mod_curl loaded?)", M.ERROR
  end
  -- Codes are strings ("0", "200"); older mod_curl versions have no exit_code.
  local exit_code = M.code(outcome.exit_code) or "0"
  if exit_code ~= "0" then
    return nil, "esl-bridge at " .. cfg.url .. " did not answer " .. path .. ": curl exit code "
      .. exit_code .. (CURL_ERRORS[exit_code] and (" (" .. CURL_ERRORS[exit_code]
      .. (exit_code == "28" and (", " .. cfg.timeout .. " s") or "") .. ")") or ""),
      M.UNAVAILABLE
  end
  local status = M.code(outcome.status_code) or ""
  if status ~= "200" then
    -- 502, 503, 504: esl-bridge (or a proxy before it) is there but cannot serve right now
    local busy = status == "502" or status == "503" or status == "504"
    return nil, "esl-bridge answered HTTP " .. status .. " to " .. path,
      busy and M.UNAVAILABLE or M.ERROR
  end
  if not nonempty(outcome.body) then
    return nil, "esl-bridge answered an empty body to " .. path, M.ERROR
  end
  local answer = M.json_decode(outcome.body)
  if type(answer) ~= "table" or outcome.body:match("^%s*{") == nil then
    return nil, "esl-bridge answered something that is not a JSON object to " .. path, M.ERROR
  end
  return answer
end

---------------------------------------------------------------------------------------------
-- Channel helpers
---------------------------------------------------------------------------------------------

--- The calling device as esl-bridge knows it: SIP user and realm from the digest the phone
-- authenticated with, else the directory user the channel belongs to (user_name/domain_name,
-- or dialed_user/dialed_domain on a channel FreeSWITCH originated to the phone, as QuickCall
-- does). sip_from_user is never used: it is whatever the phone wrote.
function M.caller(session)
  local user = M.first(session:getVariable("sip_auth_username"), session:getVariable("user_name"),
    session:getVariable("dialed_user"))
  local realm = M.first(session:getVariable("sip_auth_realm"), session:getVariable("domain_name"),
    session:getVariable("dialed_domain"))
  if not (user and realm) then
    return nil, nil
  end
  if #user > 64 or not user:match("^[%w%._%+%-]+$") or #realm > 253
    or not realm:match("^[%w%.%-]+$") then
    return nil, nil
  end
  return user, realm
end

--- The call's uuid, for esl-bridge's logs.
function M.call_uuid(session)
  local uuid = M.first(session:getVariable("uuid"))
  if uuid and uuid:match("^[%w%-]+$") then
    return uuid
  end
  return ""
end

--- A sound path esl-bridge asked us to play, when it looks like one (relative to the sounds
-- directory, no "..", no variables or API calls); else nil.
function M.safe_prompt(prompt)
  if not nonempty(prompt) or #prompt > 200 then
    return nil
  end
  if not prompt:match("^[%w][%w%-%._/]*$") or prompt:find("..", 1, true) then
    return nil
  end
  return prompt
end

return M
