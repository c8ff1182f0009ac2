-- EICAR in the body: rejected with 550 5.7.1 and the detection name.
dofile(lib)
run(function()
  local c = open()
  local r = message(c, "<mallory@example.org>", "<bob@example.org>",
                    {{"Subject", "virus"}}, EICAR .. "\r\n")
  check(r == SMFIR_REPLYCODE, "eom reply " .. string.char(r))
  check(mt.eom_check(c, MT_SMTPREPLY, "550", "5.7.1", "Rejected: EICAR-Test"),
        "not 550 5.7.1 Rejected: EICAR-Test")
  check(not mt.eom_check(c, MT_HDRINSERT), "a rejected message got headers")
  mt.disconnect(c)
end)
