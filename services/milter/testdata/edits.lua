-- The verdict's header edits: a subject rewrite (change in place, per-name index),
-- the status of forced-pass mail, a discarded drop, and a rewritten message.
dofile(lib)
run(function()
  local c = open()
  -- Two Subject fields: the rewrite changes both.
  local r = message(c, "<alice@example.org>", "<bob@example.org>",
                    {{"Subject", "buy now"}, {"X-Other", "x"}, {"Subject", "second"}},
                    "SPAMMY offer\r\n")
  check(r == SMFIR_ACCEPT, "spam reply " .. string.char(r))
  check(mt.eom_check(c, MT_HDRCHANGE, "Subject", "[SPAM] rewritten subject"), "no subject change")
  check(mt.eom_check(c, MT_HDRINSERT, "X-Spam-Flag", "YES"), "no X-Spam-Flag")

  r = message(c, "<alice@example.org>", "<bob@example.org>", {{"Subject", "forced"}},
              "FORCE-ME\r\n")
  check(r == SMFIR_ACCEPT, "forced reply " .. string.char(r))
  check(mt.eom_check(c, MT_HDRINSERT, "X-Sagator-Status", "Forced 1.50"), "no status")

  r = message(c, "<alice@example.org>", "<bob@example.org>", {{"Subject", "drop"}},
              "DROP-ME\r\n")
  check(r == SMFIR_DISCARD, "drop reply " .. string.char(r))

  r = message(c, "<alice@example.org>", "<bob@example.org>",
              {{"Subject", "original"}, {"From", "a@example.org"}}, "REWRITE-ME\r\n")
  check(r == SMFIR_ACCEPT, "rewrite reply " .. string.char(r))
  check(mt.eom_check(c, MT_BODYCHANGE, "new body\r\n"), "body not replaced")
  check(mt.eom_check(c, MT_HDRCHANGE, "Subject", "rewritten"), "subject not reconciled")
  check(mt.eom_check(c, MT_HDRDELETE, "From"), "From not reconciled")
  mt.disconnect(c)
end)
