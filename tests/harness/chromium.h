// Headless Chromium (Debian's chromium package) driven over the DevTools protocol,
// for tests that use a web page the way a person does: navigate, fill in and submit
// forms, read what the page shows, and keep screenshots.
//
//   auto browser = Browser::Start(dir);            // chromium --headless, a fresh profile
//   (*browser)->Navigate("http://127.0.0.1:8008/login");
//   (*browser)->Evaluate("document.getElementById('user').value = 'alice'");
//   (*browser)->Click("#login");                   // waits for the next page to load
//   absl::StatusOr<std::string> text = (*browser)->Evaluate("document.body.innerText");
//   (*browser)->Screenshot(path);                  // PNG
//
// The DevTools connection is a WebSocket (Boost.Beast) to the first page target;
// JSON is read with protobuf's JSON support. Evaluate runs in the page through the
// protocol, which a page's Content-Security-Policy does not restrict, so pages
// without any script of their own can be driven too.
//
// Tests using it need tags = ["no-sandbox"] (Chromium runs with --no-sandbox, as root
// cannot use its own sandbox). Not thread-safe: one test thread drives one browser.
#ifndef SAGATOR_TESTS_HARNESS_CHROMIUM_H_
#define SAGATOR_TESTS_HARNESS_CHROMIUM_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/harness/subprocess.h"

namespace sagator::harness {

class Browser {
 public:
  // Starts Chromium with a profile under `dir` and connects to its page.
  static absl::StatusOr<std::unique_ptr<Browser>> Start(const std::string& dir);
  ~Browser();

  // Loads `url` and waits until the document is complete.
  absl::Status Navigate(const std::string& url);
  // Runs a JavaScript expression in the page; its value as a string (JSON for
  // objects). An exception is an error.
  absl::StatusOr<std::string> Evaluate(const std::string& expression);
  // Sets the value of the input matching a CSS selector.
  absl::Status Fill(const std::string& selector, const std::string& value);
  // Clicks the element matching a CSS selector and waits until a new document
  // has loaded.
  absl::Status Click(const std::string& selector);
  // Waits until `expression` is true.
  absl::Status WaitFor(const std::string& expression, absl::Duration timeout = absl::Seconds(20));
  // Saves a PNG of the viewport.
  absl::Status Screenshot(const std::string& path);

 private:
  Browser() = default;
  // Sends one command and returns its "result" object as JSON text.
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& params_json);

  struct Connection;
  std::unique_ptr<testing::Subprocess> process_;
  std::unique_ptr<Connection> conn_;
  int next_id_ = 0;
};

// `s` as a JSON (and JavaScript) string literal, quotes included.
std::string JsonQuote(const std::string& s);

}  // namespace sagator::harness

#endif  // SAGATOR_TESTS_HARNESS_CHROMIUM_H_
