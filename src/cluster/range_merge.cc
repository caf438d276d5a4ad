#include "cluster/range_merge.h"

#include <utility>

namespace kv::cluster {

RangeMerge::RangeMerge(size_t nodes, size_t from, uint64_t limit, Fetcher* fetcher)
    : nodes_(nodes), match_(nodes), from_(from == 0 ? 1 : from), limit_(limit), fetcher_(fetcher) {}

void RangeMerge::SetSource(size_t node, std::unique_ptr<Source> source) {
  nodes_[node].source = std::move(source);
}

void RangeMerge::Start(std::string_view start) {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    if (n.source) {
      n.first = false;
      ++primed_;
      Advance(i);
      continue;
    }
    n.out = true;
    fetcher_->Fetch(i, start);
  }
}

void RangeMerge::OnPage(size_t i, std::string&& page, size_t at) {
  Node& n = nodes_[i];
  if (n.failed || !n.out) return;  // answers of a node that left the merge are dropped
  n.out = false;
  if (n.first) {
    n.first = false;
    ++primed_;
  }
  at = at <= page.size() ? at : page.size();
  // Where the page after this one starts, read from its header before anything else.
  const range_page::Reader r(std::string_view(page).substr(at));
  n.tail_more = r.more();
  if (n.tail_more) {
    std::string_view last;
    if (!r.LastKey(&last)) return Fail(i, "malformed page: bad last entry offset");
    n.tail_start = range_page::NextStart(last);
  }
  n.ready.push_back(Page{std::move(page), at});
  if (!n.has_head) {
    Promote(i);
  } else {
    MaybeFetch(i);
  }
}

void RangeMerge::OnFailure(size_t i, std::string_view reason) {
  Node& n = nodes_[i];
  if (n.failed || !n.out) return;
  n.out = false;
  Fail(i, reason);
}

void RangeMerge::Fail(size_t i, std::string_view reason) {
  Node& n = nodes_[i];
  if (n.failed) return;
  n.failed = true;
  n.done = true;
  n.has_head = false;
  n.source.reset();
  n.cur = Page{};
  n.ready.clear();
  n.tail_more = false;
  if (n.first) {
    n.first = false;
    ++primed_;
  }
  if (failures_++ == 0) first_error_.assign(reason);
  if (failures_ >= from_) state_ = State::kFailed;
}

void RangeMerge::MaybeFetch(size_t i) {
  Node& n = nodes_[i];
  if (n.failed || n.out || !n.tail_more || n.ready.size() >= kAhead) return;
  if (state_ == State::kDone || state_ == State::kFailed) return;
  n.out = true;
  n.tail_more = false;
  const std::string start = std::move(n.tail_start);
  fetcher_->Fetch(i, start);  // may answer at once (OnPage re-enters)
}

void RangeMerge::Promote(size_t i) {
  Node& n = nodes_[i];
  n.cur = std::move(n.ready.front());
  n.ready.pop_front();
  n.reader = range_page::Reader(std::string_view(n.cur.bytes).substr(n.cur.at));
  const bool more = n.reader.more();
  switch (n.reader.Next(&n.head)) {
    case range_page::Reader::kError:
      return Fail(i, std::string("malformed page: ") + n.reader.error());
    case range_page::Reader::kEnd:
      if (more) return Fail(i, "malformed page: no entry but more");
      return Exhausted(i);
    case range_page::Reader::kEntry:
      break;
  }
  n.has_head = true;
  MaybeFetch(i);
}

void RangeMerge::Exhausted(size_t i) {
  Node& n = nodes_[i];
  n.has_head = false;
  if (!n.ready.empty()) return Promote(i);
  if (!n.out && !n.tail_more) {
    n.done = true;
    n.cur = Page{};
    return;
  }
  MaybeFetch(i);  // waiting for it
}

void RangeMerge::Advance(size_t i) {
  Node& n = nodes_[i];
  if (n.source) {
    std::string error;
    n.has_head = n.source->Next(&n.head, &error);
    if (n.has_head) return;
    if (!error.empty()) return Fail(i, error);
    n.done = true;
    n.source.reset();  // releases its snapshot
    return;
  }
  switch (n.reader.Next(&n.head)) {
    case range_page::Reader::kEntry:
      return;
    case range_page::Reader::kError:
      n.has_head = false;
      return Fail(i, std::string("malformed page: ") + n.reader.error());
    case range_page::Reader::kEnd:
      break;
  }
  Exhausted(i);
}

RangeMerge::State RangeMerge::Produce(std::string* out, size_t budget) {
  if (state_ == State::kFailed || state_ == State::kDone) return state_;
  const size_t begin = out->size();
  size_t* match = match_.data();
  for (size_t visits = 0;; ++visits) {
    if (visits >= kMaxVisits) return state_ = State::kRunning;
    if (failures_ >= from_) return state_ = State::kFailed;
    if (limit_ != 0 && records_ >= limit_) return state_ = State::kDone;
    // The smallest key offered, and the newest version of it among the nodes that offer it
    // (one three-way comparison per node and record); waits while a node still in the merge
    // has no entry at hand.
    size_t win = SIZE_MAX;
    size_t matches = 0;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const Node& n = nodes_[i];
      if (!n.has_head) {
        if (!n.done) return state_ = State::kWaiting;
        continue;
      }
      if (win == SIZE_MAX) {
        win = i;
        match[matches++] = i;
        continue;
      }
      const int cmp = n.head.key.compare(nodes_[win].head.key);
      if (cmp < 0) {
        win = i;
        matches = 0;
        match[matches++] = i;
      } else if (cmp == 0) {
        match[matches++] = i;
        if (n.head.version > nodes_[win].head.version) win = i;
      }
    }
    if (win == SIZE_MAX) return state_ = State::kDone;
    const range_page::Entry& e = nodes_[win].head;
    if (!e.tombstone) {
      out->append(e.key);
      out->push_back('\n');
      out->append(e.value);
      ++records_;
    }
    for (size_t m = 0; m < matches; ++m) Advance(match[m]);
    if (out->size() - begin >= budget) return state_ = State::kRunning;
  }
}

}  // namespace kv::cluster
