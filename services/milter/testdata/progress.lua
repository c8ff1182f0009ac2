-- A scan that takes longer than miltertest's read timeout (-D timeout=seconds):
-- only progress replies keep the conversation alive.
dofile(lib)
run(function()
  local c = open()
  mt.set_timeout(tonumber(timeout))
  local r = message(c, "<alice@example.org>", "<bob@example.org>", {{"Subject", "slow"}},
                    "slow body\r\n")
  check(r == SMFIR_ACCEPT, "eom reply " .. string.char(r))
  mt.disconnect(c)
end)
