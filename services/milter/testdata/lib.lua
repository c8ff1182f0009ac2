-- Helpers shared by the miltertest scripts. miltertest -D sets the globals the
-- scripts use: sock (the milter's address, e.g. inet:3333@127.0.0.1) and lib (this
-- file's path), plus per-script ones.

function check(cond, what)
  if not cond then error(what, 2) end
end

function expect_nil(result, what)
  if result ~= nil then error(what .. ": " .. tostring(result), 2) end
end

function expect_reply(c, want, what)
  local got = mt.getreply(c)
  if got ~= want then
    error(string.format("%s: reply '%s', want '%s'", what, string.char(got), string.char(want)), 2)
  end
end

-- The EICAR test string, split so that this file is not itself detected.
EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-" .. "ANTIVIRUS-TEST-FILE!$H+H*"

-- Connects, sends connect and HELO information.
function open()
  local c = mt.connect(sock, 50, 0.1)
  check(c ~= nil, "mt.connect(" .. sock .. ") failed")
  expect_nil(mt.conninfo(c, "client.example.org", "192.0.2.7"), "conninfo")
  expect_reply(c, SMFIR_CONTINUE, "conninfo")
  expect_nil(mt.helo(c, "helo.example.org"), "helo")
  expect_reply(c, SMFIR_CONTINUE, "helo")
  return c
end

-- Sends the envelope of one message.
function envelope(c, from, rcpt)
  expect_nil(mt.mailfrom(c, from), "mailfrom")
  expect_reply(c, SMFIR_CONTINUE, "mailfrom")
  expect_nil(mt.rcptto(c, rcpt), "rcptto")
  expect_reply(c, SMFIR_CONTINUE, "rcptto")
end

-- Sends headers ({{name, value}, ...}), the body and the end of the message;
-- returns the filter's reply.
function content(c, headers, body)
  for _, h in ipairs(headers) do
    expect_nil(mt.header(c, h[1], h[2]), "header " .. h[1])
    expect_reply(c, SMFIR_CONTINUE, "header " .. h[1])
  end
  expect_nil(mt.eoh(c), "eoh")
  expect_reply(c, SMFIR_CONTINUE, "eoh")
  expect_nil(mt.bodystring(c, body), "body")
  expect_reply(c, SMFIR_CONTINUE, "body")
  expect_nil(mt.eom(c), "eom")
  return mt.getreply(c)
end

-- One whole message; returns the reply to the end of the message.
function message(c, from, rcpt, headers, body)
  envelope(c, from, rcpt)
  return content(c, headers, body)
end

-- Runs the test function; prints OK, or FAILED with the error (miltertest itself
-- exits 1 without a word on a failed call).
function run(f)
  local ok, err = pcall(f)
  if not ok then
    print("FAILED: " .. tostring(err))
    os.exit(1)
  end
  print("OK")
end
