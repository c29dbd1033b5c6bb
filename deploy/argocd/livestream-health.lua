-- Argo CD health of onair.dev/Livestream, from the kstatus conditions the operator keeps:
--   Ready        True once the stream serves what its spec asks
--   Reconciling  True while the operator converges (children rolling out)
--   Stalled      True when it cannot converge until someone changes something
-- and status.observedGeneration, the spec generation those conditions describe.
-- Argo CD runs this with gopher-lua (Lua 5.1): `obj` is the live object, return {status, message}.
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function says(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return default
end

local status = obj.status
local generation = obj.metadata.generation
local observed = nil
if status ~= nil then
  observed = status.observedGeneration
end

if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the onair operator to report status"
  return hs
end

-- Conditions written for an older spec say nothing about the current one.
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the onair operator to observe generation %d", generation)
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = says(stalled, "Stalled")
  return hs
end

local reconciling = condition(status, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = says(reconciling, "Reconciling")
  return hs
end

local ready = condition(status, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = says(ready, "Waiting for the Ready condition")
  return hs
end

if ready.status == "True" then
  -- spec.active: false keeps every object but refuses pushes: paused, not broken.
  if obj.spec ~= nil and obj.spec.active == false then
    hs.status = "Suspended"
    hs.message = "Inactive (spec.active is false): pushes are refused"
    return hs
  end
  hs.status = "Healthy"
  hs.message = says(ready, "Ready")
  return hs
end

-- Ready=False while neither converging nor stalled: the operator is done and it is not ready.
hs.status = "Degraded"
hs.message = says(ready, "Not ready")
return hs
