--[[
esl_bridge_hotdesk.lua: the hotdesk feature codes (*11 login, *12 logout, *13 toggle).

Dialplan usage (conf/dialplan/default/00_esl_bridge.xml):
    <action application="lua" data="esl_bridge_hotdesk.lua login $1"/>
  argv[1]  login | logout | toggle
  argv[2]  the hotdesk id dialled after the code (*111234 -> "1234"); nil for *11 alone, as
           mod_lua drops a trailing empty argument ("login " gives argv = {[0]=script, "login"})

The calling device (SIP user and realm, see esl_bridge_lib.caller) asks esl-bridge to log the
user with that hotdesk id in or out: POST <esl_bridge_url>/freeswitch/hotdesk/<action> with the
form fields sip_user, realm, hotdesk_id (if any), pin (only once esl-bridge answered
"pin_required") and call_uuid. esl-bridge answers JSON:
    {"result": "ok" | "pin_required" | "invalid_pin" | "unknown_id" | "unknown_device"
               | "too_many_attempts" | "disabled",
     "action": "login" | "logout", "prompt": "<sound path or empty>", ...}

The caller hears esl-bridge's prompt when it sends one, else the confirmation tone for "ok"
and the error tone for anything else. If esl-bridge cannot be reached (connection refused, no
answer within the timeout, HTTP 502/503/504, no reply from mod_curl) the caller hears the stock
"not available" prompt and the outcome is "unavailable"; if it answers something unusable, the
error tone and "error". Either way a warning says which, and the script ends normally.

The PIN is only ever in the POST body: never in a URL, a channel variable or a log line of
ours. mod_curl itself logs the post data at DEBUG level.
]]

-- The shared helpers live beside this script ($${script_dir}). Without them the caller still
-- hears the error tone.
local loaded, lib = pcall(dofile,
  (freeswitch.getGlobalVariable("script_dir") or ".") .. "/esl_bridge_lib.lua")
if not loaded then
  freeswitch.consoleLog("ERR", "esl-bridge: cannot load esl_bridge_lib.lua: " .. tostring(lib) .. "\n")
  if session and session:ready() then
    session:streamFile("tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)")
  end
  return
end

local ACTIONS = { login = true, logout = true, toggle = true }
local MAX_DIGITS = 15
local MAX_PIN_ATTEMPTS = 3

local PROMPT_ID = "ivr/ivr-please_enter_extension_followed_by_pound.wav"
local PROMPT_PIN = "ivr/ivr-please_enter_pin_followed_by_pound.wav"
local PROMPT_INVALID = "ivr/ivr-that_was_an_invalid_entry.wav"

local function play(file)
  if session:ready() then
    session:streamFile(file)
  end
end

-- The end of every path through the script: remember the outcome on the channel (for the
-- dialplan and CDRs) and let the caller hear it.
local function finish(result, prompt)
  session:setVariable("esl_bridge_hotdesk_result", result)
  local sound = lib.safe_prompt(prompt)
  if sound then
    play(sound)
  elseif result == "ok" then
    play(lib.CONFIRM_TONE)
  elseif result == lib.UNAVAILABLE then
    play(lib.UNAVAILABLE_PROMPT)
  else
    play(lib.ERROR_TONE)
  end
end

-- `kind` is lib.UNAVAILABLE when esl-bridge could not be reached, else the failure is an error.
local function fail(reason, kind)
  lib.log("WARNING", "hotdesk: " .. reason)
  finish(kind == lib.UNAVAILABLE and lib.UNAVAILABLE or "error")
end

-- Digits from the caller: up to 3 tries, '#' ends the entry early. Returns "" when the caller
-- gave nothing valid or hung up. No variable name is given, so the digits (a PIN, possibly)
-- are not stored on the channel.
local function ask_digits(min, max, prompt)
  if not session:ready() then
    return ""
  end
  local regex = "^\\d{" .. min .. "," .. max .. "}$"
  local digits = session:playAndGetDigits(min, max, 3, 5000, "#", prompt, PROMPT_INVALID, regex)
  if type(digits) ~= "string" or not digits:match("^%d+$") then
    return ""
  end
  return digits
end

local function main()
  local args = argv or {}
  local action = args[1]
  if not session:ready() then
    return -- the caller is already gone: nothing to do, nobody to tell
  end
  if not ACTIONS[action] then
    return fail("unknown action " .. tostring(action) .. " (expected login, logout or toggle)")
  end
  session:answer()

  local cfg, problem = lib.config()
  if not cfg then
    return fail(problem)
  end
  local sip_user, realm = lib.caller(session)
  if not sip_user then
    return fail("the caller is not an authenticated device; cannot " .. action)
  end

  local hotdesk_id = args[2] or ""
  if not hotdesk_id:match("^%d*$") or #hotdesk_id > MAX_DIGITS then
    return fail("hotdesk id must be digits")
  end
  -- *11 and *13 need an id: ask when none was dialled. *12 alone logs everyone out.
  if hotdesk_id == "" and action ~= "logout" then
    hotdesk_id = ask_digits(1, MAX_DIGITS, PROMPT_ID)
    if hotdesk_id == "" then
      return fail("no hotdesk id entered")
    end
  end

  local uuid = lib.call_uuid(session)
  local function form(pin)
    local fields = { { "sip_user", sip_user }, { "realm", realm } }
    if hotdesk_id ~= "" then
      fields[#fields + 1] = { "hotdesk_id", hotdesk_id }
    end
    if pin then
      fields[#fields + 1] = { "pin", pin }
    end
    fields[#fields + 1] = { "call_uuid", uuid }
    return fields
  end
  local path = "/freeswitch/hotdesk/" .. action

  local answer, err, kind = lib.post(cfg, path, form(nil))
  local pin_attempts = 0
  -- Ask for the PIN only when esl-bridge wants one; after a wrong PIN, ask again (esl-bridge
  -- limits attempts too and then answers "too_many_attempts").
  while answer and pin_attempts < MAX_PIN_ATTEMPTS
      and (answer.result == "pin_required" or answer.result == "invalid_pin") do
    local pin_prompt = PROMPT_PIN
    if answer.result == "invalid_pin" then
      play(lib.safe_prompt(answer.prompt) or PROMPT_INVALID)
    else
      pin_prompt = lib.safe_prompt(answer.prompt) or PROMPT_PIN -- esl-bridge's, if it sent one
    end
    local pin = ask_digits(4, MAX_DIGITS, pin_prompt)
    if pin == "" then
      return fail("no PIN entered")
    end
    pin_attempts = pin_attempts + 1
    answer, err, kind = lib.post(cfg, path, form(pin))
  end

  if not answer then
    return fail(err, kind)
  end
  local result = answer.result
  if type(result) ~= "string" or not result:match("^[%w_]+$") then
    return fail("esl-bridge answered without a usable result")
  end
  if result == "pin_required" then
    return fail("esl-bridge still asks for a PIN after " .. pin_attempts .. " of them")
  end
  lib.log(result == "ok" and "INFO" or "NOTICE", "hotdesk " .. action .. " by " .. sip_user
    .. "@" .. realm .. (hotdesk_id ~= "" and (" for id " .. hotdesk_id) or "") .. ": "
    .. result .. (type(answer.action) == "string" and answer.action:match("^%a+$")
      and (" (" .. answer.action .. ")") or ""))
  finish(result, answer.prompt)
end

-- Whatever happens, the call is not left in a broken Lua state: an unexpected error is logged
-- and the caller hears the error tone.
local ok, err = pcall(main)
if not ok then
  lib.log("ERR", "hotdesk script failed: " .. tostring(err))
  pcall(finish, "error")
end
