--[[
esl_bridge_lib.lua: what the esl-bridge Lua callouts share.

Loaded by esl_bridge_hotdesk.lua and esl_bridge_presence.lua (from the same scripts directory);
it is not a dialplan entry point itself. It:
  * reads the settings from FreeSWITCH global variables (set once in conf/esl_bridge.xml):
      esl_bridge_url             base URL of esl-bridge (default http://127.0.0.1:8000)
      esl_bridge_secret          shared secret, sent as the X-ESL-Bridge-Secret header
      esl_bridge_connect_timeout seconds, optional (default 2)
      esl_bridge_timeout         seconds for the whole request, optional (default 3)
  * POSTs form data to esl-bridge through mod_curl's `curl` API and decodes the JSON answer;
  * never raises for a network or protocol problem: post() returns nil and a reason instead,
    so that a caller can play an error tone and carry on.

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

-- Tones from the stock vars.xml: "bong" as the confirmation, the SIT tone as the error.
M.CONFIRM_TONE = "tone_stream://%(200,0,500,600,700)"
M.ERROR_TONE = "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"

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

-- A small strict decoder, used when mod_lua has no freeswitch.JSON class. JSON null becomes
-- nil (as it does with freeswitch.JSON). Returns the value, or nil and a reason.
local json_decoder = {}

local function json_error(state, what)
  error({ json = true, message = what .. " at byte " .. state.pos }, 0)
end

local function skip_space(state)
  state.pos = state.text:find("[^ \t\r\n]", state.pos) or (#state.text + 1)
end

local function utf8_char(code)
  if code < 0x80 then
    return string.char(code)
  elseif code < 0x800 then
    return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40)
  elseif code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000),
      0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
    0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
  r = "\r", t = "\t" }

local function read_hex4(state)
  local hex = state.text:sub(state.pos, state.pos + 3)
  if not hex:match("^%x%x%x%x$") then
    json_error(state, "bad \\u escape")
  end
  state.pos = state.pos + 4
  return tonumber(hex, 16)
end

function json_decoder.string(state)
  local text, out = state.text, {}
  state.pos = state.pos + 1 -- opening quote
  while true do
    local stop = text:find('["\\%c]', state.pos)
    if not stop then
      json_error(state, "unterminated string")
    end
    out[#out + 1] = text:sub(state.pos, stop - 1)
    local c = text:sub(stop, stop)
    state.pos = stop + 1
    if c == '"' then
      return table.concat(out)
    elseif c ~= "\\" then
      json_error(state, "control character in string")
    end
    local e = text:sub(state.pos, state.pos)
    state.pos = state.pos + 1
    if ESCAPES[e] then
      out[#out + 1] = ESCAPES[e]
    elseif e == "u" then
      local code = read_hex4(state)
      if code >= 0xD800 and code <= 0xDBFF and text:sub(state.pos, state.pos + 1) == "\\u" then
        state.pos = state.pos + 2
        local low = read_hex4(state)
        if low < 0xDC00 or low > 0xDFFF then
          json_error(state, "bad surrogate pair")
        end
        code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
      end
      out[#out + 1] = utf8_char(code)
    else
      json_error(state, "bad escape")
    end
  end
end

local value -- forward declaration: the decoder is recursive

function json_decoder.object(state)
  local result = {}
  state.pos = state.pos + 1
  skip_space(state)
  if state.text:sub(state.pos, state.pos) == "}" then
    state.pos = state.pos + 1
    return result
  end
  while true do
    skip_space(state)
    if state.text:sub(state.pos, state.pos) ~= '"' then
      json_error(state, "expected a key")
    end
    local key = json_decoder.string(state)
    skip_space(state)
    if state.text:sub(state.pos, state.pos) ~= ":" then
      json_error(state, "expected ':'")
    end
    state.pos = state.pos + 1
    result[key] = value(state)
    skip_space(state)
    local c = state.text:sub(state.pos, state.pos)
    state.pos = state.pos + 1
    if c == "}" then
      return result
    elseif c ~= "," then
      json_error(state, "expected ',' or '}'")
    end
  end
end

function json_decoder.array(state)
  local result, n = {}, 0
  state.pos = state.pos + 1
  skip_space(state)
  if state.text:sub(state.pos, state.pos) == "]" then
    state.pos = state.pos + 1
    return result
  end
  while true do
    n = n + 1
    result[n] = value(state)
    skip_space(state)
    local c = state.text:sub(state.pos, state.pos)
    state.pos = state.pos + 1
    if c == "]" then
      return result
    elseif c ~= "," then
      json_error(state, "expected ',' or ']'")
    end
  end
end

local LITERALS = { ["true"] = true, ["false"] = false, ["null"] = json_decoder }

value = function(state)
  skip_space(state)
  state.depth = state.depth + 1
  if state.depth > 32 then
    json_error(state, "nested too deeply")
  end
  local text, result = state.text, nil
  local c = text:sub(state.pos, state.pos)
  if c == "{" then
    result = json_decoder.object(state)
  elseif c == "[" then
    result = json_decoder.array(state)
  elseif c == '"' then
    result = json_decoder.string(state)
  else
    local number = text:match("^-?%d+", state.pos)
    local word = text:match("^%a+", state.pos)
    if number then
      if number:match("^-?0%d") then
        json_error(state, "leading zero")
      end
      local after = state.pos + #number
      local fraction = text:match("^%.%d+", after) or ""
      local exponent = text:match("^[eE][-+]?%d+", after + #fraction) or ""
      number = number .. fraction .. exponent
      state.pos = state.pos + #number
      result = tonumber(number)
    elseif word and LITERALS[word] ~= nil then
      state.pos = state.pos + #word
      result = LITERALS[word]
      if result == json_decoder then -- null
        result = nil
      end
    else
      json_error(state, "unexpected character")
    end
  end
  state.depth = state.depth - 1
  return result
end

--- Decode JSON text with the built-in decoder: the value, or nil and a reason.
function M.json_decode_builtin(text)
  if type(text) ~= "string" then
    return nil, "not a string"
  end
  local state = { text = text, pos = 1, depth = 0 }
  local ok, result = pcall(function()
    local v = value(state)
    skip_space(state)
    if state.pos <= #text then
      json_error(state, "trailing characters")
    end
    return v
  end)
  if ok then
    return result
  end
  if type(result) == "table" and result.json then
    return nil, result.message
  end
  return nil, tostring(result)
end

--- Decode JSON text: with mod_lua's freeswitch.JSON when this FreeSWITCH has it, else with
-- the built-in decoder. The value, or nil and a reason.
function M.json_decode(text)
  if type(text) ~= "string" then
    return nil, "not a string"
  end
  if freeswitch.JSON ~= nil then
    local ok, decoder = pcall(freeswitch.JSON)
    if ok and decoder ~= nil then
      local decoded_ok, result = pcall(decoder.decode, decoder, text)
      if decoded_ok and result ~= nil then
        return result
      end
      return nil, "freeswitch.JSON could not decode it"
    end
  end
  return M.json_decode_builtin(text)
end

---------------------------------------------------------------------------------------------
-- The HTTP call
---------------------------------------------------------------------------------------------

-- curl exit codes worth naming in a log line (mod_curl reports them as strings).
local CURL_ERRORS = { ["6"] = "host not found", ["7"] = "connection refused or unreachable",
  ["28"] = "timed out" }

--- POST a form to esl-bridge and return its decoded JSON answer (a table).
-- `path` starts with "/" (e.g. "/freeswitch/hotdesk/login"); `fields` is an ordered list of
-- {name, value} pairs. On any failure (esl-bridge down or slow, a non-200 answer, a body that
-- is missing or not a JSON object) returns nil and a reason fit for the log: the reason never
-- contains the form, which may hold a PIN.
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
    return nil, "mod_curl failed: " .. tostring(raw)
  end
  if not nonempty(raw) then
    return nil, "mod_curl returned nothing (is mod_curl loaded?)"
  end
  local outcome = M.json_decode(raw)
  if type(outcome) ~= "table" then
    return nil, "mod_curl output is not JSON (is mod_curl loaded?)"
  end
  -- Older mod_curl versions have no exit_code; status_code may be a string or a number.
  local exit_code = tostring(outcome.exit_code or "0")
  if exit_code ~= "0" then
    return nil, "esl-bridge at " .. cfg.url .. " did not answer: curl exit code " .. exit_code
      .. (CURL_ERRORS[exit_code] and (" (" .. CURL_ERRORS[exit_code] .. ")") or "")
  end
  local status = tostring(outcome.status_code or "")
  if status ~= "200" then
    return nil, "esl-bridge answered HTTP " .. status .. " to " .. path
  end
  if not nonempty(outcome.body) then
    return nil, "esl-bridge answered an empty body to " .. path
  end
  local answer = M.json_decode(outcome.body)
  if type(answer) ~= "table" then
    return nil, "esl-bridge answered something that is not a JSON object to " .. path
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
