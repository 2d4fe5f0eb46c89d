// The teller's side of an issuer script (docs/branch.md "Card scripts"): on the card in the
// teller's reader (PC/SC in production, in-process in tests) the runner
//   1. selects the medical-account application (D15600000503) and reads the card's ASN and
//      dates from its FCI — which a temporarily blocked application still answers (6A81);
//   2. asks the card for a challenge (GET CHALLENGE, 4 bytes);
//   3. asks `source` for the script for that card and challenge (in production the host's API;
//      in tests the host-side CardScriptBuilder directly);
//   4. sends the script's command, checks its status word, and checks that the card now shows
//      the result (application state, SFI 15 expiry, PIN tries), which it reports.
// Nothing is sent when the source fails; a card that refuses the script changes nothing
// (docs/card-commands.md) and the error names the step and status word.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "branch/card_scripts.h"
#include "common/bcd.h"
#include "common/bytes.h"
#include "common/result.h"
#include "reader/reader.h"

namespace medcard::branch {

using ScriptSource = std::function<Result<CardScript>(const ScriptContext& context)>;

struct ScriptOutcome {
  ScriptKind kind = ScriptKind::kApplicationUnblock;
  Bytes asn;
  // What the teller sees: "application unblocked", "application blocked (temporary)",
  // "application blocked permanently", "expiry changed to 2031-12-31", "PIN reset: tries 3".
  std::string message;
  std::optional<Date> expiry;    // kChangeExpiry: as read back from SFI 15
  std::optional<int> pin_tries;  // kPinReset: as the card reports them (VERIFY without data)
};

// Runs one script of `kind` on the card in `reader` (connected here if it is not), inside a
// reader transaction. Errors: not a medcard card, application permanently blocked, an
// operation that does not fit the application's state (unblocking an application that is not
// blocked, a PIN reset or validity change on a blocked one), the source's error, a script of
// another kind, the card refusing the script ("card refused the PIN reset: 6988 wrong MAC (a
// script for another card or an old challenge)"), or a card that does not show the result.
Result<ScriptOutcome> RunCardScript(reader::Reader& reader, ScriptKind kind,
                                    const ScriptSource& source);

// The PIN pad's side, for tests and simulators (a real PIN pad does this in its secure
// hardware): the ISO 9564 format 0 PIN block of `pin` for the card `asn` (PAN = PinBlockPan),
// encrypted 3DES-ECB under the 16-byte `pin_encryption_key`.
Result<Bytes> EncryptPinBlockAtPinPad(ByteView pin_encryption_key, std::string_view pin,
                                      ByteView asn);

}  // namespace medcard::branch
