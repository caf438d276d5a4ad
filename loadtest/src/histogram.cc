#include "histogram.h"

#include <algorithm>
#include <cmath>

namespace kvload {

namespace {
int floor_log2(uint64_t v) {
  return 63 - __builtin_clzll(v);
}
}  // namespace

Histogram::Histogram(int64_t highest, int digits) : highest_(std::max<int64_t>(highest, 2)) {
  digits = std::clamp(digits, 1, 5);
  int64_t resolution = 1;
  for (int i = 0; i < digits; i++) resolution *= 10;
  // Sub-buckets must resolve 1 part in 10^digits across each power-of-two range, i.e. at least
  // 2 * 10^digits linear slots per bucket (the lower half overlaps the previous bucket).
  int shift = floor_log2(static_cast<uint64_t>(2 * resolution - 1)) + 1;
  sub_bucket_count_ = 1 << shift;
  sub_half_ = sub_bucket_count_ / 2;
  sub_half_shift_ = shift - 1;
  // Bucket b covers values below sub_bucket_count << b; find how many are needed for highest.
  bucket_count_ = 1;
  int64_t covered = sub_bucket_count_;
  while (covered <= highest_) {
    covered <<= 1;
    bucket_count_++;
  }
  counts_.assign(static_cast<size_t>(bucket_count_ + 1) * sub_half_, 0);
}

// Bucket 0 maps values [0, sub_bucket_count) one to one; bucket b > 0 holds values
// [sub_half << b, sub_half << (b + 1)) in sub_half slots of width 2^b.
int Histogram::index_of(int64_t v) const {
  int bucket = floor_log2(static_cast<uint64_t>(v) | (sub_bucket_count_ - 1)) - sub_half_shift_;
  int64_t sub = v >> bucket;
  return static_cast<int>((static_cast<int64_t>(bucket) << sub_half_shift_) + sub);
}

int64_t Histogram::value_from_index(int idx) const {
  int bucket = (idx >> sub_half_shift_) - 1;
  int64_t sub = (idx & (sub_half_ - 1)) + sub_half_;
  if (bucket < 0) {
    bucket = 0;
    sub = idx;
  }
  return sub << bucket;
}

int64_t Histogram::bucket_width_of(int64_t v) const {
  int bucket = floor_log2(static_cast<uint64_t>(v) | (sub_bucket_count_ - 1)) - sub_half_shift_;
  return int64_t{1} << bucket;
}

int64_t Histogram::lowest_equivalent(int64_t v) const {
  return value_from_index(index_of(v));
}
int64_t Histogram::highest_equivalent(int64_t v) const {
  return lowest_equivalent(v) + bucket_width_of(v) - 1;
}
int64_t Histogram::median_equivalent(int64_t v) const {
  return lowest_equivalent(v) + bucket_width_of(v) / 2;
}

void Histogram::record_n(int64_t value, int64_t n) {
  if (n <= 0) return;
  if (value < 0) value = 0;
  if (value > highest_) {
    value = highest_;
    clamped_ += n;
  }
  counts_[index_of(value)] += n;
  total_ += n;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  double d = static_cast<double>(value);
  sum_ += d * static_cast<double>(n);
  sum_sq_ += d * d * static_cast<double>(n);
}

bool Histogram::merge(const Histogram& o) {
  if (o.counts_.size() != counts_.size() || o.highest_ != highest_ ||
      o.sub_bucket_count_ != sub_bucket_count_) {
    return false;
  }
  for (size_t i = 0; i < counts_.size(); i++) counts_[i] += o.counts_[i];
  total_ += o.total_;
  clamped_ += o.clamped_;
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
  sum_ += o.sum_;
  sum_sq_ += o.sum_sq_;
  return true;
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = clamped_ = 0;
  min_ = INT64_MAX;
  max_ = 0;
  sum_ = sum_sq_ = 0;
}

double Histogram::mean() const {
  return total_ ? sum_ / static_cast<double>(total_) : 0.0;
}

double Histogram::stdev() const {
  if (total_ == 0) return 0.0;
  double m = mean();
  double var = sum_sq_ / static_cast<double>(total_) - m * m;
  return var > 0 ? std::sqrt(var) : 0.0;
}

int64_t Histogram::value_at_percentile(double pct) const {
  if (total_ == 0) return 0;
  pct = std::clamp(pct, 0.0, 100.0);
  // Rank of the requested value (1-based), at least the first value.
  // (The small slack keeps e.g. 55% of 100000 at rank 55000 despite rounding.)
  auto want = static_cast<int64_t>(std::ceil(pct * static_cast<double>(total_) / 100.0 - 1e-9));
  want = std::clamp<int64_t>(want, 1, total_);
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); i++) {
    seen += counts_[i];
    if (seen >= want) {
      int64_t v = highest_equivalent(value_from_index(static_cast<int>(i)));
      return std::min(v, max_);
    }
  }
  return max_;
}

double Histogram::within_stdev_pct() const {
  if (total_ == 0) return 0.0;
  double m = mean(), s = stdev();
  int64_t in = 0;
  for (size_t i = 0; i < counts_.size(); i++) {
    if (!counts_[i]) continue;
    double v = static_cast<double>(value_from_index(static_cast<int>(i)));
    if (v >= m - s && v <= m + s) in += counts_[i];
  }
  return 100.0 * static_cast<double>(in) / static_cast<double>(total_);
}

std::vector<Histogram::SpectrumRow> Histogram::spectrum(int ticks_per_half) const {
  std::vector<SpectrumRow> rows;
  if (total_ == 0) return rows;
  ticks_per_half = std::max(ticks_per_half, 1);
  double next = 0.0;  // next percentile level to report
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); i++) {
    if (!counts_[i]) continue;
    seen += counts_[i];
    int64_t value = std::min(highest_equivalent(value_from_index(static_cast<int>(i))), max_);
    double reached = 100.0 * static_cast<double>(seen) / static_cast<double>(total_);
    // One bucket may cross several reporting levels: report each level it crosses (the last
    // bucket reports only the first, then the 100% row follows).
    while (reached >= next) {
      rows.push_back({value, next, seen});
      // The step shrinks with the remaining distance: 2^(floor(log2(100/(100-p)))+1) halves
      // are spread over ticks_per_half steps each.
      int halvings = static_cast<int>(std::log2(100.0 / (100.0 - next))) + 1;
      next += 100.0 / (static_cast<double>(ticks_per_half) * std::ldexp(1.0, halvings));
      if (seen == total_) break;
    }
    if (seen == total_) rows.push_back({value, 100.0, seen});
  }
  return rows;
}

void Histogram::print_spectrum(FILE* out, double scale, int ticks_per_half) const {
  std::fprintf(out, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount",
               "1/(1-Percentile)");
  for (const SpectrumRow& r : spectrum(ticks_per_half)) {
    double p = r.percentile / 100.0;
    double inv = p < 1.0 ? 1.0 / (1.0 - p) : HUGE_VAL;  // printed as "inf" for the 100% row
    std::fprintf(out, "%12.3f %2.12f %10lld %14.2f\n", static_cast<double>(r.value) / scale, p,
                 static_cast<long long>(r.total_count), inv);
  }
  std::fprintf(out, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", mean() / scale,
               stdev() / scale);
  std::fprintf(out, "#[Max     = %12.3f, Total count    = %12lld]\n",
               static_cast<double>(max_) / scale, static_cast<long long>(total_));
  std::fprintf(out, "#[Buckets = %12d, SubBuckets     = %12d]\n", bucket_count_, sub_bucket_count_);
}

}  // namespace kvload
