-- qhost.runtime.error_policy: what happens when a message fails (Quix's
-- error callbacks). The app's on_consumer_error, on_processing_error and
-- on_producer_error get (err, row, logger); returning true suppresses the
-- error (the message, or the failed delivery, is skipped and the app goes
-- on); without a callback, or when it returns anything else, the error
-- stops the app. A callback that raises stops the app with its own error.
-- on_error(kind), when given, is told of every error (the metrics).
local log = require("qhost.log")

local policy = {}

local Policy = {}
Policy.__index = Policy

function policy.new(app, on_error)
  return setmetatable({
    consumer = app.on_consumer_error or nil,
    processing = app.on_processing_error or nil,
    producer = app.on_producer_error or nil,
    on_error = on_error,
  }, Policy)
end

-- policy:suppressed(kind, err, row) -> true when the callback for kind
-- ("consumer", "processing", "producer") suppressed err.
function Policy:suppressed(kind, err, row)
  if self.on_error then self.on_error(kind) end
  local callback = self[kind]
  return callback ~= nil and callback(err, row, log) == true
end

-- policy:handle(kind, err, row): returns when suppressed, else raises err.
function Policy:handle(kind, err, row)
  if not self:suppressed(kind, err, row) then error(err, 0) end
end

return policy
