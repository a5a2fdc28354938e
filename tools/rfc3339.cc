// RFC 3339 formatting and parsing with microsecond precision (see rfc3339.h).
// Calendar arithmetic is the proleptic Gregorian days-from-civil algorithm.
#include "tools/rfc3339.h"

#include <fmt/format.h>

namespace eventsource::tools {
namespace {

constexpr int64_t kMicrosPerSecond = 1'000'000;
constexpr int64_t kSecondsPerDay = 86'400;
constexpr int64_t kMicrosPerDay = kMicrosPerSecond * kSecondsPerDay;

// Days since 1970-01-01 of a proleptic Gregorian date.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

struct Civil {
  int64_t year;
  unsigned month;
  unsigned day;
};

Civil civil_from_days(int64_t z) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return Civil{y + (m <= 2), m, d};
}

bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

// Reads exactly `n` decimal digits at `*pos`.
bool read_digits(std::string_view text, size_t* pos, size_t n, int64_t* out) {
  if (*pos + n > text.size()) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool expect_char(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

std::optional<int64_t> fail(std::string* error, std::string reason) {
  if (error != nullptr) *error = std::move(reason);
  return std::nullopt;
}

}  // namespace

std::optional<std::string> format_rfc3339_us(int64_t micros) {
  // Floor division so that times before 1970 get a positive time of day.
  int64_t days = micros / kMicrosPerDay;
  int64_t rem = micros % kMicrosPerDay;
  if (rem < 0) {
    rem += kMicrosPerDay;
    --days;
  }
  Civil c = civil_from_days(days);
  if (c.year < 0 || c.year > 9999) return std::nullopt;
  int64_t secs = rem / kMicrosPerSecond;
  int64_t frac = rem % kMicrosPerSecond;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", c.year, c.month, c.day,
                     secs / 3600, secs / 60 % 60, secs % 60, frac);
}

std::optional<int64_t> parse_rfc3339_us(std::string_view text, std::string* error) {
  size_t pos = 0;
  int64_t year, month, day, hour, minute, second;
  if (!read_digits(text, &pos, 4, &year) || !expect_char(text, &pos, '-') ||
      !read_digits(text, &pos, 2, &month) || !expect_char(text, &pos, '-') ||
      !read_digits(text, &pos, 2, &day)) {
    return fail(error, "expected a date YYYY-MM-DD");
  }
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ')) {
    return fail(error, "expected 'T' between date and time");
  }
  ++pos;
  if (!read_digits(text, &pos, 2, &hour) || !expect_char(text, &pos, ':') ||
      !read_digits(text, &pos, 2, &minute) || !expect_char(text, &pos, ':') ||
      !read_digits(text, &pos, 2, &second)) {
    return fail(error, "expected a time HH:MM:SS");
  }
  if (month < 1 || month > 12) return fail(error, "month out of range");
  if (day < 1 || day > days_in_month(year, static_cast<unsigned>(month))) {
    return fail(error, "day out of range");
  }
  if (hour > 23 || minute > 59) return fail(error, "time of day out of range");
  if (second > 59) return fail(error, "seconds out of range (leap seconds are not supported)");

  int64_t frac_us = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 6) frac_us = frac_us * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return fail(error, "expected digits after '.'");
    for (size_t i = digits; i < 6; ++i) frac_us *= 10;
  }

  int64_t offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int64_t off_h, off_m;
    if (!read_digits(text, &pos, 2, &off_h) || !expect_char(text, &pos, ':') ||
        !read_digits(text, &pos, 2, &off_m) || off_h > 23 || off_m > 59) {
      return fail(error, "bad UTC offset (expected +HH:MM or -HH:MM)");
    }
    offset_minutes = sign * (off_h * 60 + off_m);
  } else {
    return fail(error, "expected 'Z' or a UTC offset");
  }
  if (pos != text.size()) return fail(error, "unexpected characters after the timestamp");

  int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t seconds =
      days * kSecondsPerDay + hour * 3600 + minute * 60 + second - offset_minutes * 60;
  return seconds * kMicrosPerSecond + frac_us;
}

}  // namespace eventsource::tools
