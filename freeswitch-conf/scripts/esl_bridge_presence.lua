--[[
esl_bridge_presence.lua: put a device's static presence id on the calls it takes part in.

Calls a phone makes already carry its presence id (the directory sets the channel variable
presence_id) and calls to a phone carry it too (the directory's dial-string). This script covers
the rest, from conf/dialplan/default/00_esl_bridge.xml, before the bridge:

  lua esl_bridge_presence.lua number [<number>]
      The call is about to be bridged to <number> (default: the channel's destination_number),
      which may be the call-forward number of a cellphone device. esl-bridge answers that
      device's presence id; the script exports it to the leg the bridge will create
      (export nolocal:presence_id=<id>), so BLF watchers of that id see the forwarded call ring,
      be answered and end. The calling leg keeps its own presence id. The id is also kept in the
      channel variable esl_bridge_presence_id.
  lua esl_bridge_presence.lua caller
      The calling device's channel has no presence_id (a fallback: the directory normally sets
      it): ask esl-bridge for the device's presence id and set presence_id on the channel.

Request: POST <esl_bridge_url>/freeswitch/presence with the form fields realm and number (or
sip_user). Answer: {"presence_id": "<id@realm>" | null, "device_id": "<id>" | null}.
Nothing is played. When esl-bridge cannot be reached or answers nothing usable, the script logs
a warning and the call goes on without the static presence id.
]]

local loaded, lib = pcall(dofile,
  (freeswitch.getGlobalVariable("script_dir") or ".") .. "/esl_bridge_lib.lua")
if not loaded then
  freeswitch.consoleLog("ERR", "esl-bridge: cannot load esl_bridge_lib.lua: " .. tostring(lib) .. "\n")
  return
end

local MAX_NUMBER = 35

-- A presence id as esl-bridge stores it (SPEC: letters, digits and ._+*#-) with its realm.
local function valid_presence_id(value)
  return type(value) == "string" and #value <= 400
    and value:match("^[%w%._%+%*#%-]+@[%w%.%-]+$") ~= nil
end

local function call_realm()
  local realm = lib.first(session:getVariable("sip_auth_realm"), session:getVariable("domain_name"),
    session:getVariable("dialed_domain"))
  if realm and #realm <= 253 and realm:match("^[%w%.%-]+$") then
    return realm
  end
  return nil
end

local function lookup(cfg, fields)
  local answer, err = lib.post(cfg, "/freeswitch/presence", fields)
  if not answer then
    lib.log("WARNING", "presence lookup: " .. err)
    return nil
  end
  local presence_id = answer.presence_id
  if type(presence_id) ~= "string" then
    return nil -- null: no such device, nothing to apply
  end
  if not valid_presence_id(presence_id) then
    lib.log("WARNING", "presence lookup: esl-bridge answered an unusable presence_id")
    return nil
  end
  return presence_id
end

local function for_number(cfg)
  local number = lib.first((argv or {})[2], session:getVariable("destination_number"))
  if not number or #number > MAX_NUMBER or not number:match("^%+?[%d%*#]+$") then
    return -- not a number a cellphone device could forward to
  end
  local realm = call_realm()
  if not realm then
    return
  end
  local presence_id = lookup(cfg, { { "realm", realm }, { "number", number } })
  if presence_id then
    session:setVariable("esl_bridge_presence_id", presence_id)
    -- nolocal: only the legs this channel originates get it, not the caller's own leg
    session:execute("export", "nolocal:presence_id=" .. presence_id)
    lib.log("INFO", "presence: calls to " .. number .. " show as " .. presence_id)
  end
end

local function for_caller(cfg)
  local sip_user, realm = lib.caller(session)
  if not sip_user then
    return
  end
  local presence_id = lookup(cfg, { { "realm", realm }, { "sip_user", sip_user } })
  if presence_id then
    session:setVariable("presence_id", presence_id)
  end
end

local function main()
  local mode = (argv or {})[1] or "number"
  local cfg, problem = lib.config()
  if not cfg then
    lib.log("WARNING", "presence lookup skipped: " .. problem)
    return
  end
  if mode == "number" then
    for_number(cfg)
  elseif mode == "caller" then
    for_caller(cfg)
  else
    lib.log("WARNING", "presence: unknown mode " .. tostring(mode) .. " (expected number or caller)")
  end
end

local ok, err = pcall(main)
if not ok then
  lib.log("ERR", "presence script failed: " .. tostring(err))
end
