// Test data shared by the project's tests: the EICAR test string.
#ifndef SAGATOR_TESTS_HARNESS_TEST_MAIL_H_
#define SAGATOR_TESTS_HARNESS_TEST_MAIL_H_

namespace sagator::testing {

// The 68-byte EICAR anti-virus test file; data/clamav/sagator.ndb detects it as
// Eicar-Test-Signature(.UNOFFICIAL).
inline constexpr char kEicar[] =
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

}  // namespace sagator::testing

#endif  // SAGATOR_TESTS_HARNESS_TEST_MAIL_H_
