// The coordinator's half of a cluster-wide range read: a k-way merge of one page stream per
// node (common/range_page.h) into the client's `key \n value` records, every live key of the
// range once, in byte order, with its newest version (last-write-wins across the nodes that
// answered; a newer tombstone hides an older value, tombstoned keys are left out).
//
// Pure logic: the owner sends the page requests the merge asks for (Fetcher) and hands back
// each answer (OnPage / OnFailure); Produce writes records while every node still in the merge
// has an entry to offer.
// Back-pressure: per node, besides the page being merged, at most two pages held or asked for
// (one buffered and one in flight; one request out at a time). A node's next page is asked for
// as soon as the previous one arrived, while fewer than kAhead pages wait behind the one being
// merged: pages are thus fetched only as fast as Produce consumes them, Produce runs only while
// the client reads, and a peer's next page is on its way while the merge works through the
// current one. Memory per node: three pages.
// Completeness: a node whose request fails (or whose page is malformed) leaves the merge; while
// fewer than `from` nodes (the replication factor) have left, every key still has a replica in
// it and the range is complete. Once `from` have left, the merge fails: the owner must not
// answer as if it were complete (504 before the first byte, else an aborted stream).
// Not thread-safe; the owner may call OnPage/OnFailure from inside Fetcher::Fetch.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/range_page.h"

namespace kv::cluster {

class RangeMerge {
 public:
  class Fetcher {
   public:
    // Ask `node` for the page of the range that starts at `start` (inclusive); answered later,
    // or at once, with OnPage or OnFailure for that node. Exactly one request per node is out
    // at a time.
    virtual void Fetch(size_t node, std::string_view start) = 0;

   protected:
    ~Fetcher() = default;
  };

  // A node whose entries are read in place rather than fetched as pages: this node's own
  // engine (an iterator over one snapshot), which costs no page encoding and no copy.
  class Source {
   public:
    virtual ~Source() = default;
    // The next entry, its views valid until the next call; false at the end, or on a read error
    // with *error set.
    virtual bool Next(range_page::Entry* e, std::string* error) = 0;
  };

  enum class State {
    kRunning,  // Produce can go on
    kWaiting,  // a node's next page has not arrived: Produce once OnPage/OnFailure came
    kDone,     // every record is out (or the limit is reached)
    kFailed,   // `from` nodes failed: the range cannot be read completely
  };

  // nodes: how many page streams; from: failures tolerated + 1 (>= 1); limit: records at most
  // (0: no limit).
  RangeMerge(size_t nodes, size_t from, uint64_t limit, Fetcher* fetcher);

  // Node `node` is read from `source` instead of being asked for pages. Before Start.
  void SetSource(size_t node, std::unique_ptr<Source> source);
  // Asks every node (but those with a Source) for its first page.
  void Start(std::string_view start);
  // The page is page.substr(at) (see PeerResponse::value_at).
  void OnPage(size_t node, std::string&& page, size_t at = 0);
  void OnFailure(size_t node, std::string_view reason);
  // True once every node answered its first request (a page or a failure): the owner can tell
  // a failed range (504) from one that can be streamed.
  bool Primed() const { return primed_ == nodes_.size(); }
  // Pages that arrived and wait behind the one being merged, at most; with the one in flight
  // (asked for only while fewer wait), two pages beyond the current one.
  static constexpr size_t kAhead = 2;
  // Entries looked at per Produce at most (a range of tombstones adds no bytes).
  static constexpr size_t kMaxVisits = 1u << 16;
  // Appends records to *out until about `budget` bytes are added or the merge must wait.
  State Produce(std::string* out, size_t budget);
  State state() const { return state_; }
  uint64_t records() const { return records_; }
  size_t failures() const { return failures_; }
  // Why the first failure happened ("" when none): for logs.
  const std::string& first_error() const { return first_error_; }

 private:
  struct Page {
    std::string bytes;
    size_t at = 0;  // the page begins there in bytes
  };
  struct Node {
    std::unique_ptr<Source> source;  // read in place (no pages) when set
    Page cur;                        // the page being merged
    range_page::Reader reader;
    range_page::Entry head;  // the next entry of cur, when has_head
    bool has_head = false;
    std::deque<Page> ready;  // arrived, not merged yet
    bool out = false;        // a request is in flight
    // The newest page received says the range goes on, and its continuation is not asked for
    // yet: it starts at tail_start.
    bool tail_more = false;
    std::string tail_start;
    bool first = true;  // its first answer has not come yet
    bool done = false;  // no more entries: the range ended, or the node failed
    bool failed = false;
  };
  // Makes the oldest ready page the one being merged.
  void Promote(size_t i);
  // Asks for node i's next page if it may (see kAhead).
  void MaybeFetch(size_t i);
  // Moves node i to its next entry (maybe promoting its next page or waiting for it).
  void Advance(size_t i);
  // Node i has nothing left to merge: done unless a page is on its way or to be asked for.
  void Exhausted(size_t i);
  void Fail(size_t i, std::string_view reason);

  std::vector<Node> nodes_;
  std::vector<size_t> match_;  // Produce: the nodes that offer the current key
  size_t from_;
  uint64_t limit_;
  Fetcher* fetcher_;
  State state_ = State::kWaiting;
  size_t primed_ = 0;
  size_t failures_ = 0;
  uint64_t records_ = 0;
  std::string first_error_;
};

}  // namespace kv::cluster
