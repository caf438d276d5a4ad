#include "proto/repair.h"

#include "proto/bytes.h"
#include "proto/wire.h"

namespace kv::proto {

namespace {

bool Fail(std::string* error, const char* what) {
  *error = what;
  return false;
}

// range u64 | session u64: the head of every request.
void PutHead(std::string* out, uint64_t range, uint64_t session) {
  PutU64(out, range);
  PutU64(out, session);
}

bool GetEntry(Reader* r, RepairEntry* e, std::string* error) {
  uint32_t klen = 0, vlen = 0;
  uint8_t flags = 0;
  if (!r->U32(&klen) || klen == 0 || klen > kMaxKeyBytes) return Fail(error, "bad key length");
  if (!r->Bytes(klen, &e->key)) return Fail(error, "key overruns the body");
  if (!r->U64(&e->version) || !r->U8(&flags)) return Fail(error, "entry cut short");
  // 1: tombstone; 2: a value left out (digest answers only); 4: an expiring value, its expiry
  // (u64, never 0) follows.
  if (flags != 0 && flags != 1 && flags != 2 && flags != 4)
    return Fail(error, "unknown entry flags");
  e->tombstone = flags == 1;
  e->digest = flags == 2;
  e->expires_ms = 0;
  if (flags == 4 && (!r->U64(&e->expires_ms) || e->expires_ms == 0)) {
    return Fail(error, "bad expiry");
  }
  if (!r->U32(&vlen) || vlen > kMaxValueBytes) return Fail(error, "bad value length");
  if ((e->tombstone || e->digest) && vlen != 0) return Fail(error, "value where none belongs");
  if (!r->Bytes(vlen, &e->value)) return Fail(error, "value overruns the body");
  return true;
}

bool GetEntries(Reader* r, uint32_t n, std::vector<RepairEntry>* out, std::string* error) {
  // Each entry takes at least 18 bytes: a count beyond what the body can hold is a lie.
  if (n > r->left() / 18) return Fail(error, "entry count exceeds the body");
  out->resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (!GetEntry(r, &(*out)[i], error)) return false;
  }
  return true;
}

}  // namespace

size_t RepairEntrySize(const RepairEntry& e) {
  const bool expiring = !e.tombstone && !e.digest && e.expires_ms != 0;
  return 4 + e.key.size() + 8 + 1 + (expiring ? 8 : 0) + 4 +
         (e.tombstone || e.digest ? 0 : e.value.size());
}

void EncodeRepairEntry(std::string* out, const RepairEntry& e) {
  PutU32(out, static_cast<uint32_t>(e.key.size()));
  out->append(e.key);
  PutU64(out, e.version);
  const bool expiring = !e.tombstone && !e.digest && e.expires_ms != 0;
  PutU8(out, e.tombstone ? 1 : e.digest ? 2 : expiring ? 4 : 0);
  if (expiring) PutU64(out, e.expires_ms);
  const std::string_view v = e.tombstone || e.digest ? std::string_view() : e.value;
  PutU32(out, static_cast<uint32_t>(v.size()));
  out->append(v);
}

void EncodeRepairTreeRequest(std::string* out, const RepairTreeRequest& r) {
  PutHead(out, r.range, r.session);
  PutU8(out, r.level);
  PutU32(out, static_cast<uint32_t>(r.nodes.size()));
  for (uint32_t n : r.nodes) PutU32(out, n);
}

void EncodeRepairEntriesRequest(std::string* out, const RepairEntriesRequest& r) {
  PutHead(out, r.range, r.session);
  PutU32(out, r.max_bytes);
  PutU8(out, (r.has_after ? 1 : 0) | (r.digest ? 2 : 0) | (r.by_keys ? 4 : 0));
  PutU32(out, static_cast<uint32_t>(r.after.size()));
  out->append(r.after);
  if (r.by_keys) {
    PutU32(out, static_cast<uint32_t>(r.keys.size()));
    for (std::string_view k : r.keys) {
      PutU32(out, static_cast<uint32_t>(k.size()));
      out->append(k);
    }
    return;
  }
  out->append(r.leaves.substr(0, kRepairBitmapBytes));
  if (r.leaves.size() < kRepairBitmapBytes) out->append(kRepairBitmapBytes - r.leaves.size(), '\0');
}

void EncodeRepairApplyHead(std::string* out, uint64_t range, uint64_t session, uint32_t n) {
  PutHead(out, range, session);
  PutU32(out, n);
}

void EncodeRepairEntriesHead(std::string* out, bool more, uint32_t n) {
  PutU8(out, RepairData::kEntries);
  PutU8(out, more ? 1 : 0);
  PutU32(out, n);
}

void EncodeRepairData(std::string* out, const RepairData& d) {
  switch (d.kind) {
    case RepairData::kTree:
      PutU8(out, d.kind);
      PutU64(out, d.keys);
      PutU32(out, static_cast<uint32_t>(d.hashes.size()));
      for (uint64_t h : d.hashes) PutU64(out, h);
      return;
    case RepairData::kEntries:
      EncodeRepairEntriesHead(out, d.more, static_cast<uint32_t>(d.entries.size()));
      for (const RepairEntry& e : d.entries) EncodeRepairEntry(out, e);
      return;
    case RepairData::kApplied:
      PutU8(out, d.kind);
      PutU32(out, d.applied);
      PutU32(out, d.refused);
      return;
  }
}

bool DecodeRepairTreeRequest(std::string_view body, RepairTreeRequest* q, std::string* error) {
  Reader r(body);
  uint32_t n = 0;
  if (!r.U64(&q->range) || !r.U64(&q->session) || !r.U8(&q->level) || !r.U32(&n)) {
    return Fail(error, "tree request cut short");
  }
  if (q->level >= kRepairLeafLevel) return Fail(error, "tree level must be 0..3");
  const uint32_t width = RepairLevelWidth(q->level);
  if (n == 0 || n > width) return Fail(error, "bad node count");
  if (r.left() != size_t{n} * 4) return Fail(error, "node list does not match its count");
  q->nodes.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    r.U32(&q->nodes[i]);
    if (q->nodes[i] >= width) return Fail(error, "node index beyond its level");
    if (i > 0 && q->nodes[i] <= q->nodes[i - 1]) return Fail(error, "nodes not ascending");
  }
  return true;
}

bool DecodeRepairEntriesRequest(std::string_view body, RepairEntriesRequest* q,
                                std::string* error) {
  Reader r(body);
  uint8_t flags = 0;
  uint32_t klen = 0;
  if (!r.U64(&q->range) || !r.U64(&q->session) || !r.U32(&q->max_bytes) || !r.U8(&flags) ||
      !r.U32(&klen)) {
    return Fail(error, "entries request cut short");
  }
  if (flags > 7) return Fail(error, "unknown request flags");
  q->has_after = flags & 1;
  q->digest = flags & 2;
  q->by_keys = flags & 4;
  if (q->by_keys && (q->has_after || q->digest))
    return Fail(error, "keys mode takes no after/digest");
  if (klen > kMaxKeyBytes || (!q->has_after && klen != 0)) return Fail(error, "bad key length");
  if (!r.Bytes(klen, &q->after)) return Fail(error, "key overruns the body");
  if (q->by_keys) {
    uint32_t n = 0;
    if (!r.U32(&n) || n == 0 || n > kRepairMaxKeys || n > r.left() / 5) {
      return Fail(error, "bad key count");
    }
    q->keys.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t len = 0;
      if (!r.U32(&len) || len == 0 || len > kMaxKeyBytes || !r.Bytes(len, &q->keys[i])) {
        return Fail(error, "bad key in the list");
      }
      if (i > 0 && q->keys[i] <= q->keys[i - 1]) return Fail(error, "keys not ascending");
    }
    if (r.left() != 0) return Fail(error, "trailing bytes");
    return true;
  }
  if (!r.Bytes(kRepairBitmapBytes, &q->leaves) || r.left() != 0) {
    return Fail(error, "leaf bitmap must be 8192 bytes and end the body");
  }
  return true;
}

bool DecodeRepairApplyRequest(std::string_view body, RepairApplyRequest* q, std::string* error) {
  Reader r(body);
  uint32_t n = 0;
  if (!r.U64(&q->range) || !r.U64(&q->session) || !r.U32(&n)) {
    return Fail(error, "apply request cut short");
  }
  if (!GetEntries(&r, n, &q->entries, error)) return false;
  if (r.left() != 0) return Fail(error, "trailing bytes");
  for (const RepairEntry& e : q->entries) {
    if (e.digest) return Fail(error, "an entry to apply must carry its value");
  }
  return true;
}

bool DecodeRepairData(std::string_view body, RepairData* d, std::string* error) {
  Reader r(body);
  uint8_t kind = 0;
  if (!r.U8(&kind)) return Fail(error, "empty answer");
  uint32_t n = 0;
  switch (kind) {
    case RepairData::kTree:
      d->kind = RepairData::kTree;
      if (!r.U64(&d->keys) || !r.U32(&n)) return Fail(error, "tree answer cut short");
      if (r.left() != size_t{n} * 8) return Fail(error, "hash list does not match its count");
      d->hashes.resize(n);
      for (uint32_t i = 0; i < n; ++i) r.U64(&d->hashes[i]);
      return true;
    case RepairData::kEntries: {
      d->kind = RepairData::kEntries;
      uint8_t more = 0;
      if (!r.U8(&more) || more > 1 || !r.U32(&n)) return Fail(error, "entries answer cut short");
      d->more = more == 1;
      if (!GetEntries(&r, n, &d->entries, error)) return false;
      break;
    }
    case RepairData::kApplied:
      d->kind = RepairData::kApplied;
      if (!r.U32(&d->applied) || !r.U32(&d->refused)) return Fail(error, "applied cut short");
      break;
    default:
      return Fail(error, "unknown answer kind");
  }
  if (r.left() != 0) return Fail(error, "trailing bytes");
  return true;
}

}  // namespace kv::proto
