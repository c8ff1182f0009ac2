-- A clean message that carries a forged X-Sagator-Status: accepted with X-Sagator-ID
-- and X-Sagator-Scanner inserted and the forged status deleted.
dofile(lib)
run(function()
  local c = open()
  mt.macro(c, SMFIC_MAIL, "i", "4QID1")
  local r = message(c, "<alice@example.org>", "<bob@example.org>",
                    {{"From", "alice@example.org"}, {"X-Sagator-Status", "Fake 9.00"},
                     {"Subject", "hello"}},
                    "Just a clean body.\r\n")
  check(r == SMFIR_ACCEPT, "eom reply " .. string.char(r))
  check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-ID", "20240101-000000-0001-00001-AbCdEf@test"),
        "no X-Sagator-ID")
  check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-Scanner", "test at test; default"),
        "no X-Sagator-Scanner")
  check(mt.eom_check(c, MT_HDRDELETE, "X-Sagator-Status"), "forged status not deleted")
  check(not mt.eom_check(c, MT_HDRINSERT, "X-Sagator-Status"), "clean mail got a status")
  check(not mt.eom_check(c, MT_BODYCHANGE), "body changed")
  mt.disconnect(c)
end)
