// A small app built OUTSIDE the source tree against the installed library:
// by install_test.sh with `pkg-config --cflags --libs --static eventsource`,
// and as a parent meson project that uses eventsource as a subproject. It may
// include only the public header <eventsource/store.h> (and std headers): if
// this compiles, the installed headers are self-contained and the internal
// ones are not needed. Usage: app DIR (writes DIR/app.evs; must not exist yet).
// Exit 0 and one line of what it did, or non-zero and what went wrong.
#include <eventsource/store.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

namespace es = eventsource;

int fail(const std::string& what) {
  std::fprintf(stderr, "app: FAIL: %s\n", what.c_str());
  return 1;
}

es::EventData event(std::string type, std::string payload) {
  es::EventData e;
  e.type = std::move(type);
  e.payload = std::move(payload);
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: app DIR\n");
    return 2;
  }
  const std::string path = std::string(argv[1]) + "/app.evs";

  es::StoreOptions options;
  options.segment_size = 1ull << 20;  // the smallest allowed; keeps the file small
  options.create = es::CreateMode::kCreateIfMissing;
  es::Result<std::unique_ptr<es::Store>> opened = es::Store::open(path, options);
  if (!opened.ok()) return fail("open " + path + ": " + opened.status().to_string());
  std::unique_ptr<es::Store> store = std::move(opened).value();

  const es::StreamId stream{"Order", "42"};
  const std::vector<es::EventData> events = {
      event("OrderPlaced", R"({"customer":"Ada","total_cents":1890})"),
      event("OrderPaid", R"({"amount_cents":1890})"),
  };
  es::Result<es::AppendResult> appended =
      store->append(stream, es::ExpectedVersion::no_stream(), events);
  if (!appended.ok()) return fail("append: " + appended.status().to_string());
  if (appended->version != es::StreamVersion(2) || appended->deduplicated ||
      appended->last_position.value - appended->first_position.value != 1) {
    return fail("append returned version " + std::to_string(appended->version.value) +
                ", positions " + std::to_string(appended->first_position.value) + ".." +
                std::to_string(appended->last_position.value) + "; expected version 2, 2 events");
  }

  // no_stream() again must be refused now that the stream exists.
  es::Result<es::AppendResult> again =
      store->append(stream, es::ExpectedVersion::no_stream(), events);
  if (again.ok() || again.status().code() != es::Code::kConflict ||
      again.status().actual_version() != 2) {
    return fail("second no_stream append: expected a conflict at version 2, got " +
                (again.ok() ? std::string("ok") : again.status().to_string()));
  }

  struct Read {
    uint64_t version;
    std::string type;
    std::string payload;
    std::string stream;
  };
  std::vector<Read> read;
  es::Status s = store->read_stream(
      stream, {.from = es::StreamVersion(1), .max_count = 100}, [&](const es::RecordedEvent& e) {
        read.push_back(
            {e.version.value, std::string(e.type), std::string(e.payload), e.stream_name()});
        return true;
      });
  if (!s.ok()) return fail("read_stream: " + s.to_string());
  if (read.size() != events.size()) {
    return fail("read_stream returned " + std::to_string(read.size()) + " events, expected " +
                std::to_string(events.size()));
  }
  for (size_t i = 0; i < read.size(); ++i) {
    if (read[i].version != i + 1 || read[i].type != events[i].type ||
        read[i].payload != events[i].payload || read[i].stream != "Order-42") {
      return fail("event " + std::to_string(i + 1) + " read back as " + read[i].stream + " v" +
                  std::to_string(read[i].version) + " " + read[i].type + " " + read[i].payload);
    }
  }
  if (store->stream_version(stream) != es::StreamVersion(2)) {
    return fail("stream_version: " + std::to_string(store->stream_version(stream).value));
  }

  s = store->close();
  if (!s.ok()) return fail("close: " + s.to_string());

  std::printf("app: wrote %zu events to %s at positions %llu..%llu, read them back: ok\n",
              events.size(), path.c_str(),
              static_cast<unsigned long long>(appended->first_position.value),
              static_cast<unsigned long long>(appended->last_position.value));
  return 0;
}
