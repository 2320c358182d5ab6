-- Envoy's checks on requests from HTTP clients (JSON and grpc-web) before they become gRPC calls.
-- Native gRPC requests never run this script: envoy_config/http_filters.py wraps the filter in a
-- matcher that skips it for their content type, so the terminals' path pays nothing for it.
--
-- Why: gRPC core parses some request headers itself (grpc-timeout, grpc-encoding, grpc-status, every
-- `*-bin` header as base64, ...) and fails a call as INTERNAL (HTTP 500) before any of our code runs
-- when one is malformed, and it fails a grpc-web frame flagged compressed without a grpc-encoding the
-- same way. A gRPC library never sends such things; an HTTP client may send anything. So here:
--   * request headers over MAX_REQUEST_HEADER_BYTES (names + values, pseudo-headers included) are
--     refused: 431 / RESOURCE_EXHAUSTED. The codec has accepted them (its ceiling is far higher), so the
--     connection stays open for the client's next request;
--   * a body over MAX_REQUEST_BODY_BYTES is refused: 413 / RESOURCE_EXHAUSTED. Without a
--     content-length, the body is buffered and Envoy's buffer limit (the same size) answers;
--   * a malformed grpc-timeout or `*-bin` value is refused: 400 / INVALID_ARGUMENT;
--   * grpc-web: a grpc-encoding other than identity, gzip or deflate is refused (UNIMPLEMENTED, as gRPC
--     does), and so is a frame flagged compressed without one (INVALID_ARGUMENT);
--   * other gRPC protocol headers (grpc-status, grpc-trace-bin, ...) are dropped: the servers'
--     clients have no business setting them.
-- JSON clients get an HTTP status whose JSON body local_reply_config writes (google.rpc.Status);
-- grpc-web clients get HTTP 200 and the gRPC status in a trailers frame.
--
-- MAX_REQUEST_BODY_BYTES and MAX_REQUEST_HEADER_BYTES are defined on the lines above this text by
-- envoy_config/http_filters.py (http_guard_source).

local GRPC_WEB = "grpc-web"
local JSON = "json"

local TIMEOUT_PATTERN = "^%d%d?%d?%d?%d?%d?%d?%d?[HMSmun]$" -- gRPC: 1 to 8 digits and a unit
local BASE64_PATTERN = "^[A-Za-z0-9+/]*=?=?$"
local GRPC_WEB_ENCODINGS = {identity = true, gzip = true, deflate = true}
-- gRPC protocol headers a grpc-web client may send; every other `grpc-*` header is dropped.
local GRPC_WEB_HEADERS = {["grpc-timeout"] = true, ["grpc-encoding"] = true, ["grpc-accept-encoding"] = true}
local MESSAGE_VALUE_BYTES = 64 -- how much of a client's header value an error message repeats

local BASE64_INDEX = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for position = 1, #alphabet do
    BASE64_INDEX[string.sub(alphabet, position, position)] = position - 1
  end
end

local function face_of(content_type)
  if string.sub(content_type, 1, 20) == "application/grpc-web" then
    return GRPC_WEB
  end
  return JSON
end

local function is_base64(value)
  local unpadded = string.gsub(value, "=+$", "")
  return string.find(value, BASE64_PATTERN) ~= nil and #unpadded % 4 ~= 1
end

-- grpc-message is percent-encoded: printable ASCII stays, everything else and `%` become %XX.
local function percent_encoded(message)
  return (string.gsub(message, "[^\32-\36\38-\126]", function(character)
    return string.format("%%%02X", string.byte(character))
  end))
end

-- A grpc-web answer with no message, only the trailers frame (flag 0x80, big-endian length, then
-- `name:value` lines): what every grpc-web client reads, base64 for grpc-web-text.
local function grpc_web_trailers(handle, content_type, grpc_status, message)
  local trailers = "grpc-status:" .. grpc_status .. "\r\ngrpc-message:" .. percent_encoded(message) .. "\r\n"
  local length = #trailers
  local frame = string.char(128, math.floor(length / 16777216) % 256, math.floor(length / 65536) % 256,
                            math.floor(length / 256) % 256, length % 256) .. trailers
  if string.find(content_type, "^application/grpc%-web%-text") then
    return "application/grpc-web-text+proto", handle:base64Escape(frame)
  end
  return "application/grpc-web+proto", frame
end

local function refuse(handle, face, content_type, http_status, grpc_status, message)
  if http_status ~= "413" then
    -- Read the rest of the request first (a body over the limit gets Envoy's 413 instead): Envoy closes
    -- an HTTP/1 connection whose request was answered before it had been read to the end, and the
    -- client's next request would need a new connection.
    handle:body()
  end
  if face == GRPC_WEB then
    local response_type, body = grpc_web_trailers(handle, content_type, grpc_status, message)
    handle:respond({[":status"] = "200", ["content-type"] = response_type}, body)
  else
    handle:respond({[":status"] = http_status}, message)
  end
end

-- Names plus values of every request header, pseudo-headers included: what the client sent, and the
-- few headers Envoy has added so far (x-request-id, x-forwarded-for, ...).
local function header_bytes(headers)
  local total = 0
  for name, value in pairs(headers) do
    total = total + #name + #value
  end
  return total
end

-- The first malformed header as (http status, grpc status, message), or nil; drops the gRPC protocol
-- headers this face may not send.
local function header_problem(headers, face)
  local dropped = {}
  for name, value in pairs(headers) do
    if string.sub(name, -4) == "-bin" and not is_base64(value) then
      return "400", "3", "header `" .. name .. "` is not base64"
    elseif name == "grpc-timeout" and not string.find(value, TIMEOUT_PATTERN) then
      return "400", "3", "header `grpc-timeout` is not a gRPC timeout (1 to 8 digits and a unit: H, M, S, m, u, n)"
    elseif face == GRPC_WEB and name == "grpc-encoding" and not GRPC_WEB_ENCODINGS[value] then
      return "400", "12", "grpc-encoding `" .. string.sub(value, 1, MESSAGE_VALUE_BYTES) .. "` is not supported (identity, gzip, deflate)"
    elseif string.sub(name, 1, 5) == "grpc-" and not (face == GRPC_WEB and GRPC_WEB_HEADERS[name]) then
      dropped[#dropped + 1] = name
    end
  end
  for _, name in ipairs(dropped) do
    headers:remove(name)
  end
  return nil
end

-- Whether a grpc-web body's first frame is flagged compressed (bit 0 of its first byte). In
-- grpc-web-text that bit is bit 4 of the second base64 character's value.
local function first_frame_compressed(body, content_type)
  if body == nil or body:length() == 0 then
    return false
  end
  if string.find(content_type, "^application/grpc%-web%-text") then
    local second = body:length() > 1 and BASE64_INDEX[body:getBytes(1, 1)]
    return second ~= nil and second ~= false and math.floor(second / 16) % 2 == 1
  end
  return string.byte(body:getBytes(0, 1)) % 2 == 1
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local content_type = string.lower(headers:get("content-type") or "")
  local face = face_of(content_type)
  if header_bytes(headers) > MAX_REQUEST_HEADER_BYTES then
    return refuse(handle, face, content_type, "431", "8",
                  "the request headers are larger than " .. MAX_REQUEST_HEADER_BYTES .. " bytes")
  end
  local length = tonumber(headers:get("content-length") or "")
  if length ~= nil and length > MAX_REQUEST_BODY_BYTES then
    return refuse(handle, face, content_type, "413", "8",
                  "the request body is larger than " .. MAX_REQUEST_BODY_BYTES .. " bytes")
  end
  local http_status, grpc_status, message = header_problem(headers, face)
  if http_status ~= nil then
    return refuse(handle, face, content_type, http_status, grpc_status, message)
  end
  if face == GRPC_WEB then
    -- The whole body (browsers send it at once) to see the frame's flag. A frame compressed with a
    -- named grpc-encoding is the servers' to decode.
    local encoding = headers:get("grpc-encoding")
    if (encoding == nil or encoding == "identity") and first_frame_compressed(handle:body(), content_type) then
      return refuse(handle, face, content_type, "400", "3", "the message is flagged compressed, but no grpc-encoding was given")
    end
  elseif length == nil then
    -- A JSON body of unknown length (chunked) is buffered, so that one over the limit is answered 413
    -- by Envoy's buffer limit instead of streaming on to the servers.
    handle:body()
  end
end
