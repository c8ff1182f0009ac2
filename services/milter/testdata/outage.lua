-- scanner-svc is unreachable (or slow): tempfail 451 4.3.0 naming the reason
-- (-D why=..., default "scanner unavailable"), or (-D mode=failopen) accept with
-- X-Sagator-Not-Scanned.
dofile(lib)
why = why or "scanner unavailable"
run(function()
  local c = open()
  local r = message(c, "<alice@example.org>", "<bob@example.org>",
                    {{"Subject", "outage"}}, "body\r\n")
  if mode == "failopen" then
    check(r == SMFIR_ACCEPT, "eom reply " .. string.char(r))
    check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-Not-Scanned", why),
          "no X-Sagator-Not-Scanned")
  else
    check(r == SMFIR_REPLYCODE, "eom reply " .. string.char(r))
    check(mt.eom_check(c, MT_SMTPREPLY, "451", "4.3.0",
                       "Temporary failure while scanning (" .. why .. "), try again later"),
          "not 451 4.3.0 naming " .. why)
  end
  mt.disconnect(c)
end)
