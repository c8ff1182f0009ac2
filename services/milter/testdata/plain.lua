-- One clean message: accepted with the verdict's headers at the top.
dofile(lib)
run(function()
  local c = open()
  local r = message(c, "<alice@example.org>", "<bob@example.org>",
                    {{"Subject", "plain"}}, "A clean body.\r\n")
  check(r == SMFIR_ACCEPT, "eom reply " .. string.char(r))
  check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-ID"), "no X-Sagator-ID")
  mt.disconnect(c)
end)
