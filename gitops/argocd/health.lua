-- Argo CD health of lockstep's FeatureRelease and DatabaseMigration (lockstep.dev/v1alpha1),
-- read from the kstatus conditions lockstep writes. The mapping is in docs/gitops.md.
local hs = {status = "Progressing", message = "Waiting for lockstep to observe the latest spec"}
if obj.status == nil or obj.status.observedGeneration ~= obj.metadata.generation then
  return hs
end
local conditions = {}
for _, condition in ipairs(obj.status.conditions or {}) do
  conditions[condition.type] = condition
end
local function holds(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
hs.message = obj.status.message or ""
if holds("Stalled") then
  -- rolled back, or blocked until the spec or the world changes
  hs.status = "Degraded"
elseif holds("Reconciling") and conditions["Reconciling"].reason == "ProgressingWithRetry" then
  -- an error lockstep retries by itself (database unreachable, Secret or Service missing)
  hs.status = "Degraded"
elseif obj.status.phase == "Paused" then
  -- waiting for `kubectl lockstep promote` or `kubectl lockstep resume`
  hs.status = "Suspended"
elseif holds("Ready") then
  hs.status = "Healthy"
end
return hs
