// Log-linear latency histogram in the manner of HdrHistogram: values (microseconds) from 1 to a
// configured maximum are kept with a fixed number of significant decimal digits. The value range
// is split into power-of-two "buckets"; each bucket holds the same number of linear
// "sub-buckets", so the relative error of any recorded value is bounded by 10^-digits.
//
// Recording is O(1) and allocation-free; histograms with the same configuration can be merged
// (one per load thread, merged at the end). Not thread-safe: one writer per instance.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace kvload {

class Histogram {
 public:
  // `highest` is the largest value tracked exactly (larger values are clamped to it and counted
  // in clamped()); `digits` is the number of significant decimal digits, 1..5.
  explicit Histogram(int64_t highest = 60'000'000, int digits = 3);

  void record(int64_t value) { record_n(value, 1); }
  void record_n(int64_t value, int64_t n);
  // Adds every count of `other`, which must have the same configuration.
  bool merge(const Histogram& other);
  void reset();

  int64_t total_count() const { return total_; }
  int64_t clamped() const { return clamped_; }
  int64_t min() const { return total_ ? min_ : 0; }
  int64_t max() const { return max_; }
  double mean() const;
  double stdev() const;
  // Value at or below which `pct` percent (0..100) of recorded values fall, reported as the
  // highest value equivalent (same bucket) to the recorded one, as HdrHistogram does.
  int64_t value_at_percentile(double pct) const;
  // Fraction of recorded values within [mean - stdev, mean + stdev], in percent.
  double within_stdev_pct() const;

  // Bucket geometry, exposed for tests and the spectrum footer.
  int bucket_count() const { return bucket_count_; }
  int sub_bucket_count() const { return sub_bucket_count_; }
  int64_t highest_trackable() const { return highest_; }
  int64_t lowest_equivalent(int64_t v) const;
  int64_t highest_equivalent(int64_t v) const;
  int64_t median_equivalent(int64_t v) const;
  bool values_equivalent(int64_t a, int64_t b) const {
    return lowest_equivalent(a) == lowest_equivalent(b);
  }

  // One row of the percentile spectrum: the value reached, the percentile level it stands for
  // and the cumulative count at that value.
  struct SpectrumRow {
    int64_t value;
    double percentile;  // 0..100
    int64_t total_count;
  };
  // Percentile spectrum as HdrHistogram's percentile iteration produces it: the step between
  // reported percentiles halves each time the remaining distance to 100% halves,
  // `ticks_per_half` steps per halving; the last row is 100%.
  std::vector<SpectrumRow> spectrum(int ticks_per_half = 5) const;
  // Prints the spectrum in wrk2's "Detailed Percentile spectrum" layout, values divided by
  // `scale` (1000 -> milliseconds).
  void print_spectrum(FILE* out, double scale, int ticks_per_half = 5) const;

 private:
  int index_of(int64_t v) const;
  int64_t value_from_index(int idx) const;
  int64_t bucket_width_of(int64_t v) const;

  int64_t highest_;
  int sub_bucket_count_ = 0;  // power of two >= 2 * 10^digits
  int sub_half_ = 0;
  int sub_half_shift_ = 0;  // log2(sub_half_)
  int bucket_count_ = 0;
  std::vector<int64_t> counts_;
  int64_t total_ = 0;
  int64_t clamped_ = 0;
  int64_t min_ = INT64_MAX;
  int64_t max_ = 0;
  double sum_ = 0;     // exact sum of recorded values, for the mean
  double sum_sq_ = 0;  // exact sum of squares, for the standard deviation
};

}  // namespace kvload
