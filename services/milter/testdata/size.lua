-- A body over max_message_size (-D size=bytes): not scanned, and by
-- not_scanned_outcome (-D mode=accept|reject|tempfail) accepted with
-- X-Sagator-Not-Scanned, rejected 552 5.3.4, or tempfailed 451 4.3.4.
dofile(lib)
run(function()
  local c = open()
  local body = string.rep(string.rep("x", 78) .. "\r\n", math.floor(tonumber(size) / 80) + 1)
  local r = message(c, "<alice@example.org>", "<bob@example.org>",
                    {{"Subject", "big"}, {"X-Sagator-Status", "forged"}}, body)
  if mode == "accept" then
    check(r == SMFIR_ACCEPT, "eom reply " .. string.char(r))
    check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-Not-Scanned"), "no X-Sagator-Not-Scanned")
    check(mt.eom_check(c, MT_HDRDELETE, "X-Sagator-Status"), "forged status kept")
  else
    check(r == SMFIR_REPLYCODE, "eom reply " .. string.char(r))
    local code = mode == "reject" and "552" or "451"
    local xcode = mode == "reject" and "5.3.4" or "4.3.4"
    local text = "Message too large to scan: " .. tostring(#body + 14 + 26 + 2) ..
                 " bytes, the limit is " .. limit
    check(mt.eom_check(c, MT_SMTPREPLY, code, xcode, text), "not " .. code .. " " .. text)
  end
  mt.disconnect(c)
end)
