-- Several messages on one connection, with an aborted one in between.
dofile(lib)
run(function()
  local c = open()
  local r = message(c, "<a1@example.org>", "<b1@example.org>", {{"Subject", "one"}},
                    "first\r\n")
  check(r == SMFIR_ACCEPT, "first reply " .. string.char(r))
  r = message(c, "<a2@example.org>", "<b2@example.org>", {{"Subject", "two"}},
              EICAR .. "\r\n")
  check(r == SMFIR_REPLYCODE, "second reply " .. string.char(r))
  -- Aborted after the body: nothing of it may leak into the next message.
  envelope(c, "<a3@example.org>", "<b3@example.org>")
  expect_nil(mt.header(c, "Subject", "aborted"), "header")
  expect_nil(mt.eoh(c), "eoh")
  expect_nil(mt.bodystring(c, "ABORTED BODY\r\n"), "body")
  expect_nil(mt.abort(c), "abort")
  r = message(c, "<a4@example.org>", "<b4@example.org>", {{"Subject", "four"}},
              "fourth\r\n")
  check(r == SMFIR_ACCEPT, "fourth reply " .. string.char(r))
  check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-ID"), "fourth: no X-Sagator-ID")
  mt.disconnect(c)
end)
