-- recipient_policy at RCPT: good@ passes, bad@ is rejected (550), grey@ deferred
-- (451), and the message goes on with the good recipient. With -D mode=down (the
-- policy call fails) the recipient is tempfailed; with mode=failopen it passes.
dofile(lib)
run(function()
  local c = open()
  expect_nil(mt.mailfrom(c, "<alice@example.org>"), "mailfrom")
  expect_reply(c, SMFIR_CONTINUE, "mailfrom")
  if mode == "down" then
    expect_nil(mt.rcptto(c, "<good@example.org>"), "rcptto")
    expect_reply(c, SMFIR_REPLYCODE, "rcpt with the policy down")
    mt.disconnect(c)
    return
  end
  if mode == "failopen" then
    expect_nil(mt.rcptto(c, "<good@example.org>"), "rcptto")
    expect_reply(c, SMFIR_CONTINUE, "rcpt with the policy down, fail_open")
    mt.disconnect(c)
    return
  end
  expect_nil(mt.rcptto(c, "<bad@example.org>"), "rcptto bad")
  expect_reply(c, SMFIR_REPLYCODE, "rcpt bad")
  expect_nil(mt.rcptto(c, "<grey@example.org>"), "rcptto grey")
  expect_reply(c, SMFIR_REPLYCODE, "rcpt grey")
  expect_nil(mt.rcptto(c, "<good@example.org>"), "rcptto good")
  expect_reply(c, SMFIR_CONTINUE, "rcpt good")
  local r = content(c, {{"Subject", "policy"}}, "body\r\n")
  check(r == SMFIR_ACCEPT, "eom reply " .. string.char(r))
  mt.disconnect(c)
end)
