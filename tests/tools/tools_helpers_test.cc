// Unit tests of esdump's helper modules: base64, RFC 3339 times, argument
// parsing, terminal-safe text, and event <-> JSON conversion. Plain checks,
// no framework: prints each failure and exits 1 if any.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/args.h"
#include "tools/base64.h"
#include "tools/event_text.h"
#include "tools/json_event.h"
#include "tools/rfc3339.h"

namespace {

int g_failures = 0;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                          \
    }                                                                        \
  } while (0)

using namespace eventsource;
using namespace eventsource::tools;

void base64_round_trips_every_length_and_rejects_garbage() {
  std::string bytes;
  for (int n = 0; n < 40; ++n) {
    std::optional<std::string> back = base64_decode(base64_encode(bytes));
    CHECK(back && *back == bytes);
    bytes.push_back(static_cast<char>(n * 37 + 200));
  }
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(*base64_decode("Zm8") == "fo");  // padding optional
  CHECK(!base64_decode("Zm9v!"));
  CHECK(!base64_decode("Z"));
  CHECK(!base64_decode("Zm9=v"));
  CHECK(
      !base64_decode("Zm9"
                     "==="));
  CHECK(!base64_decode("Zm9vYmFy "));
}

void rfc3339_formats_utc_micros_and_parses_offsets() {
  CHECK(*format_rfc3339_us(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(*format_rfc3339_us(-1) == "1969-12-31T23:59:59.999999Z");
  CHECK(*format_rfc3339_us(1'795'788'781'123'456) == "2026-11-27T14:13:01.123456Z");
  CHECK(!format_rfc3339_us(INT64_MAX));
  CHECK(!format_rfc3339_us(INT64_MIN));
  std::string why;
  CHECK(*parse_rfc3339_us("2026-11-27T14:13:01.123456Z", &why) == 1'795'788'781'123'456);
  CHECK(*parse_rfc3339_us("2026-11-27T16:13:01.123456789+02:00", &why) == 1'795'788'781'123'456);
  CHECK(*parse_rfc3339_us("2026-11-27 09:13:01.1234565-05:00", &why) == 1'795'788'781'123'456);
  CHECK(*parse_rfc3339_us("1969-12-31T23:59:59.999999Z", &why) == -1);
  CHECK(*parse_rfc3339_us("2024-02-29T00:00:00z", &why) == 1'709'164'800'000'000);
  for (const char* bad :
       {"", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z", "2024-01-01T00:00:60Z", "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00Zjunk", "2024-01-01T00:00:00+0200",
        "24-01-01T00:00:00Z"}) {
    why.clear();
    CHECK(!parse_rfc3339_us(bad, &why));
    CHECK(!why.empty());
  }
}

std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> out;
  for (std::string& a : args) out.push_back(a.data());
  return out;
}

void args_parse_long_options_and_report_mistakes() {
  constexpr OptionSpec kSpecs[] = {
      {"json", OptionKind::kFlag}, {"from", OptionKind::kValue}, {"type", OptionKind::kRepeated}};
  std::vector<std::string> a = {"s.evs",  "--json", "--from", "7",  "--type=A",
                                "--type", "B",      "--",     "--x"};
  std::vector<char*> v = argv_of(a);
  Result<ParsedArgs> r = parse_args(v, kSpecs);
  CHECK(r.ok());
  CHECK(r->has("json") && *r->get("from") == "7");
  CHECK(r->all("type") == (std::vector<std::string>{"A", "B"}));
  CHECK(r->positionals == (std::vector<std::string>{"s.evs", "--x"}));

  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--nope"}, {"--from"}, {"--json=1"}, {"--from", "1", "--from", "2"}, {"-x"}}) {
    std::vector<char*> bv = argv_of(bad);
    CHECK(!parse_args(bv, kSpecs).ok());
  }
  std::vector<std::string> h = {"-h"};
  std::vector<char*> hv = argv_of(h);
  CHECK(parse_args(hv, kSpecs)->help);

  CHECK(*parse_u64("42", "n") == 42);
  CHECK(!parse_u64("-1", "n").ok());
  CHECK(!parse_u64("4x", "n").ok());
  CHECK(!parse_u64("", "n").ok());
  CHECK(!parse_u64("99999999999999999999", "n").ok());
  CHECK(*parse_byte_size("1M", "s") == 1u << 20);
  CHECK(*parse_byte_size("64MiB", "s") == 64u << 20);
  CHECK(*parse_byte_size("4096", "s") == 4096);
  CHECK(!parse_byte_size("1T", "s").ok());
  CHECK(!parse_byte_size("M", "s").ok());
  CHECK(!parse_byte_size("99999999999999999G", "s").ok());
}

void printable_escapes_controls_and_invalid_utf8() {
  CHECK(printable("plain") == "plain");
  CHECK(printable("a\nb\tc\x01") == "a\\nb\\tc\\x01");
  CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");
  CHECK(printable("bad\xc3(") == "bad\\xc3(");
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate
  CHECK(printable("abcdef", 3) == "abc...");
  CHECK(printable("\xe2\x82\xac\xe2\x82\xac", 1) == "\xe2\x82\xac...");
}

void json_payloads_inline_or_base64() {
  CHECK(parse_json_bytes("{\"a\":1}").has_value());
  CHECK(parse_json_bytes(" [1, 2] ").has_value());
  CHECK(!parse_json_bytes("").has_value());
  CHECK(!parse_json_bytes("{\"a\":").has_value());
  CHECK(!parse_json_bytes("\xff").has_value());
  CHECK(!parse_json_bytes(std::string(100000, '[')).has_value());
  CHECK(json_nests_deeper_than("[[[]]]", 2));
  CHECK(!json_nests_deeper_than("[\"[[[[\"]", 2));
  CHECK(!json_nests_deeper_than("[\"\\\"[[[[\"]", 2));
}

void import_lines_parse_and_explain_errors() {
  Result<ImportedEvent> ok = parse_import_line(
      R"({"stream":"Order-42","type":"T","data":{"x":[1,2]},"expected_version":3,"position":9,"version":1})");
  CHECK(ok.ok());
  if (ok.ok()) {
    CHECK(ok->stream.type == "Order" && ok->stream.id == "42");
    CHECK(ok->data.payload == R"({"x":[1,2]})");
    CHECK(ok->expected && ok->expected->kind() == ExpectedVersion::Kind::kExact &&
          ok->expected->version().value == 3);
    CHECK(ok->data.id.is_nil() && ok->data.timestamp_us == 0);
  }
  Result<ImportedEvent> b64 = parse_import_line(
      R"({"stream":"A-1","type":"T","data":"AP8=","data_encoding":"base64","metadata":{"m":1}})");
  CHECK(b64.ok() && b64->data.payload == std::string("\0\xff", 2) &&
        b64->data.metadata == R"({"m":1})");
  for (const char* bad :
       {"", "not json", "[]", R"({"stream":"A-1","type":"T"})",
        R"({"stream":"A","type":"T","data":1})", R"({"stream":"A-1","data":1})",
        R"({"stream":"A-1","type":"","data":1})",
        R"({"stream":"A-1","type":"T","data":1,"expected_version":"sometimes"})",
        R"({"stream":"A-1","type":"T","data":1,"expected_version":1.5})",
        R"({"stream":"A-1","type":"T","data":1,"tenant":7})",
        R"({"stream":"A-1","type":"T","data":1,"time":"2024-01-01"})",
        R"({"stream":"A-1","type":"T","data":1,"data_encoding":"hex"})",
        R"({"stream":"A-1","type":"T","data":1,"metadata_encoding":"base64"})",
        R"({"stream":"A-1","type":"T","data":1,"causation_id":"xyz"})",
        R"({"stream":"A-1","type":"T","data":1,"extra":1})", "{\"stream\":\"A-1\xff\"}"}) {
    Result<ImportedEvent> r = parse_import_line(bad);
    CHECK(!r.ok());
    if (!r.ok()) CHECK(!r.status().message().empty());
  }
}

void events_export_in_key_order() {
  RecordedEvent e;
  e.position = GlobalPosition(5);
  e.version = StreamVersion(2);
  e.timestamp_us = 1'795'788'781'123'456;
  e.id = *Uuid::parse("0b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f00");
  e.stream_type = "Order";
  e.stream_id = "42";
  e.type = "ItemAdded";
  e.payload = R"({"sku": "A", "n": 2})";
  e.metadata = std::string_view("\x01\x02", 2);
  Json j = event_to_json(e);
  CHECK(dump_json(j) ==
        R"({"position":5,"stream":"Order-42","version":2,"type":"ItemAdded",)"
        R"("id":"0b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f00","time":"2026-11-27T14:13:01.123456Z",)"
        R"("metadata":"AQI=","metadata_encoding":"base64","data":{"sku":"A","n":2}})");
  // --exact keeps non-compact JSON payloads byte for byte, as base64.
  Json exact = event_to_json(e, ExportOptions{.exact_bytes = true});
  CHECK(exact["data_encoding"] == "base64");
  // Export -> import gives back the event's fields.
  Result<ImportedEvent> back = parse_import_line(dump_json(exact));
  CHECK(back.ok() && back->data.payload == e.payload && back->data.metadata == e.metadata &&
        back->data.id == e.id && back->data.timestamp_us == e.timestamp_us);
  // Invalid UTF-8 in names never throws.
  e.type = "bad\xff";
  CHECK(!dump_json(event_to_json(e)).empty());
  CHECK(format_event_line(e).find("bad\\xff") != std::string::npos);
}

void names_and_tenants_round_trip_as_raw_bytes() {
  // The engine stores names and tenants as raw bytes (format-spec.md [F-14]):
  // export writes those that are not valid UTF-8 as "<key>_b64", metadata
  // as base64, and import reads back the very same bytes.
  const std::string type("Ord\xffr", 5);
  const std::string id("4\xc3(2", 4);
  const std::string event_type(
      "Pl\xed\xa0\x80"
      "ced",
      8);                                    // a UTF-16 surrogate
  const std::string tenant("t\xc0\x80", 3);  // an overlong NUL
  const std::string metadata("{\"k\":\"\xfe\"}", 9);
  RecordedEvent e;
  e.position = GlobalPosition(1);
  e.version = StreamVersion(1);
  e.timestamp_us = 1;
  e.id = *Uuid::parse("0b7e5cc0-4a7a-4e2a-9a3e-3a4c1e2d0f00");
  e.stream_type = type;
  e.stream_id = id;
  e.type = event_type;
  e.tenant = tenant;
  e.metadata = metadata;
  e.payload = "{}";
  Json j = event_to_json(e);
  CHECK(j.contains("stream_b64") && !j.contains("stream"));
  CHECK(j.contains("type_b64") && !j.contains("type"));
  CHECK(j.contains("tenant_b64") && !j.contains("tenant"));
  CHECK(j.value("metadata_encoding", "") == "base64");
  Result<ImportedEvent> back = parse_import_line(dump_json(j));
  CHECK(back.ok());
  if (back.ok()) {
    CHECK(back->stream.type == type);
    CHECK(back->stream.id == id);
    CHECK(back->data.type == event_type);
    CHECK(back->data.tenant == tenant);
    CHECK(back->data.metadata == metadata);
  }
  // Valid UTF-8 (C1 controls included) stays readable text.
  e.stream_type = "Caf\xc3\xa9";
  e.stream_id = "1";
  e.type = "T\xc2\x85";
  e.tenant = "acme";
  Json text = event_to_json(e);
  CHECK(text.value("stream", "") == "Caf\xc3\xa9-1");
  CHECK(text.value("type", "") == "T\xc2\x85");
  CHECK(!text.contains("stream_b64") && !text.contains("type_b64") && !text.contains("tenant_b64"));
  // One key in one form only; the bytes must be base64.
  CHECK(!parse_import_line(R"({"stream":"A-1","stream_b64":"QS0x","type":"T","data":1})").ok());
  CHECK(!parse_import_line(R"({"stream_b64":"%%","type":"T","data":1})").ok());
  CHECK(!parse_import_line(R"({"stream":"A-1","type_b64":"","data":1})").ok());  // empty type
  Result<ImportedEvent> b64 =
      parse_import_line(R"({"stream_b64":"QS0x","type_b64":"VA==","tenant_b64":"/w==","data":1})");
  CHECK(b64.ok() && b64->stream.name() == "A-1" && b64->data.type == "T" &&
        b64->data.tenant == "\xff");
}

}  // namespace

int main() {
  base64_round_trips_every_length_and_rejects_garbage();
  rfc3339_formats_utc_micros_and_parses_offsets();
  args_parse_long_options_and_report_mistakes();
  printable_escapes_controls_and_invalid_utf8();
  json_payloads_inline_or_base64();
  import_lines_parse_and_explain_errors();
  events_export_in_key_order();
  names_and_tenants_round_trip_as_raw_bytes();
  if (g_failures != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  std::puts("all tools helper tests passed");
  return 0;
}
